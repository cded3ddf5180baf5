"""Generate a zoo from a ZooSpec: shards trained as populations, committed one by one, resumable.

Work in progress lives in ``.<out>.partial/`` beside the output: ``spec.json``
(the spec and its generation fingerprint, which covers the shard plan) and, per
finished shard, ``shard-<id>.npy`` (weights) and ``shard-<id>.csv`` (rows).
Both are written under temporary names, synced and renamed, the CSV last, so
a shard counts as done exactly when its CSV exists. Running the same command
again after an interruption (Ctrl-C, ``kill -9``, a crashed node) trains only
the missing shards; since each shard is a deterministic function of the spec
and the shard plan, the assembled zoo is the one an uninterrupted run writes.
Changing the shard plan (``shard_size``) of unfinished work is refused.

A run holds the output lock of `out` (`weightspace.io.outputs`); it replaces
`out` only when that is a zoo, and removes what interrupted runs left beside
it (saying so).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from weightspace.errors import WeightspaceError
from weightspace.io.atomic import atomic_file, write_json
from weightspace.io.json_files import read_json
from weightspace.io.local_ray import start_local_ray, stop_on_sigterm
from weightspace.io.outputs import (
    WORK_FORMAT,
    OutputExistsError,
    check_replaceable,
    clean_stale,
    output_errors,
    output_lock,
    remove,
)
from weightspace.io.resources import check_disk, check_memory, format_bytes
from weightspace.layout import WeightLayout
from weightspace.zoo.architectures import count_zoo_parameters, create_zoo_model
from weightspace.zoo.devices import resolve_device
from weightspace.zoo.population import cpu_population_size, init_member, train_population
from weightspace.zoo.spec import GRID_KEYS, Shard, ZooSpec
from weightspace.zoo.store import Zoo, ZooFormatError, package_versions
from weightspace.zoo.tasks import load_task

_ROW_BYTES, _MODEL_BYTES = 200, 1000  # memory per samples row and per listed model, besides the weights
COLUMN_ORDER = ["model_id", "epoch", "seed", *GRID_KEYS, "train_loss", "train_acc", "test_loss", "test_acc",
                "ggap", "diverged"]
METRICS = ["train_loss", "train_acc", "test_loss", "test_acc", "ggap"]


class ShardFailed(WeightspaceError, RuntimeError):
    """Some shards failed twice; the others are committed and a rerun retries only the failed ones."""


def generate(spec: ZooSpec, out: str | os.PathLike, *, overwrite: bool = False, workers: int = 0,
             ray_address: str | None = None, device: str | None = None, data_root: str | os.PathLike | None = None,
             download: bool = False, progress: bool = True) -> Zoo:
    """Train (or finish training) the zoo described by `spec` into the directory `out`.

    Args:
        workers: 0 trains shards in this process; N > 0 runs them as ray tasks on N local CPUs
            (or on the cluster at `ray_address`), one CPU (and a GPU fraction, where GPUs exist) each.
        device: "cpu" or "cuda"; default cuda when available (in-process runs).
        data_root: The folder holding the task's files (``<data_root>/mnist/``, ...); None:
            ``$WEIGHTSPACE_DATA``. Tasks that read no files (tetris, digits, synthetic) need none.

    Raises:
        FileExistsError: `out` (or its work folder) holds a different zoo (or shard plan) and `overwrite`
            is False.
        OutputError: `out` is not a zoo (nor an empty folder), another run holds its lock, or the disk refuses.
        ShardFailed: a shard failed twice; the rest is committed, rerun to retry.
    """
    out = Path(os.path.abspath(out))  # "." has no name for the work folder beside it; links stay links
    check_fits(spec, out)  # before the lock, the work folder or any model list is made
    with output_errors(out), output_lock(out):
        return _generate(spec, out, overwrite=overwrite, workers=workers, ray_address=ray_address, device=device,
                         data_root=data_root, download=download, progress=progress)


def _generate(spec: ZooSpec, out: Path, *, overwrite: bool, workers: int, ray_address: str | None,
              device: str | None, data_root: str | os.PathLike | None, download: bool, progress: bool) -> Zoo:
    """`generate` under the output lock of `out`."""
    fingerprint, generation = spec.fingerprint(), generation_fingerprint(spec)
    work = out.parent / f".{out.name}.partial"
    clean_stale(out)
    if _finished(out) in ((fingerprint, generation), (fingerprint, None)):
        _drop_work_of_finished(work, generation)
        if not overwrite:
            print(f"zoo '{out}' is already complete", file=sys.stderr)
            return Zoo.load(out)
    if os.path.lexists(out) and not overwrite:
        raise OutputExistsError(f"'{out}' already holds something other than this zoo ({spec.name}); "
                                "pass --overwrite to replace it or choose another --out")
    check_replaceable(out, accept=("zoo",))  # before hours of training, not after

    task = load_task(spec.task, root=data_root, download=download, **spec.task_options)  # before any work folder
    shards = spec.shards()
    _check_takes_task(spec, shards[0], task)
    _prepare_work_dir(work, spec, fingerprint, generation, overwrite)
    done = {p.name[len("shard-"):-len(".csv")] for p in work.glob("shard-*.csv")}
    todo = [s for s in shards if s.shard_id not in done]
    if todo and workers > min(len(todo), os.cpu_count() or 1):  # one ray worker per shard at most, one per CPU
        workers = max(1, min(len(todo), os.cpu_count() or 1))
        print(f"using {workers} workers: one per shard to train, at most one per CPU", file=sys.stderr)
    total = sum(len(s.models) for s in shards) * spec.epochs
    finished = sum(len(s.models) for s in shards if s.shard_id in done) * spec.epochs
    if done:
        print(f"resuming '{out}': {len(done)} of {len(shards)} shards already done", file=sys.stderr)
    bar = tqdm(total=total, initial=finished, unit="model-epoch", desc=f"zoo {spec.name}", disable=not progress,
               dynamic_ncols=True)
    try:
        if workers > 0 or ray_address:
            failed = _run_ray(spec, todo, task, work, fingerprint, bar, workers, ray_address)
        else:
            device = str(resolve_device(device))  # a wrong name fails here, not twice per shard
            failed = _run_local(spec, todo, task, work, fingerprint, bar, device)
    finally:
        bar.close()
    if failed:
        lines = [f"  shard {sid}: models {ids[0]}..{ids[-1]} ({len(ids)}): {err}" for sid, ids, err in failed]
        raise ShardFailed(f"{len(failed)} shard(s) failed twice; the other shards are committed in '{work}'. "
                          "Run the same command again to retry them.\n" + "\n".join(lines))
    zoo = _assemble(spec, shards, work, task, fingerprint)
    zoo.info["generation"] = generation
    zoo.save(out, overwrite=True)
    remove(work)
    return zoo


def generation_fingerprint(spec: ZooSpec) -> str:
    """A hash of the spec's fingerprint and its shard plan (which models train together, under which shard id)."""
    plan = [[s.shard_id, [m["model_id"] for m in s.models]] for s in spec.shards()]
    content = {"fingerprint": spec.fingerprint(), "shard_size": spec.shard_size, "shards": plan}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def check_fits(spec: ZooSpec, out: str | os.PathLike) -> None:
    """Refuse a zoo whose weights would not fit in this machine's memory or on the disk of `out`.

    Counted from the spec alone (models x checkpoints x parameters), before any model is listed.

    Raises:
        InputError: the message gives the counts and what to lower.
    """
    params = count_zoo_parameters(spec.architecture, **spec.arch_kwargs)
    models, checkpoints = spec.num_models, spec.num_checkpoints
    weights = models * checkpoints * params * 4  # float32
    what = (f"zoo {spec.name!r} ({models:,} models x {checkpoints:,} checkpoints x {params:,} parameters, "
            f"{format_bytes(weights)} of weights)")
    fix = "lower seeds, samples, the grid, epochs (or list checkpoint_epochs) or the layer sizes"
    check_memory(weights + models * (checkpoints * _ROW_BYTES + _MODEL_BYTES), what, fix)
    check_disk(2 * weights, out, what + ", kept twice while it is assembled", fix + ", or choose another --out")


