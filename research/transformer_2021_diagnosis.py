"""Why the 2021 transformer autoencoder reads nothing on tetris_seed: the measurements of issue 35.

Trains the 2021 learner (`config_2021` under `cpu_schedule`, the `--variant 2021` of 11_tetris_seed) for a
few epochs on the experiment's checkpoints and prints, with a JSON copy (`--json`):

- the zoo: how far training moves each model's weights against the spread between seeds, how large an
  erasing perturbation is against that, and how much of each feature set's variance lies within a model
  (between its checkpoints), which is where epoch lives;
- the encoder at random init and after training: how much of the compression token's output varies with the
  weights at each stage, the spread of every embedding dimension, how linear the encoder is in the weights
  (R² of the embedding from a linear map of the weights), what a linear probe on the embedding reads of
  the raw weights and of each B_s statistic, and the probes of accuracy, epoch and gap: the project's
  ridge (standardised features, its grid, alpha chosen on validation) beside the 2021 ridge (raw
  features, 2021 grid, intercept penalised) on the same embedding;
- the training curve: contrastive and reconstruction loss (train, and val on un-erased views), the
  reconstruction R² of the weights on train and val, seconds per epoch, and the probes every few epochs;
- with ``--supervised-epochs N``: the same encoder trained directly on the standardised targets (a Linear
  head, permuted views), i.e. whether the architecture can learn them at all in that many epochs.

Variants switch one setting at a time (``--precision fp32``, ``--gamma 0``, ``--erase-p 0``,
``--no-permute``, ``--recon-target input``, ``--no-final-norm``, ``--position-std 0.02``, ``--schedule 2021``,
``--scheduler none``); each epoch's line shows the learning rate the schedule has left.
Validation picks every alpha; test scores are printed beside validation ones.

    weightspace zoo generate --preset tetris_seed --out datasets/tetris_seed      # seconds
    python research/transformer_2021_diagnosis.py datasets/tetris_seed --train-epochs 10   # about 3 min, 1 thread
    python research/transformer_2021_diagnosis.py datasets/tetris_seed --train-epochs 60 --probe-every 10  # 8 min
    weightspace zoo generate --preset digits_seed --out datasets/digits_seed       # about 30 s
    python research/transformer_2021_diagnosis.py datasets/digits_seed --checkpoints 0 4 8 12 16 20 --latent 500
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from weightspace.representation.config import SCHEDULERS, TrainConfig

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("test_acc", "epoch", "ggap")
SPLITS = ("train", "val", "test")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("zoo", nargs="?", type=Path, default=ROOT / "datasets" / "tetris_seed", help="zoo directory")
    p.add_argument("--checkpoints", type=int, nargs="+", default=[0, 5, 10, 15, 20, 25],
                   help="epochs of the zoo used (default: those of 11_tetris_seed)")
    p.add_argument("--config", default="tetris_seed", help="the 2021 configuration (presets.config_2021)")
    p.add_argument("--schedule", choices=("cpu", "2021"), default="cpu",
                   help="cpu: cpu_schedule (batch 100, lr 5e-4, bf16); 2021: batch 500, lr 1e-4, fp32")
    p.add_argument("--train-epochs", type=int, default=10, help="epochs of self-supervised training")
    p.add_argument("--probe-every", type=int, default=5, help="probe the embedding every this many epochs")
    p.add_argument("--precision", choices=("fp32", "bf16"), help="override the schedule's precision")
    p.add_argument("--lr", type=float, help="override the schedule's learning rate")
    p.add_argument("--batch-size", type=int, help="override the schedule's batch size")
    tc = TrainConfig()
    p.add_argument("--scheduler", choices=SCHEDULERS,
                   help=f"override the learning-rate schedule (2021 and cpu: {tc.scheduler}, x{tc.plateau_factor} "
                        f"after {tc.plateau_patience} epochs without a new best training loss)")
    p.add_argument("--gamma", type=float, help="override gamma (weight of the contrastive loss)")
    p.add_argument("--erase-p", type=float, help="override the erasing probability (0: no erasing)")
    p.add_argument("--no-permute", action="store_true", help="views without neuron permutations")
    p.add_argument("--recon-target", choices=("clean", "input"), help="reconstruct the un-erased view or the input")
    p.add_argument("--no-final-norm", action="store_true", help="no LayerNorm after the blocks (as in 2021)")
    p.add_argument("--position-std", type=float,
                   help="rescale the initial positions and compression token to this std (2021: 1)")
    p.add_argument("--latent", type=int, help="override the latent width (20_digits_seed uses 500)")
    p.add_argument("--seed", type=int, default=42, help="training seed")
    p.add_argument("--supervised-epochs", type=int, default=0, help="epochs of the supervised check (0: skip)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--json", type=Path, help="write every number here")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------- helpers
def r2(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-column R² ``(k,)`` of predictions against targets ``(n, k)`` (NaN for a constant column)."""
    y, pred = np.asarray(y, np.float64).reshape(len(y), -1), np.asarray(pred, np.float64).reshape(len(y), -1)
    sst = ((y - y.mean(0)) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sst > 0, 1 - ((y - pred) ** 2).sum(0) / sst, np.nan)


