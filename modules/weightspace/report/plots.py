"""The figures of the experiment report (`weightspace.report.markdown`).

Figures are drawn on a bare `matplotlib.figure.Figure` with an Agg canvas, so
pyplot's global figure registry and the process's backend are never touched,
and written atomically (a temporary file beside the target, then `os.replace`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from weightspace.io.atomic import atomic_file

SPLIT_COLORS = {"train": "C0", "val": "C1", "test": "C2"}
SPLITS = tuple(SPLIT_COLORS)
DPI = 110


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write `fig` as PNG to `path` atomically."""
    path = Path(path)
    FigureCanvasAgg(fig)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def embedding_scatter(xy: np.ndarray, values: np.ndarray, path: str | os.PathLike, *, title: str,
                      label: str, method: str) -> Path:
    """Points ``xy`` (n, 2) coloured by `values` (n,); rows with a missing value are drawn grey."""
    fig = Figure(figsize=(6.0, 5.0), layout="constrained")
    ax = fig.add_subplot()
    known = np.isfinite(values)
    size = 4 if len(xy) > 2000 else 12
    if (~known).any():
        ax.scatter(xy[~known, 0], xy[~known, 1], s=size, c="lightgrey", linewidths=0, label="missing")
        ax.legend(loc="best", fontsize="small")
    points = ax.scatter(xy[known, 0], xy[known, 1], c=values[known], s=size, cmap="viridis", linewidths=0)
    fig.colorbar(points, ax=ax, label=label)
    ax.set(title=title, xlabel=f"{method} 1", ylabel=f"{method} 2", xticks=[], yticks=[])
    return save_figure(fig, path)


def pred_vs_true(panels: Sequence[tuple[str, np.ndarray, np.ndarray, float]], path: str | os.PathLike, *,
                 quantity: str = "test accuracy") -> Path:
    """One scatter per ``(title, y_true, y_pred, r2)`` panel, side by side, with the y = x line."""
    fig = Figure(figsize=(4.6 * len(panels), 4.4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    values = np.concatenate([np.r_[t, p] for _, t, p, _ in panels])
    lo, hi = float(np.min(values)), float(np.max(values))
    pad = 0.03 * (hi - lo or 1.0)
    for ax, (title, y_true, y_pred, r2) in zip(axes, panels):
        ax.scatter(y_true, y_pred, s=6 if len(y_true) > 2000 else 14, alpha=0.6, linewidths=0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="black", linewidth=1)  # y = x
        ax.set(xlim=(lo - pad, hi + pad), ylim=(lo - pad, hi + pad), aspect="equal",
               xlabel=f"true {quantity}", ylabel=f"predicted {quantity}",
               title=f"{title}\nR² = {r2:.3f} (test split, n = {len(y_true)})")
    return save_figure(fig, path)


def training_curves(history: pd.DataFrame, targets: Sequence[tuple[str, str]],
                    path: str | os.PathLike) -> Path | None:
    """Losses, reconstruction R² and per-target probe scores against the training iteration.

    Args:
        history: one row per iteration; the columns used are ``loss_<split>``,
            ``loss_<split>_<part>`` or ``loss_<part>_<split>`` (part: contrast, recon),
            ``rsq_<split>`` and ``<target>_<split>``; missing ones are skipped.
        targets: ``(target, metric label)`` pairs whose probe scores to plot (val and test).

    Returns:
        The path, or None when `history` holds none of these columns.
    """
    x_name = next((c for c in ("training_iteration", "epoch") if c in history), None)
    x = _numeric(history, x_name) if x_name else np.arange(1, len(history) + 1, dtype=float)
    # (title, y label, [(legend, column, colour, line style)])
    panels: list[tuple[str, str, list[tuple[str, str, str, str]]]] = []
    panels.append(("loss", "loss", [(s, f"loss_{s}", SPLIT_COLORS[s], "-") for s in SPLITS]))
    parts = []
    for part, style in (("contrast", "-"), ("recon", "--")):
        for s in SPLITS:
            col = next((c for c in (f"loss_{s}_{part}", f"loss_{part}_{s}") if c in history), None)
            if col is not None:  # history has neither spelling: the line would be dropped below anyway
                parts.append((f"{part} {s}", col, SPLIT_COLORS[s], style))
    panels.append(("loss components", "loss", parts))
    panels.append(("reconstruction", "R²", [(s, f"rsq_{s}", SPLIT_COLORS[s], "-") for s in SPLITS]))
    for target, metric in targets:
        panels.append((f"probe: {target}", metric, [(s, f"{target}_{s}", SPLIT_COLORS[s], "-")
                                                     for s in ("val", "test")]))
    panels = [(t, y, [line for line in lines if line[1] in history]) for t, y, lines in panels]
    panels = [p for p in panels if p[2]]
    if not panels:
        return None
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(4.4 * ncols, 3.3 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (title, ylabel, lines) in zip(axes, panels):
        shown_parts = []
        for legend, col, colour, style in lines:
            y = _numeric(history, col)
            ok = np.isfinite(x) & np.isfinite(y)
            shown_parts.append(y[ok])
            ax.plot(x[ok], y[ok], style, color=colour, label=legend, marker="." if ok.sum() <= 30 else None)
        shown = np.concatenate(shown_parts)
        if ylabel == "loss" and len(shown) and shown.min() > 0 and shown.max() > 10 * shown.min():
            ax.set_yscale("log")  # only where losses span more than a decade
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(title=title, xlabel=x_name or "iteration", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return save_figure(fig, path)


def _numeric(table: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