def _check_takes_task(spec: ZooSpec, shard: Shard, task) -> None:
    """Refuse an architecture that cannot take the task's images or give its classes: one forward pass on meta."""
    config, _ = shard.population(spec, channels_in=task.input_shape[0], num_classes=task.num_classes)
    shape = (1, *task.input_shape)
    try:
        with torch.device("meta"):
            logits = create_zoo_model(config.architecture, **config.arch_kwargs).eval()(torch.empty(shape))
        problem = None if tuple(logits.shape) == (1, task.num_classes) else \
            f"it gives {tuple(logits.shape)[1:]} outputs for {task.num_classes} classes"
    except RuntimeError as err:
        problem = str(err).splitlines()[0]
    if problem is not None:
        c, h, w = task.input_shape
        fix = (f"set arch_kwargs in_dim to {c * h * w} and out_dim to {task.num_classes}" if spec.architecture == "mlp"
               else f"choose an architecture built for images of shape {task.input_shape}")
        raise ValueError(f"zoo {spec.name!r}: architecture {spec.architecture!r} {spec.arch_kwargs or ''} does not fit "
                         f"task {spec.task!r} (images of shape {task.input_shape}, {task.num_classes} classes): "
                         f"{problem}; {fix}")


# ---------------------------------------------------------------- one shard
def train_shard(spec: ZooSpec, shard: Shard, task, fingerprint: str, device: str = "cpu",
                progress=None) -> tuple[np.ndarray, pd.DataFrame]:
    """Train one shard; returns its weights ``(rows, D)`` and its rows (with hyperparameters)."""
    config, members = shard.population(spec, channels_in=task.input_shape[0], num_classes=task.num_classes)
    seed = int(hashlib.sha256(f"{fingerprint}/{shard.shard_id}".encode()).hexdigest()[:12], 16)
    # a shard is the unit of resumption; on a CPU it trains in cache-sized populations (measured faster)
    size = cpu_population_size(config, task.input_shape) if torch.device(device).type == "cpu" else None
    result = train_population(config, members, task.x_train, task.y_train, task.x_test, task.y_test,
                              epochs=spec.epochs, checkpoint_epochs=spec.kept_epochs, device=device,
                              dropout_seed=seed, population_size=size, progress=progress)
    rows = pd.DataFrame(result.rows)
    hyper = pd.DataFrame(shard.models).drop(columns=["seed"]).set_index("model_id")
    rows = rows.join(hyper, on="model_id")
    rows["ggap"] = rows["train_acc"] - rows["test_acc"]
    return result.weights, rows[[c for c in COLUMN_ORDER if c in rows]]