def ridge(X: dict, Y: dict):
    """The project's linear probe (RidgeProbe: standardised features, alpha per target on validation)."""
    from weightspace.downstream.probes import RidgeProbe

    return RidgeProbe().fit(X["train"], Y["train"], X["val"], Y["val"])


def ridge_2021(X: dict, y: dict) -> dict:
    """The 2021 probe: closed-form ridge on [X, 1] (no standardisation, intercept penalised), alpha from the
    2021 grid by validation R²."""
    from weightspace.downstream.probes import ALPHAS_2021

    def design(x):
        return np.hstack([np.asarray(x, np.float64), np.ones((len(x), 1))])

    A, b = design(X["train"]), np.asarray(y["train"], np.float64)
    gram, xty = A.T @ A, A.T @ b
    best = None
    for alpha in ALPHAS_2021:
        coef = np.linalg.solve(gram + alpha * np.eye(len(gram)), xty)
        val = float(r2(y["val"], design(X["val"]) @ coef)[0])
        if best is None or val > best[0]:
            best = (val, alpha, coef)
    val, alpha, coef = best
    return {"alpha": alpha, "val": val, "test": float(r2(y["test"], design(X["test"]) @ coef)[0])}


def within_model_share(x: np.ndarray, models: np.ndarray) -> float:
    """Share of the standardised variance of ``x`` ``(n, F)`` that lies between checkpoints of one model."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)
    _, inverse = np.unique(models, return_inverse=True)
    counts = np.bincount(inverse)[:, None]
    means = np.zeros((counts.shape[0], x.shape[1]))
    np.add.at(means, inverse, x)
    return float(((x - (means / counts)[inverse]) ** 2).sum() / (x ** 2).sum())


def invariant_summaries(w: np.ndarray, layout) -> dict:
    """Per-neuron summaries that no hidden-neuron permutation changes, ``{name: (S, k)}``: each hidden layer's
    incoming-weight norms, sorted; the output layer's per-class row mean and row norm (its rows are never
    permuted, and a permutation only reorders the entries within a row)."""
    out = {}
    for spec in layout.layers:
        rows = w[:, spec.weight_slice].reshape(len(w), spec.n_out, -1)
        if spec is layout.layers[-1]:
            out[f"{spec.name} rows: mean, norm"] = np.concatenate([rows.mean(-1), np.linalg.norm(rows, axis=-1)], 1)
        else:
            out[f"{spec.name} neuron norms, sorted"] = np.sort(np.linalg.norm(rows, axis=-1), axis=1)
    return out


# ----------------------------------------------------------------------------------------- the zoo
def zoo_geometry(data: dict, statistics, erase, layout) -> dict:
    """How far training moves weights, against the seed spread and an erasing perturbation."""
    train = data["train"]
    w, props = train.weights.numpy().astype(np.float64), train.properties
    epochs = sorted(props["epoch"].unique())
    first = props["epoch"].to_numpy() == epochs[0]
    base = dict(zip(props.loc[first, "model_id"], w[first]))
    spread = float(np.linalg.norm(w[first] - w[first].mean(0), axis=1).mean())
    moved = {}
    for e in epochs[1:]:
        rows = props["epoch"].to_numpy() == e
        ref = np.stack([base[m] for m in props.loc[rows, "model_id"]])
        moved[int(e)] = float(np.linalg.norm(w[rows] - ref, axis=1).mean())
    gen = torch.Generator().manual_seed(0)
    x = torch.as_tensor(w[first], dtype=torch.float32)
    erased = float((erase(x, gen) - x).norm(dim=1).mean()) if erase is not None else 0.0
    models = props["model_id"].to_numpy()
    s = statistics.transform(w)
    acc = props["test_acc"].to_numpy()
    within_epoch = float(props.assign(a=acc).groupby("epoch")["a"].var(ddof=0).mean() / acc.var())
    return {"seed_spread": spread, "moved": moved, "moved_over_spread": {e: v / spread for e, v in moved.items()},
            "erasing_norm": erased,
            "within_model_share": {"weights": within_model_share(w, models), "B_s": within_model_share(s, models)},
            "within_model_share_B_s": dict(zip(statistics.get_feature_names_out().tolist(),
                                               [within_model_share(s[:, i], models) for i in range(s.shape[1])])),
            "test_acc_within_epoch_share": within_epoch,
            "within_model_share_invariant": {k: within_model_share(v, models)
                                             for k, v in invariant_summaries(w, layout).items()}}


# ------------------------------------------------------------------------------------- the encoder
@torch.no_grad()
def signal_by_stage(model, x: torch.Tensor) -> dict:
    """Between-model std over |mean| (averaged over features) of the compression token's stream at each stage:
    how much of what the read-out sees depends on the weights at all."""
    def ratio(h):
        return float(h.std(0).mean() / h.mean(0).abs().mean().clamp_min(1e-12))

    was = model.training
    model.eval()
    out = {}
    try:
        h = model.tokenizer(x)
        out["weight tokens"] = ratio(h)
        if model.compression is not None:
            h = torch.cat([model.compression.expand(h.shape[0], -1, -1), h], dim=1)
        h = h + model.enc_pos
        for i, block in enumerate(model.encoder.blocks):
            h = block(h)
            out[f"read-out token after block {i + 1}"] = ratio(h[:, 0])
        h = model.encoder.norm(h)
        out["after the final norm"] = ratio(h[:, 0])
        lin = model.to_latent[0] if isinstance(model.to_latent, torch.nn.Sequential) else None
        if lin is not None and isinstance(lin, torch.nn.Linear) and model.compression is not None:
            out["before tanh"] = ratio(lin(h[:, 0]))
        out["embedding"] = ratio(model.encode(x))
    finally:
        model.train(was)
    return out


@torch.no_grad()
def token_mean_embedding(model, x: torch.Tensor) -> torch.Tensor:
    """The mean over the encoder's output tokens (compression token left out): the read-out 2021 did not use."""
    h = model.tokenizer(x)
    if model.compression is not None:
        h = torch.cat([model.compression.expand(h.shape[0], -1, -1), h], dim=1)
    h = model.encoder(h + model.enc_pos)
    return h[:, int(model.compression is not None):].mean(1)


