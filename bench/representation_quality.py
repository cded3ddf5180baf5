"""The research arbiter: learned representations against the baselines, on every offline zoo.

For each zoo and each encoder in `ENCODER_VARIANTS`, taken exactly as the zoo's experiment folder
runs it (its default learner and its ``--variant 2021``, their schedules and checkpoints), the
encoder is trained self-supervised (no model property is seen) for its stated budget with
`--seeds` training seeds, and linear probes (ridge, alpha chosen on validation) are fitted on
its embedding. Each seed's embedding is the one of the evaluation whose linear probes score best
on the validation split (mean over targets), as the experiment folders choose; the test split
chooses nothing. Beside them, the same probes on B_W (raw weights), B_s (the 2021 layer
statistics), B_s with boosted trees and the hyperparameters alone, and a control row per encoder
at its random initialisation (what training adds). Boosted trees on the best encoder's embedding
are reported too (the issue's stretch goal).

Writes ``docs/representation_quality.md`` and ``.csv`` (val and test, mean and spread over seeds);
``--zoo NAME`` runs one zoo and merges it into the existing table, so the parts can run apart.

    python bench/representation_quality.py                       # every offline zoo, 3 seeds
    python bench/representation_quality.py --zoo tetris_seed     # one zoo, merged into the table
    python bench/representation_quality.py --smoke               # seconds: tiny zoo, tiny budget
    python bench/representation_quality.py --zoo digits_hyp --raw rows.csv   # every finished part kept
    python bench/representation_quality.py --zoo digits_hyp --from-raw rows.csv  # merge them (cut runs too)
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import multiprocessing
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from weightspace.io.atomic import write_text
from weightspace.data.dataset import ZooDataset
from weightspace.downstream import LayerStatistics, evaluate
from weightspace.downstream.evaluate import ProbeWarning
from weightspace.downstream.features import Hyperparameters, RawWeights
from weightspace.downstream.probing import probe_scores
from weightspace.representation import Learner, LearnerConfig, embed, fit
from weightspace.pipeline.experiment import Experiment
from weightspace.zoo.devices import resolve_device
from weightspace.zoo.generate import generate
from weightspace.zoo.presets import get_preset
from weightspace.zoo.store import Zoo

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"tetris_seed": "11_tetris_seed", "tetris_hyp": "12_tetris_hyp", "digits_seed": "20_digits_seed",
           "digits_hyp": "42_digits_hyp"}
ZOOS = list(FOLDERS)


@dataclass
class Encoder:
    """One row group of the table: a learner configuration and its training budget."""

    name: str
    config: LearnerConfig
    epochs: int  # training epochs over the zoo's training split
    evaluations: int  # embeddings probed on validation during training (the best one is kept)


# table name -> the experiment folders' variant (None: the folder's default learner)
ENCODER_VARIANTS = {"2021 transformer (cpu schedule)": "2021", "neuron_set": None}


def folder_experiment(zoo: str) -> Experiment:
    """The `Experiment` of the zoo's folder (its checkpoints, default learner and variants)."""
    path = ROOT / FOLDERS[zoo] / "experiment.py"
    spec = importlib.util.spec_from_file_location(f"experiment_{FOLDERS[zoo]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EXPERIMENT


def encoders_of(zoo: str) -> list[Encoder]:
    """The encoders of the table, exactly as the zoo's experiment folder runs them."""
    out = []
    for name, variant in ENCODER_VARIANTS.items():
        experiment = folder_experiment(zoo)
        if variant is not None:
            experiment = experiment.variant(variant)
        rep = experiment.representation
        out.append(Encoder(name, rep, epochs=experiment.iterations * rep.train.epochs_per_step,
                           evaluations=experiment.iterations))
    return out


def smoke_encoders(zoo: str) -> list[Encoder]:
    out = []
    for e in encoders_of(zoo):
        config = copy.deepcopy(e.config)
        config.train = replace(config.train, batch_size=16)
        if config.encoder.name == "neuron_set":
            config.encoder = replace(config.encoder, width=16)
        else:
            config.encoder = replace(config.encoder, d_model=16, n_heads=2, n_blocks=1, d_ff=32, latent_dim=8)
        out.append(Encoder(e.name, config, epochs=1, evaluations=1))
    return out


def load_zoo(name: str, datasets: Path, smoke: bool) -> Zoo:
    """The zoo from ``datasets/<name>``, generated from its preset when missing (offline presets only)."""
    path = datasets / (f"{name}_smoke" if smoke else name)
    if (path / "zoo.json").is_file():
        return Zoo.load(path)
    spec = get_preset(name, smoke=smoke)
    if smoke:
        spec = replace(spec, seeds=4 if spec.grid else 40, shard_size=64)
    return generate(spec, path, progress=not smoke, data_root=datasets)


def splits_of(zoo: Zoo, epochs: tuple[int, ...] | None) -> dict[str, ZooDataset]:
    return {s: ZooDataset(zoo, s, epochs=epochs) for s in ("train", "val", "test")}


def scores(table: pd.DataFrame) -> pd.DataFrame:
    """R² (or accuracy) rows of a probe table: feature_set, probe, target, split, value."""
    table = table[table.metric.isin(["r2", "accuracy"])]
    return table[["feature_set", "probe", "target", "metric", "split", "value"]]


def baselines(data: dict[str, ZooDataset], targets: list[str] | None) -> pd.DataFrame:
    weights = np.concatenate([d.weights.numpy() for d in data.values()])
    samples = pd.concat([d.properties for d in data.values()], ignore_index=True)
    hyper = data["train"].hyperparameters
    features = {"B_W": RawWeights(), "B_s": LayerStatistics(data["train"].layout)}
    pairs = [("B_W", "linear"), ("B_s", "linear"), ("B_s", "gbt")]
    if hyper:
        features["hyperparameters"] = Hyperparameters(hyper)
        pairs.append(("hyperparameters", "linear"))
    table = evaluate(weights, samples, feature_sets=features, probes=["linear", "gbt"], targets=targets,
                     pairs=pairs, splits=samples["split"].to_numpy(), hyperparameters=hyper)
    return scores(table)


def train_encoder(encoder: Encoder, data: dict[str, ZooDataset], seed: int, targets: list[str] | None,
                  device: str = "cpu") -> tuple[np.ndarray, np.ndarray, float]:
    """(embedding at random init, embedding of the best validation evaluation, training minutes)."""
    config = copy.deepcopy(encoder.config)
    config.train = replace(config.train, seed=seed, device=device)
    learner = Learner(config, data["train"].layout)
    learner.model.fit_input_scale(data["train"].weights)  # the control sees what training will fit
    every = torch.cat([d.weights for d in data.values()])
    control = embed(learner.model, every).numpy()
    probe = probe_scores(targets)
    best, best_score, seconds = None, -np.inf, 0.0
    per_eval = max(1, encoder.epochs // encoder.evaluations)
    for _ in range(encoder.evaluations):
        start = time.perf_counter()
        fit(config, data["train"], learner=learner, epochs=per_eval, evaluate_every=0, progress=False)
        seconds += time.perf_counter() - start
        score = probe(learner.model, data).get("probe_mean_val", -np.inf)
        if score > best_score:
            best, best_score = embed(learner.model, every).numpy(), score
    return control, best, seconds / 60


def embedding_scores(name: str, z: np.ndarray, data: dict[str, ZooDataset], targets: list[str] | None,
                     probes=("linear",)) -> pd.DataFrame:
    samples = pd.concat([d.properties for d in data.values()], ignore_index=True)
    table = evaluate(z, samples, feature_sets={name: z}, probes=list(probes), targets=targets,
                     splits=samples["split"].to_numpy(), hyperparameters=data["train"].hyperparameters)
    return scores(table)


def zoo_data(name: str, datasets: Path, smoke: bool) -> tuple[dict[str, ZooDataset], list[str] | None]:
    """The zoo's splits at its folder's checkpoints, and the folder's targets (None: the defaults)."""
    zoo = load_zoo(name, datasets, smoke)
    experiment = folder_experiment(name)
    data = splits_of(zoo, None if smoke else experiment.zoo_epochs)
    return data, None if experiment.targets is None else list(experiment.targets)


def encoder_rows(name: str, encoder: Encoder, seed: int, data: dict[str, ZooDataset], targets: list[str] | None,
                 device: str) -> pd.DataFrame:
    """One training seed of one encoder: its control row (random init) and its trained rows."""
    control, trained, minutes = train_encoder(encoder, data, seed, targets, device)
    print(f"  {name}: {encoder.name}, seed {seed}: {minutes:.1f} min", file=sys.stderr, flush=True)
    probes = ("linear", "gbt") if encoder.name == "neuron_set" else ("linear",)
    return pd.concat([embedding_scores(f"{encoder.name}, random init", control, data, targets)
                      .assign(seed=seed, minutes=0.0, encoder=encoder.name),
                      embedding_scores(encoder.name, trained, data, targets, probes)
                      .assign(seed=seed, minutes=minutes, encoder=encoder.name)], ignore_index=True)


def _job(name: str, datasets: Path, smoke: bool, encoder: Encoder, seed: int, device: str, threads: int) -> pd.DataFrame:
    """`encoder_rows` in a worker process: the zoo is opened there (cheap; no arrays travel)."""
    torch.set_num_threads(threads)
    warnings.simplefilter("ignore", ProbeWarning)
    with threadpool_limits(threads):
        data, targets = zoo_data(name, datasets, smoke)
        return encoder_rows(name, encoder, seed, data, targets, device)


def run_zoo(name: str, datasets: Path, encoders, seeds: int, smoke: bool, *, device: str = "cpu",
            jobs: int = 1, threads: int | None = None, raw: Path | None = None, command: str = "") -> pd.DataFrame:
    """Every row of one zoo: baselines, then each encoder x seed (`jobs` of them at a time, in processes).

    With `raw`, each part's rows are appended to that CSV as soon as the part is done, so that a run cut
    short keeps what it finished (`--from-raw` builds the table from them); `command` goes with them."""
    start = time.perf_counter()

    def done(rows: pd.DataFrame) -> pd.DataFrame:
        rows = rows.assign(zoo=name)
        if raw is not None:
            rows = rows.assign(elapsed_min=(time.perf_counter() - start) / 60, command=command)
            append_rows(raw, rows)
        return rows

    data, targets = zoo_data(name, datasets, smoke)
    rows = [done(baselines(data, targets).assign(seed=0, minutes=0.0, encoder="baselines"))]
    work = [(encoder, seed) for encoder in encoders for seed in range(seeds)]
    if jobs <= 1:
        rows += [done(encoder_rows(name, encoder, seed, data, targets, device)) for encoder, seed in work]
    else:
        threads = threads or max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_job, name, datasets, smoke, e, seed, device, threads) for e, seed in work]
            rows += [done(f.result()) for f in as_completed(futures)]
    return pd.concat(rows, ignore_index=True)