def _run_local(spec, todo, task, work, fingerprint, bar, device) -> list:
    failed = []
    for shard in todo:
        for attempt in (1, 2):
            start = bar.n
            try:
                weights, rows = train_shard(spec, shard, task, fingerprint, device, progress=bar.update)
                _commit_shard(work, shard.shard_id, weights, rows)
                break
            except (RuntimeError, ValueError, MemoryError) as err:
                bar.update(start - bar.n)  # roll the bar back
                bar.write(f"shard {shard.shard_id} failed (attempt {attempt}): {err}")
                if attempt == 2:
                    failed.append((shard.shard_id, [m["model_id"] for m in shard.models], repr(err)))
    return failed


def _ray_shard_task(spec_dict: dict, shard: Shard, task, fingerprint: str, device: str):
    torch.set_num_threads(1)
    return train_shard(ZooSpec.from_dict(spec_dict), shard, task, fingerprint, device)


def _run_ray(spec, todo, task, work, fingerprint, bar, workers, ray_address) -> list:
    import ray  # lazy: `import weightspace` must not load ray, and only a ray run needs it

    if not ray.is_initialized():
        if ray_address:
            ray.init(address=ray_address, log_to_driver=False)
            stop_on_sigterm()
        else:
            # "local": a new instance, never a cluster that `ray start` left running on this machine
            start_local_ray(workers, include_dashboard=False, log_to_driver=False)
    gpus = ray.cluster_resources().get("GPU", 0)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    gpu_fraction = min(1.0, gpus / cpus) if gpus else 0
    remote = ray.remote(_ray_shard_task).options(num_cpus=1, num_gpus=gpu_fraction, max_retries=1,
                                                 retry_exceptions=True)
    task_ref = ray.put(task)
    device = "cuda" if gpu_fraction else "cpu"
    pending = {remote.remote(spec.to_dict(), shard, task_ref, fingerprint, device): shard for shard in todo}
    failed = []
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        shard = pending.pop(ready[0])
        try:
            weights, rows = ray.get(ready[0])
        except Exception as err:  # noqa: BLE001 - ray wraps every task error; report and go on
            failed.append((shard.shard_id, [m["model_id"] for m in shard.models], f"{type(err).__name__}: {err}"))
            continue
        _commit_shard(work, shard.shard_id, weights, rows)
        bar.update(len(shard.models) * spec.epochs)
    return failed