def embeddings(model, data: dict, precision: str = "fp32") -> dict:
    from weightspace.representation.learner import embed

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        return {s: embed(model, data[s]).numpy().astype(np.float64) for s in SPLITS}


def probe_report(Z: dict, data: dict) -> dict:
    """Per target: the project's ridge (alpha, val, test) and the 2021 ridge on the same features."""
    out = {}
    for t in TARGETS:
        y = {s: data[s].properties[t].to_numpy(np.float64) for s in SPLITS}
        probe = ridge(Z, y)
        out[t] = {"alpha": float(probe.alpha_), "val": float(r2(y["val"], probe.predict(Z["val"]))[0]),
                  "test": float(r2(y["test"], probe.predict(Z["test"]))[0]), "ridge_2021": ridge_2021(Z, y)}
    return out


def embedding_report(model, data: dict, W: dict, S: dict, stat_names: list[str], *, full: bool = True) -> dict:
    """Spread, rank and within-model share of the embedding and its probes; with `full`, also how linear it is
    in the weights and what it reads of the weights, of B_s and of the invariant per-neuron summaries."""
    Z = embeddings(model, data)
    z = Z["train"]
    sd, mean = z.std(0), np.abs(z.mean(0))
    eig = np.clip(np.linalg.eigvalsh(np.cov(z, rowvar=False)), 0, None)
    eig_std = np.clip(np.linalg.eigvalsh(np.corrcoef(z, rowvar=False)), 0, None)  # what the standardising probe sees
    rep = {"probes": probe_report(Z, data),
           "dim_std": {"min": float(sd.min()), "median": float(np.median(sd)), "max": float(sd.max())},
           "dim_std_over_abs_mean_median": float(np.median(sd / np.maximum(mean, 1e-12))),
           "dims_std_below_1e-4": int((sd < 1e-4).sum()),
           "participation_ratio": float(eig.sum() ** 2 / max((eig ** 2).sum(), 1e-300)),
           "participation_ratio_standardised": float(eig_std.sum() ** 2 / max((eig_std ** 2).sum(), 1e-300)),
           "within_model_share": within_model_share(z, data["train"].properties["model_id"].to_numpy())}
    if full:
        from_w = ridge(W, Z)  # how linear the encoder is in the weights
        rep["linear_in_weights_r2"] = float(np.average(r2(Z["test"], from_w.predict(W["test"])), weights=sd ** 2))
        to_w = ridge(Z, W)
        rep["reads_weights_r2"] = float(np.average(r2(W["test"], to_w.predict(Z["test"])), weights=W["train"].var(0)))
        to_s = ridge(Z, S)
        rep["reads_B_s_r2"] = dict(zip(stat_names, r2(S["test"], to_s.predict(Z["test"])).round(4).tolist()))
        inv = {s: invariant_summaries(W[s], data["train"].layout) for s in SPLITS}
        rep["reads_invariant_r2"] = {}
        for name in inv["train"]:
            target = {s: inv[s][name] for s in SPLITS}
            rep["reads_invariant_r2"][name] = float(r2(target["test"], ridge(Z, target).predict(Z["test"])).mean())
    return rep