def append_rows(path: Path, rows: pd.DataFrame) -> None:
    """Append `rows` to the CSV at `path` (header on the first write); one write per call."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = not path.exists() or path.stat().st_size == 0
    with open(path, "a") as f:
        f.write(rows.to_csv(index=False, header=header))


def part_from_raw(path: Path, zoo: str, encoders: list[str]) -> pd.DataFrame:
    """The table part of `zoo` from the rows a ``--raw`` run appended: baselines and the seeds it finished."""
    raw = pd.read_csv(path)
    raw = raw[(raw.zoo == zoo) & raw.encoder.isin(["baselines", *encoders])]
    if not (raw.encoder == "baselines").any():
        raise SystemExit(f"{path} holds no finished baselines of {zoo!r}: nothing to merge")
    part = summarize(raw.drop(columns=["elapsed_min", "command"]))
    seeds = raw[raw.encoder != "baselines"].groupby("encoder").seed.nunique()
    finished = ", ".join(f"{e}: {n} seed(s)" for e, n in seeds.items()) or "no encoder"
    part["command"] = (f"{raw.command.iloc[0].split('  # on ')[0]}  # {raw.elapsed_min.max():.0f} min on "
                       f"{raw.command.iloc[0].split('  # on ')[-1]}; merged with --from-raw ({finished} finished)")
    return part


def summarize(raw: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread (max - min over seeds) per zoo, feature set, probe, target and split."""
    keys = ["zoo", "encoder", "feature_set", "probe", "target", "metric", "split"]
    agg = raw.groupby(keys, sort=False).agg(mean=("value", "mean"), spread=("value", lambda v: v.max() - v.min()),
                                            seeds=("value", "size"), minutes=("minutes", "mean"))
    return agg.reset_index()