# ------------------------------------------------------------------ files
def _commit_shard(work: Path, shard_id: str, weights: np.ndarray, rows: pd.DataFrame) -> None:
    if len(weights) != len(rows):
        raise ValueError(f"shard {shard_id} produced {len(weights)} weight rows but {len(rows)} sample rows")
    with atomic_file(work / f"shard-{shard_id}.npy") as tmp:  # each file is synced before its rename
        np.save(tmp, weights.astype(np.float32), allow_pickle=False)
    with atomic_file(work / f"shard-{shard_id}.csv") as tmp:  # the CSV marks the shard done
        rows.to_csv(tmp, index=False)


def _prepare_work_dir(work: Path, spec: ZooSpec, fingerprint: str, generation: str, overwrite: bool) -> None:
    spec_file = work / "spec.json"
    if os.path.lexists(work):
        check_replaceable(work, accept=("zoo work folder",))
        previous = _work_generation(spec_file)
        if previous != generation:
            shards = sorted(work.glob("shard-*.csv"))
            if shards and not overwrite:
                raise OutputExistsError(
                    f"'{work}' holds {len(shards)} finished shard(s) of {_difference(spec_file, spec)}; run the "
                    "command that started it again to finish it, or pass --overwrite to discard that work")
            remove(work)
            print(f"removed '{work}': {'unfinished' if shards else 'unstarted'} work on "
                  f"{_difference(spec_file, spec) if shards else 'another zoo'}", file=sys.stderr)
    work.mkdir(parents=True, exist_ok=True)
    for stale in [*work.glob(".*.tmp"), *work.glob(".*.tmp-*")]:  # a write cut short by a kill
        stale.unlink()
    if not spec_file.exists():
        write_json(spec_file, {"format": WORK_FORMAT, "fingerprint": fingerprint, "generation": generation,
                               "spec": spec.to_dict()})


