"""The quality table of the offline zoos: `weightspace quality` on each, with its experiment folder's settings.

Each zoo's checkpoints, targets and learner options are exactly its folder's; learners are registered names
(`weightspace learners`), each row what the folder's ``--variant NAME`` gives; the library (`weightspace.pipeline.quality`) trains, chooses each seed on validation
(the random init among the candidates) and probes. Writes ``docs/representation_quality.md`` and ``.csv``;
``--zoo NAME`` runs one zoo and merges it into the existing table, so the parts can run apart.

    python bench/representation_quality.py                       # every offline zoo, 3 seeds
    python bench/representation_quality.py --zoo tetris_seed     # one zoo, merged into the table
    python bench/representation_quality.py --smoke               # seconds: tiny zoo, tiny budget
    python bench/representation_quality.py --zoo digits_hyp --label-scarce   # also probes with k labels
    python bench/representation_quality.py --zoo digits_hyp --raw rows.csv   # every finished part kept
    python bench/representation_quality.py --zoo digits_hyp --from-raw rows.csv  # merge them (cut runs too)
    python bench/representation_quality.py --zoo tetris_hyp --no-baselines --encoders 2021  # learners only
    python bench/representation_quality.py --zoo tetris_hyp --baseline-sets B_W --encoders    # one baseline only
    python bench/representation_quality.py --zoo tetris_seed --encoders outputs
        # the default learner reconstructing the networks' logits on data-free queries (function space)
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.util
import json
import os
import re
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from weightspace.downstream.label_scarce import ALL, LabelScarceConfig
from weightspace.errors import InputError
from weightspace.pipeline.experiment import Experiment
from weightspace.pipeline.learners import list_learners
from weightspace.pipeline.paired import write_paired
from weightspace.pipeline.quality import (
    DEFAULT_ENCODERS,
    RAW_COLUMNS,
    TABLE_BASELINES,
    QualityConfig,
    load_preset_zoo,
    run_quality,
)
from weightspace.pipeline.quality_table import summarize, write_table
from weightspace.zoo.devices import resolve_device

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"tetris_seed": "11_tetris_seed", "tetris_hyp": "12_tetris_hyp", "digits_seed": "20_digits_seed",
           "digits_hyp": "42_digits_hyp"}
ZOOS = list(FOLDERS)
SOURCE = "`bench/representation_quality.py` (on any zoo: `weightspace quality`)"


def folder_experiment(zoo: str) -> Experiment:
    """The `Experiment` of the zoo's folder (its checkpoints, default learner and variants)."""
    path = ROOT / FOLDERS[zoo] / "experiment.py"
    spec = importlib.util.spec_from_file_location(f"experiment_{FOLDERS[zoo]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EXPERIMENT


def append_rows(path: Path, rows: pd.DataFrame) -> None:
    """Append `rows` to the CSV at `path` (header on the first write), holding the file's lock: runs split by
    ``--seed-ids`` may share one ``--raw`` file, and their appends must neither interleave nor both write a header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes, after the flush
        header = os.fstat(f.fileno()).st_size == 0  # measured under the lock
        f.write(rows.to_csv(index=False, header=header))


def part_from_raw(path: Path, zoo: str, encoders: list[str]) -> pd.DataFrame:
    """The table part of `zoo` from the rows ``--raw`` runs appended: baselines and the seeds they finished.

    Rows of several runs (e.g. baselines, then encoders with ``--no-baselines``) keep each its own command."""
    raw = pd.read_csv(path, dtype={"k": object, "note": object})
    raw = raw[(raw.zoo == zoo) & raw.encoder.isin(["baselines", *encoders])]
    if raw.empty:
        raise SystemExit(f"{path} holds no finished part of {zoo!r} (baselines or {encoders}): nothing to merge")
    parts = []
    # the seeds of one run split over processes (--seed-ids, each with its own --jobs) summarize together
    run = raw.command.map(lambda line: re.sub(r" --(seed-ids( \d+)+|jobs \d+)", "", line))
    for _, rows in raw.groupby(run, sort=False):
        part = summarize(rows.reindex(columns=RAW_COLUMNS))
        seeds = rows[rows.encoder != "baselines"].groupby("encoder").seed.nunique()
        finished = ", ".join(f"{e}: {n} seed(s)" for e, n in seeds.items()) or "baselines only"
        lines = list(dict.fromkeys(rows.command))
        command, where = lines[0].split("  # on ")[0], lines[0].split("  # on ")[-1]
        also = "".join(f"; with {line.split('  # on ')[0]}" for line in lines[1:])
        part["command"] = (f"{command}  # {rows.elapsed_min.max():.0f} min on {where}; merged with --from-raw "
                           f"({finished} finished{also})")
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def machine(device: str) -> str:
    """Where the numbers were made, for the table's command lines: cores, and the GPU if one trained."""
    gpu = f", {torch.cuda.get_device_name(device)}" if device.startswith("cuda") else ""
    return f"{os.cpu_count()} cores{gpu}"


def scarce_k(text: str):
    """A k of the label-scarce protocol: a whole number, or 'all'."""
    if text == ALL:
        return ALL
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a whole number nor {ALL!r}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", action="append", choices=ZOOS, help="run only this zoo (repeatable)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per encoder (>= 3 for the table)")
    parser.add_argument("--seed-ids", nargs="+", type=int, default=None, metavar="SEED",
                        help="run only these of the --seeds seeds (a run split over processes: give each its own "
                             "--raw, or the same one, and merge with --from-raw)")
    parser.add_argument("--datasets", type=Path, default=ROOT / "datasets", help="where the zoos are (or go)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "representation_quality", help="table path stem")
    parser.add_argument("--encoders", nargs="*", choices=list_learners(), default=None,
                        help="run these encoders (default: the two learners; the 'neuron_set, ... target' ones "
                             "only when named; none with no name); their rows replace the old ones")
    parser.add_argument("--smoke", action="store_true", help="a tiny zoo and budget: seconds, not science")
    parser.add_argument("--label-scarce", action="store_true",
                        help="also probe with the labels of only k = 10, 30, 100, all training models (5 draws)")
    parser.add_argument("--no-scarce-classes", action="store_true",
                        help="label-scarce rows of the continuous targets only (the class targets' logistic "
                             "cross-validation takes most of the time on wide embeddings)")
    parser.add_argument("--scarce-ks", nargs="+", type=scarce_k, default=None, metavar="K",
                        help="the label-scarce protocol's k (default 10 30 100 all); 'all' fits a wide embedding "
                             "with several eigendecompositions of its width, the most of a large zoo's time")
    parser.add_argument("--scarce-only", action="store_true",
                        help="only the label-scarce rows (with --label-scarce): the table keeps its every-label "
                             "rows of the same encoders and baselines; with --from-raw, merges such a run")
    parser.add_argument("--no-baselines", action="store_true",
                        help="only the encoders' rows; the table keeps the baselines it has")
    parser.add_argument("--baseline-sets", nargs="+", choices=list(TABLE_BASELINES), default=None,
                        help="only these baselines (their rows replace the old ones; the table keeps the others); "
                             "with '--encoders' and no name, no encoder runs")
    parser.add_argument("--no-encoder-trees", action="store_true",
                        help="linear probes only on the embeddings (boosted trees on a wide embedding take most of "
                             "a large zoo's time)")
    parser.add_argument("--learner-options", type=json.loads, default=None, metavar="JSON",
                        help="options of the named learners, by name, over each folder's own, e.g. "
                             "'{\"behaviour\": {\"beta\": 0}}' (an ablation; the learner's title says what changed)")
    parser.add_argument("--schedule", default=None,
                        help="every learner's schedule (cpu, gpu, 2021; `weightspace learners` lists each learner's)")
    parser.add_argument("--device", default="cpu", help="where encoders train (cpu, cuda); probes run on the CPU")
    parser.add_argument("--jobs", type=int, default=1, help="encoder x seed trainings at a time, each in its own process")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of each training process, --jobs 1 included (default: cores / jobs)")
    parser.add_argument("--raw", type=Path, default=None,
                        help="also append every finished part's rows (baselines, each encoder x seed) to this CSV")
    parser.add_argument("--from-raw", type=Path, default=None,
                        help="train nothing: build the --zoo parts of the table from a --raw CSV (of a run that "
                             "may have been cut short: whatever seeds it finished)")
    args = parser.parse_args(sys.argv[1:])
    if args.seeds < 1 or args.jobs < 1:
        parser.error("--seeds and --jobs must be >= 1")
    device = str(resolve_device(args.device))
    if args.no_baselines and (args.baseline_sets or args.encoders == []):
        parser.error("--no-baselines runs no baseline: give it no --baseline-sets, and name --encoders")
    chosen = list(DEFAULT_ENCODERS) if args.encoders is None else args.encoders
    if args.scarce_ks and not args.label_scarce:
        parser.error("--scarce-ks sets the label-scarce protocol's k; add --label-scarce")
    if args.scarce_only and not (args.label_scarce or args.from_raw):
        parser.error("--scarce-only keeps only the label-scarce rows; add --label-scarce")
    ks = {} if args.scarce_ks is None else {"ks": tuple(args.scarce_ks)}
    try:
        scarce = LabelScarceConfig(classes=not args.no_scarce_classes, **ks)
    except InputError as err:
        parser.error(str(err))
    try:
        config = QualityConfig(seeds=args.seeds, seed_ids=args.seed_ids, encoders=tuple(chosen), smoke=args.smoke,
                               schedule=args.schedule,
                               label_scarce=args.label_scarce,
                               every_label=not (args.scarce_only and args.label_scarce),  # --from-raw runs nothing
                               device=device, data_root=str(args.datasets), jobs=args.jobs, threads=args.threads,
                               baselines=tuple(args.baseline_sets or ()) or not args.no_baselines,
                               encoder_trees=not args.no_encoder_trees, scarce=scarce)
    except ValueError as err:
        parser.error(str(err))
    for name in args.zoo or ZOOS:
        experiment = folder_experiment(name)
        if args.learner_options:
            experiment = experiment.with_learner_options(args.learner_options)
        titles = [replace(experiment.variant(e), schedule=args.schedule or experiment.schedule).spec.title
                  for e in chosen]  # the learners' names in the table
        if args.from_raw is not None:
            part = part_from_raw(args.from_raw, name, titles)
            if args.no_baselines:  # the table keeps its baselines; the raw ones still serve the paired rule
                part = part[part.encoder != "baselines"]
            raw = pd.read_csv(args.from_raw, dtype={"k": object, "note": object})
            rows = raw[(raw.zoo == name) & raw.encoder.isin(["baselines", *titles])].reindex(columns=RAW_COLUMNS)
        else:
            command = (f"python bench/representation_quality.py --zoo {name} --seeds {args.seeds}"
                       f"{' --smoke' if args.smoke else ''}{' --label-scarce' if args.label_scarce else ''}"
                       f"{' --no-baselines' if args.no_baselines else ''}"
                       f"{' --no-encoder-trees' if args.no_encoder_trees else ''}"
                       f"{' --no-scarce-classes' if args.no_scarce_classes else ''}"
                       f"{' --scarce-only' if args.scarce_only else ''}"
                       + (" --seed-ids " + " ".join(map(str, args.seed_ids)) if args.seed_ids else "")
                       + (" --scarce-ks " + " ".join(map(str, args.scarce_ks)) if args.scarce_ks else "")
                       + (" --baseline-sets " + " ".join(map(shlex.quote, args.baseline_sets))
                          if args.baseline_sets else "")
                       + " --encoders" + "".join(f" {e}" for e in chosen)
                       + (f" --schedule {args.schedule}" if args.schedule else "")
                       + (f" --learner-options '{json.dumps(args.learner_options)}'" if args.learner_options else "")
                       + (f" --device {device}" if device != "cpu" else "")
                       + (f" --jobs {args.jobs}" if args.jobs > 1 else ""))
            start = time.perf_counter()
            done = None if args.raw is None else (lambda rows: append_rows(args.raw, rows.assign(
                elapsed_min=(time.perf_counter() - start) / 60, command=f"{command}  # on {machine(device)}")))
            zoo = load_preset_zoo(name, args.datasets, smoke=args.smoke)
            rows = run_quality(zoo, experiment, config, name=name, done=done,
                               log=lambda line: print(f"  {name}: {line}", file=sys.stderr, flush=True))
            part = summarize(rows)
            part["command"] = command + f"  # {(time.perf_counter() - start) / 60:.0f} min on {machine(device)}"
        replaced = list(part.encoder.unique()) if args.from_raw is not None else (
            titles if args.no_baselines else ["baselines", *titles])
        write_paired(args.out, rows, name)  # the raw rows kept beside the table; the paired rule reads them
        # of the baselines, a --baseline-sets run replaces only the groups it made (`write_table`)
        write_table(args.out, part, name, replaced, order=ZOOS, source=SOURCE, scarce_only=args.scarce_only)
    print(f"wrote {args.out.with_suffix('.csv')} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
