"""Baselines (raw weights, weight statistics, boosted trees) on the digits seed zoo."""

import sys

from experiment import EXPERIMENT

from weightspace.cli.experiment_run import run_script

if __name__ == "__main__":
    sys.exit(run_script(EXPERIMENT, "baselines", __file__))