def _work_generation(spec_file: Path) -> str | None:
    """The generation fingerprint of a work folder (recomputed from its spec when older code wrote it)."""
    try:
        data = read_json(spec_file)
        return data.get("generation") or generation_fingerprint(ZooSpec.from_dict(data["spec"]))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _difference(spec_file: Path, spec: ZooSpec) -> str:
    """What a work folder was started for, compared with `spec`."""
    try:
        data = read_json(spec_file)
        old = ZooSpec.from_dict(data["spec"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return "an unknown zoo spec"
    if old.fingerprint() == spec.fingerprint():
        return f"the same zoo with another shard plan (shard_size {old.shard_size}, now {spec.shard_size})"
    return f"a different zoo spec ({old.name})"


def _finished(out: Path) -> tuple[str | None, str | None] | None:
    """``(fingerprint, generation)`` of the zoo at `out`, None when there is none."""
    try:
        info = read_json(out / "zoo.json")
        return info.get("fingerprint"), info.get("generation")
    except (OSError, ValueError, AttributeError):
        return None


def _drop_work_of_finished(work: Path, generation: str) -> None:
    """A kill after the zoo was saved leaves its work folder: the zoo is whole, the folder is stale."""
    if os.path.lexists(work) and _work_generation(work / "spec.json") == generation:
        remove(work)
        print(f"removed '{work}', the work folder of the finished zoo, left by an interrupted run", file=sys.stderr)


def _check_complete(spec: ZooSpec, shards: list[Shard], samples: pd.DataFrame, work: Path) -> None:
    """Refuse to assemble unless every (model, epoch) of the spec is present exactly once."""
    expected = {(int(m["model_id"]), e) for s in shards for m in s.models for e in spec.kept_epochs}
    counts = Counter(zip(samples["model_id"].astype(int), samples["epoch"].astype(int)))
    missing = sorted(expected - counts.keys())
    extra = sorted(counts.keys() - expected)
    repeated = sorted(k for k, n in counts.items() if n > 1)
    if missing or extra or repeated:
        problems = [f"{len(v)} {what} (first {v[0]})" for v, what in
                    ((missing, "(model, epoch) pairs missing"), (repeated, "repeated"), (extra, "not in the spec"))
                    if v]
        raise ZooFormatError(f"the shards in '{work}' do not make up the zoo {spec.name}: {'; '.join(problems)}. "
                             f"Delete '{work}' and rerun to train it again")


def _assemble(spec: ZooSpec, shards: list[Shard], work: Path, task, fingerprint: str) -> Zoo:
    parts = [(np.load(work / f"shard-{s.shard_id}.npy"), pd.read_csv(work / f"shard-{s.shard_id}.csv"))
             for s in shards]
    for s, (w, rows) in zip(shards, parts):
        if len(w) != len(rows):
            raise ZooFormatError(f"shard {s.shard_id} in '{work}' has {len(w)} weight rows but {len(rows)} sample rows; "
                                 f"delete its shard-{s.shard_id}.* files and rerun to train it again")
    samples = pd.concat([p[1] for p in parts], ignore_index=True)
    weights = np.concatenate([p[0] for p in parts])
    _check_complete(spec, shards, samples, work)
    order = np.lexsort((samples["epoch"].to_numpy(), samples["model_id"].to_numpy()))
    samples = samples.iloc[order].reset_index(drop=True)
    weights = weights[order]
    if samples["init_std"].isna().all():
        samples = samples.drop(columns=["init_std"])
    config, members = shards[0].population(spec, task.input_shape[0], task.num_classes)
    layout = WeightLayout.from_module(init_member(config, members[0]))
    varied = spec.varied
    info = {
        "name": spec.name,
        "fingerprint": fingerprint,
        "hyperparameters": varied,
        "fixed_hyperparameters": [k for k in GRID_KEYS if k not in varied and k in samples],
        "metrics": METRICS,
        "architecture": {"name": spec.architecture, "kwargs": {k: v for k, v in config.arch_kwargs.items()
                                                               if k not in ("activation", "dropout")}},
        "task": {"name": spec.task, **spec.task_options, "input_shape": list(task.input_shape),
                 "num_classes": task.num_classes, "n_train": len(task.x_train), "n_test": len(task.x_test)},
        "spec": spec.to_dict(),
        "provenance": {"generated_by": "weightspace zoo generate",
                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "shards": len(shards)},
        "versions": package_versions(),
    }
    return Zoo(weights, samples, layout, info)
