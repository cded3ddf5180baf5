"""Research probe: an encoder trained on one zoo's weights, probed with a few labelled models of another zoo.

The stretch goal of self-supervision: trained without labels on one zoo (e.g. tetris_hyp, many
hyperparameters) and probed with the labels of only k models of another zoo of the same architecture
(tetris_seed), the embedding should beat B_s + boosted trees there. For each training seed the encoder trains
on the source zoo exactly as the quality table trains it (the source's validation split chooses the state;
the random init is a candidate), embeds every model of the target zoo, and the label-scarce protocol
(`LabelScarceConfig`: k labelled target training models, 5 draws, cross-validation among them, scored rows
clipped to their range) scores it on the target's test split. The same encoder at random initialisation is
the control. The baselines to beat are the target's own label-scarce rows in docs/representation_quality.csv.

    python research/transfer_probe.py --source tetris_hyp --target tetris_seed --seeds 3
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from representation_quality import FOLDERS, folder_experiment  # noqa: E402  (bench/, on sys.path above)

from weightspace.downstream.evaluate import ProbeWarning  # noqa: E402
from weightspace.downstream.label_scarce import LabelScarceConfig  # noqa: E402
from weightspace.pipeline.experiment import experiment_split, resolved_config  # noqa: E402
from weightspace.pipeline.learners import create_learner, list_learners  # noqa: E402
from weightspace.pipeline.quality import Rows, label_scarce, learner_experiment, load_preset_zoo  # noqa: E402
from weightspace.pipeline.quality_table import read_table  # noqa: E402
from weightspace.pipeline.training import control_model, train_in_process  # noqa: E402
from weightspace.representation.learner import embed  # noqa: E402

TABLE = ROOT / "docs" / "representation_quality.csv"
BASELINES = [("B_s", "gbt"), ("code", "gbt"), ("B_probe (data-free)", "linear")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="tetris_hyp", choices=sorted(FOLDERS))
    parser.add_argument("--target", default="tetris_seed", choices=sorted(FOLDERS))
    parser.add_argument("--datasets", type=Path, default=ROOT / "datasets")
    parser.add_argument("--encoder", default="function", choices=list_learners(), help="a registered learner")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--k", type=int, default=30)
    args = parser.parse_args()
    warnings.simplefilter("ignore", ProbeWarning)
    source_experiment, target_experiment = folder_experiment(args.source), folder_experiment(args.target)
    source_zoo, target_zoo = load_preset_zoo(args.source, args.datasets), load_preset_zoo(args.target, args.datasets)
    if source_zoo.layout != target_zoo.layout:
        raise SystemExit(f"{args.source} and {args.target} hold networks of different layouts: no transfer")
    target = Rows.of(target_zoo, target_experiment)
    title = create_learner(args.encoder).title
    wanted = ["test_acc", "training_iteration"]
    config = LabelScarceConfig(ks=(args.k,), draws=5, probes=("linear",))
    rows = []
    for seed in range(args.seeds):
        start = time.perf_counter()
        # trained on the source as the quality table trains it (`quality.train_learner`): the source's
        # validation split chooses the state, the random init a candidate
        run = learner_experiment(source_experiment, args.encoder, seed=seed)
        learner = resolved_config(run, source_zoo, device="cpu")
        trained = train_in_process(learner, source_zoo, experiment_split(run, source_zoo), iterations=run.iterations,
                                   targets=run.targets, select=run.select)
        batch = learner.train.eval_batch_size
        features = {"transferred": embed(trained.learner.model, target.zoo.weights, batch_size=batch).numpy(),
                    "transferred, random init": embed(control_model(trained), target.zoo.weights,
                                                      batch_size=batch).numpy()}
        table = label_scarce(target, features, wanted, config)
        rows.append(table.assign(seed=seed))
        print(f"seed {seed}: {(time.perf_counter() - start) / 60:.1f} min, chose evaluation {trained.chosen}",
              flush=True)
    table = pd.concat(rows, ignore_index=True)
    summary = table.groupby(["feature_set", "target"], sort=False).value.agg(
        mean="mean", spread=lambda v: v.max() - v.min()).reset_index()
    print(f"\n{title}, trained on {args.source}, probed on {args.target} with {args.k} labelled models "
          f"(test; mean ± spread over {args.seeds} seeds x 5 draws):")
    for r in summary.itertuples():
        print(f"  {r.feature_set:28s} {r.target:20s} {r.mean:.3f} ± {r.spread:.3f}")
    if TABLE.exists():
        known = read_table(TABLE)
        known = known[(known.zoo == args.target) & (known.split == "test") & (known.k == str(args.k))
                      & known.target.isin(wanted)]
        print(f"{args.target}'s own rows in {TABLE.name} (k = {args.k}):")
        for feature_set, probe in BASELINES + [(title, "linear")]:
            for r in known[(known.feature_set == feature_set) & (known.probe == probe)].itertuples():
                print(f"  {feature_set + ' (' + probe + ')':28s} {r.target:20s} {r.mean:.3f} ± {r.spread:.3f}")


if __name__ == "__main__":
    main()
