"""Ablation grid 'architecture' on the Tetris seed zoo (see experiment.py); refreshes ablations/summary.md."""

import sys

from experiment import ARCHITECTURE

from weightspace.cli.experiment_run import run_script

if __name__ == "__main__":
    sys.exit(run_script(ARCHITECTURE, "representation", __file__))