def markdown(summary: pd.DataFrame) -> str:
    lines = ["# Representation quality", "",
             "Generated by `bench/representation_quality.py`. Linear probes (ridge, alpha chosen on validation) "
             "unless the probe column says `gbt` (boosted trees). Cells: test R² (mean ± spread over training "
             "seeds, spread = max - min), and in brackets the validation R² that every choice was made on.", ""]
    for zoo, part in summary.groupby("zoo", sort=False):
        targets = list(dict.fromkeys(part.target))
        lines += [f"## {zoo}", ""] + [f"    {c}" for c in part.command.dropna().unique()] + ["",
                  "| features | probe | " + " | ".join(targets) + " | train min |", "|---|---|" + "---:|" * (len(targets) + 1)]
        for (fs, probe), rows in part.groupby(["feature_set", "probe"], sort=False):
            cells = []
            for target in targets:
                test = rows[(rows.target == target) & (rows.split == "test")]
                val = rows[(rows.target == target) & (rows.split == "val")]
                if test.empty:
                    cells.append("-")
                    continue
                t, v = test.iloc[0], val.iloc[0]
                spread = f" ± {t.spread:.3f}" if t.seeds > 1 else ""
                cells.append(f"{t['mean']:.3f}{spread} ({v['mean']:.3f})")
            minutes = rows.minutes.iloc[0]
            lines.append(f"| {fs} | {probe} | " + " | ".join(cells) + f" | {minutes:.1f} |" if minutes else
                         f"| {fs} | {probe} | " + " | ".join(cells) + " | - |")
        lines.append("")
    return "\n".join(lines)


