"""Ablation grid 'loss_augmentation' on the Tetris seed zoo (see experiment.py); refreshes ablations/summary.md."""

import sys

from experiment import LOSS_AUGMENTATION

from weightspace.cli.experiment_run import run_script

if __name__ == "__main__":
    sys.exit(run_script(LOSS_AUGMENTATION, "representation", __file__))
