"""Research probe: why linear probes with 30 labelled models are unstable, and what steadies them, on validation.

With k = 10 or 30 labelled models the quality table's linear probes on wide features swing by 0.4-0.7 R²
over draws (the code at k = 10 averages -16.6 on accuracy). The ridge grid ends at alpha 1e5; on standardised
features the Gram matrix's largest eigenvalues grow with rows x columns, so on thousands of columns even the
largest alpha leaves the leading directions almost unshrunk, and cross-validation among a few models cannot
choose "predict the mean". Or the probe's scaler is the cause: fitted on a few models' rows, it divides a
feature nearly constant among them by a tiny spread. This probe runs the label-scarce protocol with:

- ``grid``: the probes' default ridge grid, scored rows as they are (the protocol before `clip`);
- ``grid to 1e9``: the same grid extended upwards, so that the strongest fit is close to the mean;
- ``pca 16``: the default grid on the first 16 principal components of the features, fitted on every
  training model's features without labels (what self-supervision is allowed to see);
- ``clipped``: the default grid, each scored row clipped to the range of the labelled rows' features
  (`LabelScarceConfig.clip`, the protocol now).

Features: B_s, the code, and one training seed of a registered learner (default ``function``, the quality
table's "neuron_set, function objective"), trained as the quality table trains it.
Every score is on the validation split (the probes fit on the drawn training models, the protocol's
cross-validation among them chooses alpha); the test split is not read.

    python research/label_scarce_shrinkage.py --zoo tetris_seed --datasets datasets
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from representation_quality import FOLDERS, folder_experiment  # noqa: E402  (bench/, on sys.path above)

from weightspace.downstream import LayerStatistics  # noqa: E402
from weightspace.downstream.evaluate import ProbeWarning  # noqa: E402
from weightspace.downstream.features import InvariantCode  # noqa: E402
from weightspace.downstream.label_scarce import LabelScarceConfig, label_scarce_scores  # noqa: E402
from weightspace.downstream.probes import DEFAULT_ALPHAS, ProbeConfig  # noqa: E402
from weightspace.downstream.targets import derive_targets  # noqa: E402
from weightspace.pipeline.learners import create_learner, list_learners  # noqa: E402
from weightspace.pipeline.quality import Rows, learner_experiment, load_preset_zoo, train_learner  # noqa: E402

EXTENDED = (1e9, 3e8, 1e8, 3e7, 1e7, 3e6, 1e6, 3e5) + DEFAULT_ALPHAS
COMPONENTS = 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", default="tetris_seed", choices=sorted(FOLDERS))
    parser.add_argument("--datasets", type=Path, default=ROOT / "datasets")
    parser.add_argument("--encoder", default="function", choices=list_learners(), help="a registered learner")
    parser.add_argument("--ks", nargs="+", type=int, default=[10, 30, 100])
    args = parser.parse_args()
    warnings.simplefilter("ignore", ProbeWarning)
    experiment = folder_experiment(args.zoo)
    zoo = load_preset_zoo(args.zoo, args.datasets)
    rows = Rows.of(zoo, experiment)
    samples = rows.zoo.samples
    weights = np.asarray(rows.zoo.weights, dtype=np.float32)
    train = rows.splits == "train"
    layout = zoo.layout
    features = {"B_s": LayerStatistics(layout).fit(weights[train]).transform(weights),
                "code": InvariantCode(layout).fit(weights[train]).transform(weights)}
    title = create_learner(args.encoder).title
    start = time.perf_counter()
    features[title] = train_learner(learner_experiment(experiment, args.encoder, seed=0), zoo, rows).chosen
    print(f"{title}: trained in {(time.perf_counter() - start) / 60:.1f} min", flush=True)

    # the protocol scores its "test" rows: here the validation rows, and the test rows are out of reach
    splits = pd.Series(rows.splits).replace({"val": "test", "test": "unused"}).to_numpy()
    wanted = ["test_acc", "training_iteration"]
    targets = [t for t in derive_targets(samples, wanted) if not t.note]
    config = LabelScarceConfig(ks=tuple(args.ks), draws=5, probes=("linear",), clip=False)
    parts = []
    for name, X in features.items():
        variants = {"grid": (X, ProbeConfig(), False), "grid to 1e9": (X, ProbeConfig(alphas=EXTENDED), False)}
        if X.shape[1] > COMPONENTS:
            pcs = PCA(COMPONENTS, random_state=0).fit(X[train]).transform(X)
            variants[f"pca {COMPONENTS}"] = (pcs, ProbeConfig(), False)
        variants["clipped"] = (X, ProbeConfig(), True)
        for variant, (Z, probe_config, clip) in variants.items():
            table = label_scarce_scores({name: Z}, targets, samples["model_id"].to_numpy(), splits,
                                        replace(config, clip=clip), probe_config)
            parts.append(table.assign(variant=variant))
    table = pd.concat(parts, ignore_index=True)
    summary = table.groupby(["feature_set", "variant", "k", "target"], sort=False).score.agg(
        mean="mean", spread=lambda v: v.max() - v.min()).reset_index()
    wide = summary.assign(cell=summary["mean"].map("{:.3f}".format) + " ± " + summary.spread.map("{:.3f}".format))
    print(wide.pivot_table(index=["feature_set", "variant", "k"], columns="target", values="cell", aggfunc="first",
                           sort=False).to_string())


if __name__ == "__main__":
    main()
