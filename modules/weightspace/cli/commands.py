"""The `weightspace` command line.

Each command group is added by one small ``_add_<group>`` function; handlers
import their modules lazily so that `weightspace --help` stays fast and never
imports ray.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from weightspace.cli.options import DEFAULT_RAY_TIMEOUT_S, add_run_options, seconds, seed
from weightspace.io.data_root import DATA_ENV


def _add_zoo(sub: argparse._SubParsersAction) -> None:
    zoo = sub.add_parser("zoo", help="generate, inspect, convert and export model zoos")
    zsub = zoo.add_subparsers(dest="zoo_command", required=True)

    info = zsub.add_parser("info", help="print a zoo's models, epochs, parameters and accuracy per epoch")
    info.add_argument("path", type=Path)
    info.set_defaults(func=_zoo_info)

    gen = zsub.add_parser("generate", help="train a zoo from a preset or a spec file (resumable)")
    what = gen.add_mutually_exclusive_group(required=True)
    what.add_argument("--preset", help="preset name; see `weightspace zoo presets`")
    what.add_argument("--spec", type=Path, help="a zoo spec file (.json or .toml); "
                                                "`weightspace zoo presets --show NAME` prints one to start from")
    gen.add_argument("--out", required=True, type=Path, help="zoo directory to write")
    gen.add_argument("--smoke", action="store_true", help="shrink the preset to a run of seconds (--preset only)")
    gen.add_argument("--overwrite", action="store_true", help="replace a different zoo found at --out")
    gen.add_argument("--workers", type=_count, default=0, help="run shards as N ray tasks (0: in-process)")
    gen.add_argument("--ray-address", default=None, help="address of a running ray cluster")
    gen.add_argument("--ray-timeout", type=seconds, default=DEFAULT_RAY_TIMEOUT_S,
                     help=f"seconds to wait for --ray-address to answer (default {DEFAULT_RAY_TIMEOUT_S})")
    gen.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: cuda when available)")
    gen.add_argument("--data-root", type=Path, default=None,
                     help=f"where task data lives (default: ${DATA_ENV}, else ./datasets)")
    gen.add_argument("--download", action="store_true", help="download task data (MNIST etc.) if missing")
    gen.set_defaults(func=_zoo_generate)

    presets = zsub.add_parser("presets", help="list the zoo presets, or print one as a spec file (--show)")
    presets.add_argument("--show", metavar="NAME", default=None,
                         help="print preset NAME as a spec file to edit and pass to `zoo generate --spec`")
    presets.add_argument("--format", choices=["json", "toml"], default="json", help="the spec file's format (--show)")
    presets.add_argument("--smoke", action="store_true", help="--show the preset shrunk to a run of seconds")
    presets.set_defaults(func=_zoo_presets)

    conv = zsub.add_parser("convert", help="convert an external zoo (2021 Zenodo file, Small CNN Zoo, ray.tune folder, "
                                           "folder of checkpoints)")
    conv.add_argument("--from", dest="source_format", required=True,
                      choices=["zenodo2021", "unterthiner", "raytune", "checkpoints"])
    conv.add_argument("src", type=Path, help="the .pt file (zenodo2021) or folder (unterthiner, raytune, checkpoints)")
    conv.add_argument("--out", required=True, type=Path, help="zoo directory to write")
    conv.add_argument("--overwrite", action="store_true", help="replace an existing zoo at --out")
    conv.add_argument("--index-dict", type=Path, default=None, help="2021 index_dict.json (zenodo2021, raytune)")
    conv.add_argument("--name", default=None, help="zoo name (default: from the source)")
    conv.add_argument("--param-order", default=None, choices=["bias-kernel", "kernel-bias"],
                      help="unterthiner without layout.csv: per layer, which comes first in a row "
                           "(the released archives: bias-kernel)")
    conv.add_argument("--csv", type=Path, default=None,
                      help="checkpoints: the CSV listing file, model_id, epoch, ... (default SRC/checkpoints.csv)")
    conv.add_argument("--skip-bad", action="store_true",
                      help="checkpoints: skip (and name) unreadable, mismatched and unlisted files instead of refusing")
    conv.add_argument("--architecture", default=None,
                      help="checkpoints: registered architecture giving the layout (default: the first checkpoint's)")
    conv.add_argument("--arch-kwargs", type=_json_object, default=None,
                      help='checkpoints: the architecture\'s arguments as JSON, e.g. \'{"hidden": [8]}\'')
    conv.add_argument("--hyperparameters", type=_names, default=None,
                      help="checkpoints: comma-separated CSV columns that are hyperparameters (default: the text ones)")
    conv.add_argument("--pattern", default=None,
                      help="checkpoints without a CSV: the files' names, e.g. '{model_id}_ep{epoch}.pt' (default: one "
                           "folder per model, run000/epoch_3.pt)")
    conv.add_argument("--task", default=None,
                      help="checkpoints: the built-in task the networks were trained on (e.g. digits): its inputs "
                           "are their task inputs")
    conv.add_argument("--inputs", type=Path, default=None,
                      help="checkpoints: a .npy or .pt tensor (N, C, H, W) of unlabelled example inputs, kept in the zoo")
    conv.add_argument("--model", default=None, metavar="MODULE:CALLABLE",
                      help="checkpoints: the function (or class) returning your nn.Module, imported from the current "
                           "directory or your path at conversion only; the zoo keeps it as a torch.export program")
    conv.add_argument("--model-kwargs", type=_json_object, default=None,
                      help="checkpoints: the arguments of --model as JSON, e.g. '{\"width\": 8}'")
    conv.set_defaults(func=_zoo_convert)

    export = zsub.add_parser("export", help="write a zoo in an external layout")
    export.add_argument("--to", dest="target_format", required=True, choices=["raytune", "checkpoints"])
    export.add_argument("zoo", type=Path)
    export.add_argument("dst", type=Path, nargs="?", help="the folder to write (or --out)")
    export.add_argument("--out", type=Path, default=None, help="the folder to write (or DST)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing folder at DST")
    export.set_defaults(func=_zoo_export)

    down = zsub.add_parser("download", help="fetch a public zoo (2021 Zenodo, Small CNN Zoo) and convert it")
    down.add_argument("name", help="dataset name, e.g. 21_mnist_seed or unterthiner_mnist; `list` lists them")
    down.add_argument("--root", type=Path, default=None,
                      help=f"where raw files and zoos go (default: ${DATA_ENV}, else ./datasets)")
    down.add_argument("--overwrite", action="store_true", help="replace an existing zoo at ROOT/NAME")
    down.set_defaults(func=_zoo_download)


def _data_root(given: Path | None) -> Path:
    """The data folder of a command: the option's, else ``$WEIGHTSPACE_DATA``, else ``./datasets``.

    The command line is the caller, so it may choose the current directory; the library never does.
    """
    return given if given is not None else Path(os.environ.get(DATA_ENV) or "datasets")


def _count(text: str) -> int:
    """An argparse type: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _json_object(text: str) -> dict:
    """An argparse type: a JSON object such as '{"hidden": [8]}'."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, nested too deeply, or an integer Python refuses
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"""expected a JSON object such as '{{"hidden": [8]}}', got {text!r}""")
    return value


def _names(text: str) -> list[str]:
    """An argparse type: comma-separated names."""
    return [name.strip() for name in text.split(",") if name.strip()]


def _zoo_info(args: argparse.Namespace) -> int:
    from weightspace.zoo.store import Zoo

    print(Zoo.load(args.path).summary())
    return 0


def _zoo_generate(args: argparse.Namespace) -> int:
    from weightspace.pipeline.cluster import connect_ray
    from weightspace.zoo.devices import resolve_device
    from weightspace.zoo.generate import check_fits, generate
    from weightspace.zoo.presets import get_preset
    from weightspace.zoo.spec_file import load_spec_file

    if args.spec is not None and args.smoke:
        raise ValueError("--smoke shrinks a preset; for a spec file, shrink it there (fewer seeds and epochs) or "
                         "start from `weightspace zoo presets --show NAME --smoke`")
    from weightspace.io.outputs import check_apart

    check_apart(args.out, "spec file", args.spec)  # a spec kept inside the zoo it regenerates would be lost
    spec = get_preset(args.preset, smoke=args.smoke) if args.spec is None else load_spec_file(args.spec)
    device = str(resolve_device(args.device))  # checked before any work starts
    check_fits(spec, args.out)  # before connecting to ray
    if args.ray_address:
        connect_ray(args.ray_address, timeout_s=args.ray_timeout, log_to_driver=False)
    zoo = generate(spec, args.out, overwrite=args.overwrite, workers=args.workers,
                   ray_address=args.ray_address, device=device, data_root=_data_root(args.data_root),
                   download=args.download)
    print(zoo.summary())
    return 0


def _zoo_presets(args: argparse.Namespace) -> int:
    from weightspace.zoo.presets import describe_presets, get_preset
    from weightspace.zoo.spec_file import dump_spec

    if args.show is None:
        if args.smoke or args.format != "json":
            raise ValueError("--smoke and --format apply to --show NAME")
        print(describe_presets())
        return 0
    print(dump_spec(get_preset(args.show, smoke=args.smoke), args.format), end="")
    return 0


def _zoo_convert(args: argparse.Namespace) -> int:
    from weightspace.formats import convert

    kwargs = {"name": args.name}
    if args.index_dict is not None:
        if args.source_format in ("unterthiner", "checkpoints"):
            raise ValueError(f"--index-dict does not apply to --from {args.source_format} (its files describe the layout)")
        kwargs["index_dict"] = args.index_dict
    if args.param_order is not None:
        if args.source_format != "unterthiner":
            raise ValueError(f"--param-order applies only to --from unterthiner, not --from {args.source_format}")
        kwargs["param_order"] = args.param_order
    checkpoint_options = {"csv": args.csv, "skip_bad": args.skip_bad or None, "architecture": args.architecture,
                          "arch_kwargs": args.arch_kwargs, "hyperparameters": args.hyperparameters, "pattern": args.pattern, "task": args.task,
                          "inputs": args.inputs, "model": args.model, "model_kwargs": args.model_kwargs}
    given = {k: v for k, v in checkpoint_options.items() if v is not None}
    if given and args.source_format != "checkpoints":
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise ValueError(f"{flags} apply only to --from checkpoints, not --from {args.source_format}")
    kwargs.update(given)
    if args.model is not None:  # the command line is the caller: the user's code is imported from here
        from weightspace.formats.own_network import load_callable

        kwargs["model"] = load_callable(args.model, search=[Path.cwd()])
    zoo = convert(args.source_format, args.src, args.out, overwrite=args.overwrite, **kwargs)
    print(zoo.summary())
    return 0


def _zoo_export(args: argparse.Namespace) -> int:
    from weightspace.formats import export_checkpoints, export_raytune

    if (args.dst is None) == (args.out is None):
        raise ValueError("give the folder to write once: as DST or as --out DIR")
    from weightspace.io.outputs import check_apart

    check_apart(args.out or args.dst, "zoo", args.zoo)
    export = {"raytune": export_raytune, "checkpoints": export_checkpoints}[args.target_format]
    print(f"wrote {export(args.zoo, args.out or args.dst, overwrite=args.overwrite)}")
    return 0


def _zoo_download(args: argparse.Namespace) -> int:
    from weightspace.formats import DownloadError, download, list_downloads
    from weightspace.zoo.tasks import list_tasks, load_task

    data_tasks = [t for t in list_tasks() if t not in ("tetris", "digits", "synthetic")]  # file-based tasks
    if args.name == "list":
        print("zoos:\n  " + "\n  ".join(list_downloads()))
        print("task data (images the zoo presets train on):\n  " + "\n  ".join(data_tasks))
        return 0

    root = _data_root(args.root)
    try:
        if args.name in data_tasks:
            task = load_task(args.name, root=root, download=True)
            print(f"{args.name}: {len(task.x_train)} train / {len(task.x_test)} test images "
                  f"of shape {task.input_shape} in '{root / args.name}'")
            return 0
        zoo = download(args.name, root, overwrite=args.overwrite)
    except DownloadError as err:
        print(f"weightspace: download failed: {err}", file=sys.stderr)
        return 3
    print(zoo.summary())
    return 0


def _add_baselines(sub: argparse._SubParsersAction) -> None:
    base = sub.add_parser("baselines", help="probe a zoo's raw weights, statistics and hyperparameters (baselines)")
    base.add_argument("zoo", type=Path, help="zoo directory")
    base.add_argument("--out", required=True, type=Path, help="directory for baselines.csv and baseline_performance.json")
    base.add_argument("--seed", type=seed, default=42, help="seed of the split by model (as the representation)")
    base.add_argument("--targets", default=None, help="comma-separated targets (default: accuracies, ggap, epoch, "
                      "varied hyperparameters)")
    base.add_argument("--stats", default="schuerholt2021", choices=["schuerholt2021", "unterthiner"],
                      help="weight-statistics preset")
    base.add_argument("--extras", action="store_true", help="add the 2021 Tetris extras: kernel PCA and UMAP")
    base.add_argument("--overwrite", action="store_true", help="replace baselines this command wrote at --out before")
    base.set_defaults(func=_baselines)


def _baselines(args: argparse.Namespace) -> int:
    import warnings

    from weightspace.downstream.baselines import FILES, BaselineConfig, format_table, run_baselines
    from weightspace.downstream.evaluate import ProbeWarning
    from weightspace.io.outputs import OutputExistsError, check_apart, check_replaceable, output_lock
    from weightspace.pipeline.output_folder import mark_output_dir
    from weightspace.zoo.store import Zoo

    zoo = Zoo.load(args.zoo)
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip()) if args.targets else None
    config = BaselineConfig(split_seed=args.seed, targets=targets, stats_preset=args.stats, extras=args.extras)
    check_apart(args.out, "zoo", args.zoo)
    with output_lock(args.out), warnings.catch_warnings(record=True) as caught:
        if os.path.lexists(args.out):  # only into a folder weightspace wrote, holding nothing else
            check_replaceable(args.out, accept=("experiment",))
        written = [args.out / f for f in FILES.values() if (args.out / f).exists()]
        if written and not args.overwrite:
            raise OutputExistsError(f"'{written[0]}' exists; pass --overwrite to replace the baselines in "
                                    f"'{args.out}', or choose another --out")
        mark_output_dir(args.out, f"baselines of {zoo.name}")
        warnings.simplefilter("always", ProbeWarning)
        table = run_baselines(zoo, args.out, config)
    for message in dict.fromkeys(str(w.message) for w in caught):
        print(f"note: {message}", file=sys.stderr)
    used = table.attrs["samples"] - table.attrs["excluded_diverged"]
    print(f"zoo {zoo.name}: {used} samples of {zoo.num_models} models "
          f"({table.attrs['excluded_diverged']} diverged samples excluded), split by model with seed {args.seed}")
    print(format_table(table, "test"))
    print("wrote " + ", ".join(str(args.out / f) for f in FILES.values()))
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    rep = sub.add_parser("report", help="write report.md and figures for an experiment folder")
    rep.add_argument("dir", type=Path, help="experiment folder (baselines.csv, results.csv, embeddings.npy, ...)")
    rep.add_argument("--no-umap", dest="umap", action="store_false", help="project embeddings with PCA, not UMAP")
    rep.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from weightspace.io.outputs import OutputError, foreign_entries, recognise
    from weightspace.report.markdown import build_report

    if args.dir.is_dir() and recognise(args.dir, ("experiment",)) != "experiment":
        raise OutputError(f"'{args.dir}' is not an experiment's output folder (no experiment.json written by "
                          "weightspace), so no report is written into it; give the folder of a `weightspace run` "
                          "or of an experiment script")
    mine = [e for e in foreign_entries(args.dir, "experiment") if e == "report.md" or e.endswith(".png")] \
        if args.dir.is_dir() else []
    if mine:
        raise OutputError(f"refusing to write the report into '{args.dir}': it holds {', '.join(mine)}, which "
                          "weightspace did not write and the report would replace; move them away first")
    print(f"wrote {build_report(args.dir, umap=args.umap)}")
    return 0


def _add_run(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="baselines, representation and report for any zoo (no experiment folder needed)")
    run.add_argument("zoo", type=Path, help="zoo directory (generated, converted or downloaded)")
    run.add_argument("--out", dest="output_dir", required=True, type=Path,
                     help="folder for baseline_performance.json, results.json, report.md, ...")
    run.add_argument("--learner", default="neuron_set",
                     help="a registered learner: neuron_set (the default), 2021 (the 2021 transformer), ...; "
                          "`weightspace learners` lists them with their schedules")
    run.add_argument("--epochs", type=_epochs, default=None,
                     help="checkpoints to use: 'all' or comma-separated epochs (default: all of a zoo with at most "
                          "6 epochs, else 6 evenly spaced ones, the first and the last included)")
    run.add_argument("--smoke", dest="smoke_test", action="store_true",
                     help="a tiny learner for two iterations, on every checkpoint: seconds, to check the set-up")
    add_run_options(run)
    run.set_defaults(func=_run)


def _epochs(text: str) -> tuple[int, ...] | str:
    """An argparse type: 'all' or comma-separated epochs."""
    if text.strip() == "all":
        return "all"
    try:
        epochs = tuple(sorted({int(e) for e in _names(text)}))
    except ValueError:
        epochs = ()
    if not epochs or min(epochs) < 0:
        raise argparse.ArgumentTypeError(f"expected 'all' or epochs such as 0,5,10, got {text!r}")
    return epochs


def _run(args: argparse.Namespace) -> int:
    from weightspace.cli.experiment_run import load_given_zoo, run_experiment
    from weightspace.pipeline.experiment import zoo_experiment

    experiment = zoo_experiment(load_given_zoo(args.zoo), epochs=args.epochs)
    args.datasets, args.download = None, False
    args.variant = args.learner
    return run_experiment(experiment, "representation", args)


def _add_learners(sub: argparse._SubParsersAction) -> None:
    learners = sub.add_parser("learners", help="list the registered learners, their schedules and what they are")
    learners.set_defaults(func=_learners)


def _learners(args: argparse.Namespace) -> int:
    from weightspace.pipeline.learners import create_learner, learner_options, learner_schedules, list_learners

    for name in list_learners():
        spec = create_learner(name)
        options = ", ".join(learner_options(name))
        print(f"{name}: {spec.title}; schedules {', '.join(learner_schedules(name))}; {spec.iterations} x "
              f"{spec.config.train.epochs_per_step} epochs at batch {spec.config.train.batch_size} on its first; "
              f"Experiment.learner_options: {options}, iterations, epochs_per_step\n    {spec.notes}")
    return 0


QUALITY_DEFAULT = ("neuron_set", "2021")  # the learners of `weightspace quality` unless --encoders names others


def _add_quality(sub: argparse._SubParsersAction) -> None:
    qual = sub.add_parser("quality", help="the quality table of a zoo: each encoder against the baselines, each "
                                          "training seed chosen on validation")
    qual.add_argument("zoo", help="a zoo folder (with zoo.json) or a preset name (its zoo in --datasets, generated "
                                  "there when missing; see `weightspace zoo presets`)")
    qual.add_argument("--seeds", type=_positive, default=3, help="training seeds per encoder (default 3)")
    qual.add_argument("--encoders", nargs="+", default=None, metavar="LEARNER",
                      help="registered learners to train (default: neuron_set and 2021; `weightspace learners` "
                           "lists them); each row is what `weightspace run --learner LEARNER` gives; their rows "
                           "replace those of an earlier run in --out")
    qual.add_argument("--out", type=Path, default=None,
                      help="folder for representation_quality.csv and .md (default: quality/<zoo name>)")
    qual.add_argument("--smoke", action="store_true", help="tiny encoders for one epoch (and a tiny preset zoo): "
                                                          "seconds, to check the set-up")
    qual.add_argument("--label-scarce", action="store_true",
                      help="also probe with the labels of only k = 10, 30, 100, all training models (5 draws each)")
    qual.add_argument("--schedule", default=None,
                      help="every learner's schedule: cpu, gpu, or 2021 for the 2021 transformer's own (default: each "
                           "learner's first)")
    qual.add_argument("--device", default="cpu", help="where encoders train: cpu, cuda, cuda:N or auto")
    qual.add_argument("--jobs", type=_positive, default=1, help="encoder x seed trainings at a time, in processes")
    qual.add_argument("--datasets", type=Path, default=None,
                      help=f"where preset zoos and task data live (default: ${DATA_ENV}, else ./datasets)")
    qual.set_defaults(func=_quality)


def _positive(text: str) -> int:
    """An argparse type: a whole number, 1 or more."""
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _quality(args: argparse.Namespace) -> int:
    from weightspace.cli.experiment_run import load_given_zoo
    from weightspace.pipeline.experiment import zoo_experiment
    from weightspace.pipeline.paired import write_paired
    from weightspace.pipeline.quality import QualityConfig, load_preset_zoo, run_quality
    from weightspace.pipeline.quality_table import summarize, write_table
    from weightspace.zoo.devices import resolve_device
    from weightspace.zoo.presets import list_presets

    root = _data_root(args.datasets)
    given = Path(args.zoo)
    if (given / "zoo.json").is_file() or args.zoo not in list_presets():
        zoo = load_given_zoo(given)
    else:
        zoo = load_preset_zoo(args.zoo, root, smoke=args.smoke)
    encoders = tuple(args.encoders or QUALITY_DEFAULT)
    device = str(resolve_device(args.device))
    config = QualityConfig(seeds=args.seeds, encoders=encoders, smoke=args.smoke, schedule=args.schedule,
                           label_scarce=args.label_scarce, device=device, data_root=str(root), jobs=args.jobs)
    name = zoo.name
    out = args.out if args.out is not None else Path("quality") / name
    command = (f"weightspace quality {args.zoo} --seeds {args.seeds} --encoders {' '.join(args.encoders or QUALITY_DEFAULT)}"
               + " --smoke" * args.smoke + " --label-scarce" * args.label_scarce
               + (f" --schedule {args.schedule}" if args.schedule else "")
               + (f" --jobs {args.jobs}" if args.jobs > 1 else ""))
    rows = run_quality(zoo, zoo_experiment(zoo), config, name=name,
                       log=lambda line: print(f"{name}: {line}", file=sys.stderr, flush=True))
    part = summarize(rows).assign(command=f"{command}  # on {os.cpu_count()} cores, encoders on {device}")
    stem = out / "representation_quality"
    write_paired(stem, rows, name)  # raw rows kept; the paired rule reads them
    write_table(stem, part, name, ["baselines", *config.titles])
    print(f"wrote {stem.with_suffix('.csv')} and {stem.with_suffix('.md')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="weightspace", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_zoo(sub)
    _add_baselines(sub)
    _add_report(sub)
    _add_run(sub)
    _add_learners(sub)
    _add_quality(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from weightspace.cli.errors import notes_as_lines, report_error

    args = build_parser().parse_args(argv)
    try:
        with notes_as_lines():
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("weightspace: interrupted; finished work is kept, run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the edge: a user or environment error becomes one line, a bug re-raises
        return report_error(err)