def print_report(tag: str, rep: dict) -> None:
    p = rep["probes"]
    print(f"[{tag}] " + "; ".join(
        f"{t} val {p[t]['val']:.3f} test {p[t]['test']:.3f} (alpha {p[t]['alpha']:g}; 2021 ridge test "
        f"{p[t]['ridge_2021']['test']:.3f}, alpha {p[t]['ridge_2021']['alpha']:g})" for t in TARGETS), flush=True)
    d = rep["dim_std"]
    line = (f"    z std per dim min/median/max {d['min']:.4f}/{d['median']:.4f}/{d['max']:.4f} "
            f"(median std/|mean| {rep['dim_std_over_abs_mean_median']:.3f}; {rep['dims_std_below_1e-4']} dims < 1e-4; "
            f"participation ratio {rep['participation_ratio']:.1f}, standardised {rep['participation_ratio_standardised']:.1f}); within-model share {rep['within_model_share']:.4f}")
    print(line)
    if "linear_in_weights_r2" in rep:
        print(f"    linear in the weights: R² {rep['linear_in_weights_r2']:.3f}; reads the weights: R² "
              f"{rep['reads_weights_r2']:.3f}; reads B_s: " + ", ".join(f"{k} {v:.2f}" for k, v in rep["reads_B_s_r2"].items()))
        print("    reads the invariant summaries (mean R²): " + ", ".join(
            f"{k} {v:.2f}" for k, v in rep["reads_invariant_r2"].items()))


