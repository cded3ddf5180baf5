"""The options of a pipeline run, shared by `weightspace run` (`weightspace.cli.commands`) and the experiment
scripts' command line (`weightspace.cli.experiment_run`).

Both import this module; it imports neither, so the two command lines depend on it one way.
"""

from __future__ import annotations

import argparse

from weightspace.pipeline.cluster import DEFAULT_TIMEOUT_S as DEFAULT_RAY_TIMEOUT_S


def seconds(text: str) -> float:
    """An argparse type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


MAX_SEED = 2**63 - 1  # seeds feed torch and numpy generators, which take 64-bit values


def seed(text: str) -> int:
    """An argparse type: a seed, a whole number from 0 to 2**63-1 (argparse names the option in its error)."""
    shown = text if len(text) <= 40 else f"{text[:20]}... ({len(text):,} characters)"
    try:
        value = int(text) if len(text.strip()) <= 40 else None
    except ValueError:
        value = None
    if value is None:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 2**63-1, got {shown!r}")
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 2**63-1, got {value}")
    return value


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Add the options of a pipeline run (device, precision, ray, storage, resume, overwrite, report)."""
    from weightspace.representation.config import PRECISIONS

    parser.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda or cuda:N")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="training precision of the representation (default: the learner's config; "
                             "bf16 is several times faster than fp32 on recent GPUs); --resume keeps the "
                             "precision the run started with")
    parser.add_argument("--schedule", default=None,
                        help="the learner's schedule: cpu, gpu, or 2021 for the 2021 transformer's own (default: the "
                             "folder's, else the learner's first; `weightspace learners` lists them)")
    parser.add_argument("--seed", type=seed, default=None,
                        help="training seed of the representation: initialisation, views, batch order (default: the "
                             "learner's, 42); the split by model keeps its own seed")
    parser.add_argument("--ray-address", default=None, help="address of a running ray cluster (default: start one here)")
    parser.add_argument("--ray-timeout", type=seconds, default=DEFAULT_RAY_TIMEOUT_S,
                        help=f"seconds to wait for --ray-address to answer (default {DEFAULT_RAY_TIMEOUT_S})")
    parser.add_argument("--storage", default=None, metavar="URI",
                        help="where ray.tune keeps the run's results and checkpoints: a folder or a URI that "
                             "pyarrow understands (file://, s3://bucket/prefix, gs://...); the run goes to "
                             "<storage>/<output folder name>. On a cluster whose nodes share no disk, give one "
                             "that every node reaches (default: <output folder>/tune)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace finished results in the output folder")
    parser.add_argument("--no-report", action="store_true", help="skip report.md and its figures")
    parser.add_argument("--embedding-trees", action="store_true",
                        help="also probe the final embedding with boosted trees (minutes on a wide embedding)")
    parser.add_argument("--verbose", action="store_true",
                        help="show ray's own progress tables, logs and warnings besides weightspace's progress bars")