def goal_lines(summary: pd.DataFrame, encoder: str = "neuron_set") -> list[str]:
    """Issue 13's goal, per zoo: where `encoder`'s linear probe beats B_s (linear), B_s + boosted trees, and
    (stretch) where boosted trees on it beat B_s + boosted trees; met where the mean clears the baseline by
    more than the seeds' spread. Only regression targets (R²) count."""
    test = summary[(summary.split == "test")]
    lines = []
    for zoo, part in test.groupby("zoo", sort=False):
        def cell(fs, probe):
            rows = part[(part.feature_set == fs) & (part.probe == probe)]
            return {r.target: (r["mean"], r.spread if r.seeds > 1 else 0.0) for _, r in rows.iterrows()}

        rep, rep_gbt, bs, bs_gbt = cell(encoder, "linear"), cell(encoder, "gbt"), cell("B_s", "linear"), cell("B_s", "gbt")
        regression = [t for t in rep if t in bs and (part[part.target == t].metric == "r2").all()]
        if not rep:
            continue

        def verdict(ours, theirs, targets, *, near=False):
            out = []
            for t in targets:
                if t not in ours or t not in theirs:
                    continue
                (m, spread), (b, _) = ours[t], theirs[t]
                met = m - b > spread or (near and b > 0.98 and b - m <= 0.01)
                out.append(f"{t} {'met' if met else 'missed'} ({m:.3f} vs {b:.3f}"
                           + (f", short by {b - m:.3f}" if not met and b > m else "") + ")")
            return "; ".join(out) or "-"

        lines.append(f"- **{zoo}**: beats B_s: {verdict(rep, bs, regression)}. Beats B_s + boosted trees on accuracy "
                     f"and epoch: {verdict(rep, bs_gbt, ['test_acc', 'training_iteration'], near=True)}. Stretch, "
                     f"boosted trees on the embedding: {verdict(rep_gbt, bs_gbt, regression)}.")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", action="append", choices=list(ZOOS), help="run only this zoo (repeatable)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per encoder (>= 3 for the table)")
    parser.add_argument("--datasets", type=Path, default=ROOT / "datasets", help="where the zoos are (or go)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "representation_quality", help="table path stem")
    parser.add_argument("--encoders", nargs="+", choices=list(ENCODER_VARIANTS), default=None,
                        help="run only these encoders (default: all); their rows replace the old ones")
    parser.add_argument("--smoke", action="store_true", help="a tiny zoo and budget: seconds, not science")
    parser.add_argument("--device", default="cpu", help="where encoders train (cpu, cuda); probes run on the CPU")
    parser.add_argument("--jobs", type=int, default=1,
                        help="encoder x seed trainings at a time, each in its own process")
    parser.add_argument("--threads", type=int, default=None, help="threads per --jobs process (default: cores / jobs)")
    parser.add_argument("--raw", type=Path, default=None,
                        help="also append every finished part's rows (baselines, each encoder x seed) to this CSV")
    parser.add_argument("--from-raw", type=Path, default=None,
                        help="train nothing: build the --zoo parts of the table from a --raw CSV (of a run that "
                             "may have been cut short: whatever seeds it finished)")
    args = parser.parse_args(sys.argv[1:])
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    device = str(resolve_device(args.device))
    zoos = args.zoo or list(ZOOS)
    chosen = args.encoders or list(ENCODER_VARIANTS)
    csv = args.out.with_suffix(".csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProbeWarning)
        for name in zoos:
            if args.from_raw is not None:
                part = part_from_raw(args.from_raw, name, chosen)
            else:
                encoders = [e for e in (smoke_encoders(name) if args.smoke else encoders_of(name)) if e.name in chosen]
                command = (f"python bench/representation_quality.py --zoo {name} --seeds {args.seeds}"
                           f"{' --smoke' if args.smoke else ''} --encoders " + " ".join(f"'{e}'" for e in chosen)
                           + (f" --device {device}" if device != "cpu" else "")
                           + (f" --jobs {args.jobs}" if args.jobs > 1 else ""))
                start = time.perf_counter()
                rows = run_zoo(name, args.datasets, encoders, args.seeds, args.smoke, device=device, jobs=args.jobs,
                               threads=args.threads, raw=args.raw, command=f"{command}  # on {machine(device)}")
                part = summarize(rows)
                part["command"] = command + f"  # {(time.perf_counter() - start) / 60:.0f} min on {machine(device)}"
            replaced = list(part.encoder.unique()) if args.from_raw is not None else ["baselines", *chosen]
            table = merge(csv, part, name, replaced)
            print(markdown(table[table.zoo == name]), flush=True)
    print(f"wrote {csv} and {args.out.with_suffix('.md')}")


def machine(device: str) -> str:
    """Where the numbers were made, for the table's command lines: cores, and the GPU if one trained."""
    gpu = f", {torch.cuda.get_device_name(device)}" if device.startswith("cuda") else ""
    return f"{os.cpu_count()} cores{gpu}"


def merge(csv: Path, part: pd.DataFrame, zoo: str, encoders: list[str]) -> pd.DataFrame:
    """Write `part` into the table at `csv` (and its .md), replacing the rows of `zoo` x `encoders`.

    The table is read just before writing, so that runs of other zoos or encoders at the same time keep
    their rows (two runs of the same zoo and encoder: the later one wins)."""
    old = pd.read_csv(csv) if csv.exists() else pd.DataFrame(columns=part.columns)
    old = old[~((old.zoo == zoo) & old.encoder.isin(encoders))]
    table = pd.concat([old, part], ignore_index=True)
    rank = {"baselines": -1} | {name: i for i, name in enumerate(ENCODER_VARIANTS)}
    table = table.sort_values(["zoo", "encoder"], key=lambda c: c.map(ZOOS.index) if c.name == "zoo"
                              else c.map(rank), kind="stable").reset_index(drop=True)
    write_text(csv, table.to_csv(index=False))
    write_text(csv.with_suffix(".md"), markdown(table) + "\n## Goal (issue 13)\n\n" + "\n".join(goal_lines(table)) + "\n")
    return table


if __name__ == "__main__":
    main()