# ------------------------------------------------------------------------------------- supervised
def supervised_check(config, layout, data: dict, epochs: int, position_std: float | None = None) -> list[dict]:
    """Train the same encoder directly on the standardised targets (Linear head, MSE, permuted views)."""
    from weightspace.representation.learner import Learner

    learner = Learner(config, layout, device="cpu")
    model = learner.model
    if position_std is not None:
        rescale_positions(model, position_std)
    head = torch.nn.Linear(model.embedding_dim, len(TARGETS))
    Y = {s: torch.tensor(data[s].properties[list(TARGETS)].to_numpy(np.float64), dtype=torch.float32) for s in SPLITS}
    mu, sd = Y["train"].mean(0), Y["train"].std(0)
    opt = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=config.train.lr)
    gen = torch.Generator().manual_seed(config.train.seed)
    bs, rows = config.train.batch_size, []
    for epoch in range(1, epochs + 1):
        model.train()
        order, losses = torch.randperm(len(data["train"]), generator=gen), []
        for start in range(0, len(order) - bs + 1, bs):
            i = order[start:start + bs]
            x = learner.symmetry(data["train"].weights[i], gen)
            loss = ((head(model.encode(x)) - (Y["train"][i] - mu) / sd) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            pred = (head(model.encode(data["val"].weights)) * sd + mu).numpy()
        score = r2(Y["val"].numpy(), pred)
        rows.append({"epoch": epoch, "train_mse_std_units": float(np.mean(losses)),
                     **{f"{t}_val": float(v) for t, v in zip(TARGETS, score)}})
        print(f"    supervised epoch {epoch}: train MSE (standardised) {rows[-1]['train_mse_std_units']:.3f}; val R² "
              + ", ".join(f"{t} {v:.3f}" for t, v in zip(TARGETS, score)), flush=True)
    return rows


# ------------------------------------------------------------------------------------------- main
def build_config(args: argparse.Namespace):
    from weightspace.representation.presets import config_2021, cpu_schedule

    config, _ = config_2021(args.config)
    if args.schedule == "cpu":
        config = cpu_schedule(config)
    config.train.device, config.train.seed = "cpu", args.seed
    for key, value in (("precision", args.precision), ("lr", args.lr), ("batch_size", args.batch_size),
                       ("scheduler", args.scheduler)):
        if value is not None:
            setattr(config.train, key, value)
    if args.gamma is not None:
        config.loss.gamma = args.gamma
    if args.recon_target is not None:
        config.loss.recon_target = args.recon_target
    if args.erase_p is not None:
        config.augment.erase_p = args.erase_p
    if args.no_permute:
        config.augment.permute = False
    if args.no_final_norm:
        config.encoder.final_norm = False
    if args.latent is not None:
        config.encoder.latent_dim = args.latent
    return config


def rescale_positions(model, std: float) -> None:
    with torch.no_grad():
        for p in (model.compression, model.enc_pos, model.dec_pos):
            if p is not None:
                p.mul_(std / p.std().clamp_min(1e-12))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    torch.set_num_threads(args.threads)
    from weightspace.data.dataset import DataConfig, ZooDataset
    from weightspace.data.splits import ModelSplit
    from weightspace.downstream.evaluate import ProbeWarning
    from weightspace.downstream.features import LayerStatistics
    from weightspace.representation.learner import Learner
    from weightspace.zoo.store import Zoo

    warnings.simplefilter("ignore", ProbeWarning)
    if not (args.zoo / "zoo.json").exists():
        print(f"no zoo at '{args.zoo}'; generate it with "
              f"`weightspace zoo generate --preset {args.zoo.name} --out {args.zoo}`", file=sys.stderr)
        return 2
    zoo = Zoo.load(args.zoo)
    dc = DataConfig()
    split = ModelSplit.of_zoo(zoo, dc.fractions, dc.seed)
    data = {s: ZooDataset(zoo, s, fractions=dc.fractions, seed=dc.seed, epochs=args.checkpoints, model_split=split)
            for s in SPLITS}
    config = build_config(args)
    print(f"{zoo.name}: checkpoints {args.checkpoints}; " + ", ".join(f"{s} {len(data[s])}" for s in SPLITS))
    tc = config.train
    print(f"config: {args.config} ({args.schedule} schedule) batch {tc.batch_size}, lr {tc.lr} ({tc.scheduler} "
          f"schedule), {tc.precision}, gamma {config.loss.gamma}, erase p {config.augment.erase_p}, permute "
          f"{config.augment.permute}, recon target {config.loss.recon_target}, final norm "
          f"{getattr(config.encoder, 'final_norm', True)}, seed {args.seed}")
    W = {s: data[s].weights.numpy().astype(np.float64) for s in SPLITS}
    statistics = LayerStatistics(zoo.layout).fit(W["train"])
    names = statistics.get_feature_names_out().tolist()
    S = {s: statistics.transform(W[s]) for s in SPLITS}
    report: dict = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}

    learner = Learner(config, zoo.layout, device="cpu")
    _, erase = config.augment.build(zoo.layout)
    geo = report["zoo"] = zoo_geometry(data, statistics, erase if config.augment.erase_p > 0 else None,
                                           zoo.layout)
    print(f"zoo: seed spread (mean |w - mean| at epoch {args.checkpoints[0]}) {geo['seed_spread']:.3f}; moved by "
          + ", ".join(f"epoch {e}: {v:.3f}" for e, v in geo["moved"].items())
          + f"; an erasing perturbation {geo['erasing_norm']:.3f} on average")
    print(f"     within-model share of variance: weights {geo['within_model_share']['weights']:.4f}, B_s "
          f"{geo['within_model_share']['B_s']:.4f} (" + ", ".join(
              f"{k} {v:.2f}" for k, v in geo["within_model_share_B_s"].items()) + ")")
    print("     within-model share of invariant summaries: " + ", ".join(
        f"{k} {v:.4f}" for k, v in geo["within_model_share_invariant"].items()))
    print(f"     test accuracy: {geo['test_acc_within_epoch_share']:.2f} of its variance lies within an epoch")
    for name, feats in (("B_W", W), ("B_s", S)):
        report[f"probes_{name}"] = probe_report(feats, data)
        print(f"[{name}] " + "; ".join(f"{t} test {v['test']:.3f} (alpha {v['alpha']:g})"
                                        for t, v in report[f"probes_{name}"].items()))

    model = learner.model
    if args.position_std is not None:
        rescale_positions(model, args.position_std)
    report["init_signal_by_stage"] = signal_by_stage(model, data["train"].weights)
    print("init: weight-dependent share (between-model std / |mean|) by stage: "
          + ", ".join(f"{k} {v:.3f}" for k, v in report["init_signal_by_stage"].items()))
    report["init"] = embedding_report(model, data, W, S, names)
    print_report("init", report["init"])
    for precision in ("bf16",):
        Zp = embeddings(model, data, precision)
        back = ridge(Zp, W)
        report[f"init_reads_weights_{precision}"] = float(np.average(r2(W["test"], back.predict(Zp["test"])),
                                                                     weights=W["train"].var(0)))
        print(f"    the same embedding computed in {precision}: reads the weights R² "
              f"{report[f'init_reads_weights_{precision}']:.3f}")
    tm = {s: token_mean_embedding(model.eval(), data[s].weights).numpy().astype(np.float64) for s in SPLITS}
    report["init_token_mean"] = probe_report(tm, data)
    to_s = ridge(tm, S)
    report["init_token_mean_reads_B_s"] = dict(zip(names, r2(S["test"], to_s.predict(tm["test"])).round(4).tolist()))
    print("    mean of the output tokens instead (d_model numbers): " + "; ".join(
        f"{t} test {v['test']:.3f}" for t, v in report["init_token_mean"].items()) + "; reads B_s: "
        + ", ".join(f"{k} {v:.2f}" for k, v in report["init_token_mean_reads_B_s"].items()))

    curve = report["curve"] = []
    for epoch in range(1, args.train_epochs + 1):
        start = time.perf_counter()
        row = learner.train_epoch(data["train"])
        seconds = time.perf_counter() - start
        row |= learner.evaluate({"train": data["train"], "val": data["val"]}, loss_splits=["val"])
        row["seconds"] = seconds  # train_epoch's row carries the learning rate the schedule has left
        print(f"epoch {epoch} ({seconds:.1f} s, lr {row['lr']:.1e}): train contrast "
              f"{row['loss_train_contrast']:.3f} recon {row['loss_train_recon']:.4f}; val contrast "
              f"{row['loss_val_contrast']:.3f} recon {row['loss_val_recon']:.4f}; reconstruction R² train "
              f"{row['rsq_train']:.3f} val {row['rsq_val']:.3f}", flush=True)
        if epoch % args.probe_every == 0 or epoch == args.train_epochs:
            rep = embedding_report(learner.model, data, W, S, names, full=epoch == args.train_epochs)
            row["embedding"] = rep
            print_report(f"epoch {epoch}", rep)
        curve.append(row)
    if args.supervised_epochs:
        print(f"supervised check: the same encoder (init seed {args.seed}) trained on {', '.join(TARGETS)}")
        report["supervised"] = supervised_check(build_config(args), zoo.layout, data, args.supervised_epochs,
                                               args.position_std)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
