"""The command line of the experiment folders' scripts (``compute_baselines.py``, ``simclr_ae_<name>.py``).

Like `weightspace.cli`, this is an edge: it parses argv and starts ray; the
pipeline itself lives in `weightspace.pipeline.experiment`. Each script is two lines:
import its folder's `Experiment` and call ``run_script(EXPERIMENT, step, __file__)``.
`weightspace run ZOO` builds an `Experiment` for a zoo (`weightspace.pipeline.experiment.zoo_experiment`)
and runs it through the same `run_experiment`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from weightspace.cli.errors import notes_as_lines, report_error
from weightspace.cli.options import add_run_options
from weightspace.io.local_ray import start_local_ray
from weightspace.io.outputs import OutputError, OutputExistsError, check_apart, check_replaceable, output_lock
from weightspace.pipeline import storage
from weightspace.pipeline.cluster import connect_ray
from weightspace.pipeline.experiment import (
    Experiment,
    Timer,
    check_trainable,
    compute_baselines,
    experiment_split,
    train_representation,
)
from weightspace.pipeline.output_folder import mark_output_dir, tune_run, write_experiment_json
from weightspace.pipeline.progress import stage
from weightspace.pipeline.run_record import RECORD_FILE, Recorder, check_latest_checkpoints, owns, verify
from weightspace.pipeline.zoo_source import find_zoo
from weightspace.zoo.devices import resolve_device
from weightspace.zoo.store import Zoo

STEPS = ("baselines", "representation")


def parse_args(step: str, argv: list[str] | None) -> argparse.Namespace:
    what = "compute the baselines" if step == "baselines" else \
        "train the representation with ray.tune and evaluate it (baselines first, if missing)"
    parser = argparse.ArgumentParser(description=f"Experiment script: {what}, then write the report.")
    parser.add_argument("--smoke-test", action="store_true", help="a tiny zoo and learner: seconds, for tests")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="where results go (default: <folder>/<experiment name>)")
    parser.add_argument("--datasets", type=Path, default=None, help="zoo and task-data folder (default: <repo>/datasets)")
    parser.add_argument("--zoo", type=Path, default=None,
                        help="run on this zoo folder instead of looking one up by name in --datasets "
                             "(with --smoke-test only the learner shrinks)")
    parser.add_argument("--download", action="store_true", help="download task data (MNIST, ...) when a zoo must be generated")
    parser.add_argument("--variant", default=None, metavar="LEARNER",
                        help="run another registered learner instead of the folder's (e.g. 2021: the 2021 "
                             "transformer; `weightspace learners` lists them); results go to <experiment name>_<learner>")
    add_run_options(parser)
    return parser.parse_args(argv)


def run_script(experiment: Experiment, step: str, script: str | os.PathLike, argv: list[str] | None = None) -> int:
    """Run one step of an experiment folder from the command line; returns the exit status."""
    if step not in STEPS:
        raise ValueError(f"step must be one of {STEPS}, got {step!r}")
    return run_experiment(experiment, step, parse_args(step, argv), folder=Path(script).resolve().parent)


def load_given_zoo(path: str | os.PathLike) -> Zoo:
    """The zoo at `path` (``--zoo``, ``weightspace run ZOO``), refusing a folder that is not one."""
    path = Path(path).resolve()
    if path.is_dir() and not (path / "zoo.json").is_file():
        raise FileNotFoundError(f"'{path}' is not a zoo folder (it has no zoo.json); give a folder written by "
                                "`weightspace zoo generate`, `zoo convert` or `zoo download`")
    return Zoo.load(path)


def run_experiment(experiment: Experiment, step: str, args: argparse.Namespace, *, folder: Path | None = None) -> int:
    """Run one step with parsed options (`parse_args`'s, or `weightspace run`'s); returns the exit status.

    `folder` is the experiment folder: results go to ``<folder>/<name>`` unless ``args.output_dir``
    says otherwise, and zoos are looked up in ``<folder>/../datasets`` unless ``args.datasets`` or
    ``args.zoo`` says otherwise.
    """
    try:
        experiment = configured(experiment, args)
    except ValueError as err:  # an unknown learner, schedule or option: the message lists the valid ones
        return report_error(err)
    verbose = getattr(args, "verbose", False)
    named = args.output_dir if args.output_dir else (folder or Path()) / experiment.name
    out = named.resolve()
    datasets = (args.datasets or (folder or out).parent / "datasets").resolve()
    grid = bool(experiment.search_space)  # an ablation: trials.csv and the folder's summary, no baselines or report
    lock = ExitStack()
    lock.enter_context(notes_as_lines())  # weightspace's warnings as one line each
    reporting = False  # the results are complete and the report is being written
    try:
        if args.output_dir is None:
            assert folder is not None, "results go to args.output_dir or under `folder`: give one"
        if named.is_symlink():  # as zoo generate, baselines and report: a link is never an output folder
            raise OutputError(f"refusing to write into '{named}': it is a link, not an experiment's output folder; "
                              "give the folder it points to, or choose another output folder")
        resolve_device(args.device)  # a wrong --device fails here, not in every trial
        given = load_given_zoo(args.zoo) if args.zoo is not None else None  # before anything is written
        if step == "representation" and args.ray_address:
            _start_ray(args)  # a dead cluster fails before the zoo and the baselines are computed
        check_apart(out, "zoo", given.path if given is not None else None)
        lock.enter_context(output_lock(out))  # one run per output folder at a time
        run = _run_location(out, step, args, reads=[("zoo", given.path if given else None),
                                                    ("datasets folder", datasets)])
        if run is not None:  # one run per run location too: two output folders of one name share it
            lock.enter_context(storage.lock(run))
        if _refuse_overwrite(out, step, args, grid=grid):
            reporting = True  # a finished run whose report was cut short: --resume writes the report alone
            with stage("report"):
                path = _report(out, smoke=args.smoke_test)
            print(f"report: {path}")
            print(f"results in '{out}'")
            return 0
        out.mkdir(parents=True, exist_ok=True)
        mark_output_dir(out, experiment.name, run_inside=getattr(args, "storage", None) is None)
        with Timer() as t_zoo:
            if given is not None:
                zoo, source = given, f"given zoo '{given.path}'"
            else:
                zoo, source = find_zoo(experiment, datasets, smoke=args.smoke_test, download=args.download,
                                       scratch=out / "zoo")
        print(f"zoo: {source}")
        timings = {"zoo_s": round(t_zoo.seconds, 1)}
        split = experiment_split(experiment, zoo)  # drawn once: the baselines, the encoder and its probes share it
        if step == "representation" and not grid:
            check_trainable(experiment, zoo, split)  # before the baselines and ray, not inside a trial
        if step == "baselines" or not (grid or (out / "baseline_performance.json").exists()):
            with Timer() as t, stage("baselines"):
                table = compute_baselines(experiment, zoo, out, model_split=split)
            timings["baselines_s"] = round(t.seconds, 1)
            from weightspace.downstream.baselines import format_table

            print(format_table(table))
        if step == "representation":
            with Timer() as t:
                _start_ray(args)
                cpus, gpus = _resources(args, experiment)
                train_representation(experiment, zoo, out, resume=args.resume, cpus_per_trial=cpus,
                                     gpus_per_trial=gpus, device=args.device, storage=args.storage,
                                     verbose=1 if verbose else 0, model_split=split, record=out / RECORD_FILE,
                                     progress=True)
            timings["representation_s"] = round(t.seconds, 1)
            _print_gain(out)
        write_experiment_json(experiment.record(), out, zoo=zoo, source=source, timings=timings,
                              epochs=experiment.zoo_epochs,
                              tune=storage.join(*tune_run(out, args.storage)) if step == "representation" else None)
        if grid and step == "representation":
            from weightspace.pipeline.ablation import write_ablation_summary

            print(f"summary of the grids in '{out.parent}': {write_ablation_summary(out.parent)}")
        elif not args.no_report:
            reporting = True
            with stage("report"):
                path = _report(out, smoke=args.smoke_test)
            print(f"report: {path}")
    except KeyboardInterrupt:
        if reporting:
            print(f"interrupted while writing the report; the results in '{out}' are complete. Write the report "
                  f"with `weightspace report {out}` (or run again with --resume)", file=sys.stderr)
        else:
            print(f"interrupted; run again with --resume to continue from the last checkpoint in '{out}'",
                  file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the edge: a user or environment error becomes one line, a bug re-raises
        return report_error(err)
    finally:
        lock.close()
    print(f"results in '{out}'")
    return 0


def configured(experiment: Experiment, args: argparse.Namespace) -> Experiment:
    """`experiment` as the command line asks: another learner (--variant / --learner), its schedule, seed and
    precision, shrunk (--smoke-test), the embedding also probed with boosted trees.

    Raises:
        ValueError: an unknown learner or schedule (the message lists the valid ones).
    """
    if args.variant is not None:
        experiment = experiment.variant(args.variant)
    changes = {"schedule": getattr(args, "schedule", None), "seed": getattr(args, "seed", None),
               "precision": args.precision}
    experiment = replace(experiment, **{k: v for k, v in changes.items() if v is not None})
    if args.smoke_test:
        experiment = experiment.smoke()
    if getattr(args, "embedding_trees", False):
        experiment = replace(experiment, embedding_trees=True)
    return experiment


def _run_location(out: Path, step: str, args: argparse.Namespace,
                  reads: Sequence[tuple[str, Path | None]] = ()) -> str | None:
    """The location of the ray.tune run under ``--storage`` (None: the default ``<out>/tune``, or no run),
    refused when it overlaps the output folder or what is read (`reads`)."""
    given = getattr(args, "storage", None)
    if step != "representation" or given is None:
        return None
    run = storage.join(*tune_run(out, given))
    if not storage.is_uri(run):
        check_apart(run, "output folder", out)
        for what, path in reads:
            check_apart(run, what, path)
    return run


def _refuse_overwrite(out: Path, step: str, args: argparse.Namespace, *, grid: bool = False) -> bool:
    """Refuse, before anything is written, what the run must not write into or delete (see docs/outputs_and_trust.md).

    The output folder must be missing, empty or an experiment folder holding only what weightspace wrote.
    The ray.tune run's location (``<out>/tune``, or under ``--storage``: see `_run_location`), when it exists,
    must be the run this output folder recorded starting. With --overwrite, that run is deleted; with --resume, it
    is verified (`weightspace.pipeline.run_record.verify`) before anything else is done.

    Returns:
        True when the run has finished but its report was never completed (interrupted) and --resume asks
        to write it: then only the report is left to do.
    """
    if os.path.lexists(out):  # never write into, or clear, a folder that is not an experiment's output
        check_replaceable(out, accept=("experiment",))
    marker = out / ("baseline_performance.json" if step == "baselines" else "trials.csv" if grid else "results.json")
    if marker.exists() and not args.overwrite:
        from weightspace.report.markdown import REPORT  # lazy: it imports matplotlib

        # report.md is the report's last file: without one newer than the results, the report was cut short
        # (or never asked for; an experiment script's baselines step may have left an older one)
        report = out / REPORT
        unreported = not grid and not getattr(args, "no_report", False) and \
            (not report.exists() or report.stat().st_mtime_ns < marker.stat().st_mtime_ns)
        if unreported and args.resume:
            return True
        if unreported:
            raise OutputExistsError(f"'{marker}' exists: this experiment has finished, but its report was not "
                                    f"written; `weightspace report {out}` (or --resume) writes it. Pass --overwrite "
                                    "to run the experiment again, or choose another output folder")
        raise OutputExistsError(f"'{marker}' exists: this experiment has finished; pass --overwrite to run it again "
                                "(--resume continues only an unfinished run) or choose another output folder "
                                "(--output-dir; `weightspace run`: --out)")
    if step == "representation":
        given = getattr(args, "storage", None)
        run = storage.join(*tune_run(out, given))  # <out>/tune, or under --storage
        if storage.exists(run):  # one look: under a URI it is a request to the store
            _claim_run(out, run, args, legacy_allowed=given is None)
    if args.overwrite:
        marker.unlink(missing_ok=True)  # an interrupted rerun must not read as finished
    return False


def _claim_run(out: Path, run: str, args: argparse.Namespace, *, legacy_allowed: bool) -> None:
    """Refuse a run location this output folder did not start; with --overwrite, delete the one it did."""
    record = Recorder.load(out / RECORD_FILE)
    # <out>/tune of an output folder that holds only what weightspace wrote is its run, also when an older
    # weightspace kept no record (such a run may be replaced, not resumed)
    legacy = legacy_allowed and record is None and storage.is_tune_run(run)
    if not (owns(record, run) or legacy):
        raise OutputError(f"'{run}' already exists and is not the ray.tune run this output folder started (no "
                          f"matching record in '{out / RECORD_FILE}'); weightspace neither resumes nor deletes a "
                          "run it cannot show it wrote. Choose another --storage or output folder, or remove it "
                          "yourself if it is yours")
    if not (args.resume or args.overwrite):
        raise FileExistsError(f"'{run}' holds an unfinished run; pass --resume to continue it or "
                              "--overwrite to start over")
    if args.resume:
        verify(record, run)  # now, not after the baselines: a planted or damaged file is named at once
        check_latest_checkpoints(run)
    if args.overwrite and not args.resume:
        storage.delete(run)
        (out / RECORD_FILE).unlink(missing_ok=True)


def _start_ray(args: argparse.Namespace) -> None:
    import ray

    if ray.is_initialized():
        return
    if args.ray_address:
        connect_ray(args.ray_address, timeout_s=args.ray_timeout)
    else:
        # "local": a new instance here, never a cluster that `ray start` left running on this machine
        verbose = getattr(args, "verbose", False)
        if not verbose:
            os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose 0, ray.tune's older reporter prints nothing
        start_local_ray(os.cpu_count() or 1, include_dashboard=False, log_to_driver=verbose,
                        logging_level=logging.INFO if verbose else logging.ERROR)
        if not verbose:
            logging.getLogger("ray.tune").setLevel(logging.ERROR)  # "Wrote the latest version of all result files"


def _resources(args: argparse.Namespace, experiment: Experiment) -> tuple[float, float]:
    """(CPUs, GPUs) per trial from what the ray cluster has: one trial takes the largest node (a trial runs
    on one node), a grid gives each trial one CPU."""
    import ray

    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    cpus = max(1.0, max((node.get("CPU", 0.0) for node in nodes), default=1.0))
    gpus = max((node.get("GPU", 0.0) for node in nodes), default=0.0)
    if args.device == "cpu":
        gpus = 0.0
    if experiment.search_space:
        return 1.0, (min(1.0, gpus / cpus) if gpus else 0.0)
    return cpus, min(gpus, 1.0)


def _print_gain(out: Path) -> None:
    """What training added over the random init, with its interval: one sentence on the console."""
    import pandas as pd  # lazy, as every import of the run's work (--help stays fast)

    from weightspace.downstream.training_gain import gain_sentence
    from weightspace.io.json_files import read_json

    if (out / "training_gain.csv").is_file():
        results = read_json(out / "results.json") if (out / "results.json").is_file() else {}
        print(gain_sentence(pd.read_csv(out / "training_gain.csv"),
                            selected_untrained=bool(results.get("selected_untrained"))))


def _report(out: Path, *, smoke: bool) -> Path:
    from weightspace.report.markdown import build_report

    return build_report(out, umap=not smoke)
