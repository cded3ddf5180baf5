"""Train the SimCLR + autoencoder representation of the Unterthiner SVHN hyperparameter zoo and probe it."""

import sys

from experiment import EXPERIMENT

from weightspace.cli.experiment_run import run_script

if __name__ == "__main__":
    sys.exit(run_script(EXPERIMENT, "representation", __file__))
