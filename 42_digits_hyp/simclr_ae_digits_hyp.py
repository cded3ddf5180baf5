"""Train the representation of the digits Small CNN Zoo (all ten properties of the 2021 table) and probe it."""

import sys

from experiment import EXPERIMENT

from weightspace.cli.experiment_run import run_script

if __name__ == "__main__":
    sys.exit(run_script(EXPERIMENT, "representation", __file__))
