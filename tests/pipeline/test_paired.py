"""The paired decision rule: a learned row against its random init or a baseline, pair by pair on the same seeds
and label draws, met only where the whole bootstrap interval clears the margin. Planted rows: a real gain inside
the noise of seeds and draws is not met; a clear one is; pairs match draw to draw."""

import numpy as np
import pandas as pd

from weightspace.pipeline.paired import paired_differences, paired_interval, paired_rows, read_paired, write_paired
from weightspace.pipeline.quality import RAW_COLUMNS


def planted(gain: float, noise: float, *, k: str | None = None, draws: int = 1, seeds: int = 3) -> pd.DataFrame:
    """Raw rows of one zoo: a baseline B_s (gbt) per draw, a learner and its random init per seed and draw; the
    learner's value = the init's + `gain` + `noise` times an offset that alternates -1.1, +1, -1, +1, ..."""
    offsets = iter([-1.1] + [(-1) ** i for i in range(2 * draws * seeds)])
    rows = []
    for d in range(draws):
        base = 0.5 + 0.05 * d  # draws differ: a pairing that ignored them would blur the difference
        rows.append(dict(encoder="baselines", feature_set="B_s", probe="gbt", seed=0, draw=d, value=base))
        for s in range(seeds):
            init = base + 0.01 * s
            rows += [dict(encoder="L", feature_set="L, random init", probe="linear", seed=s, draw=d, value=init),
                     dict(encoder="L", feature_set="L", probe="linear", seed=s, draw=d,
                          value=init + gain + noise * next(offsets))]
    table = pd.DataFrame(rows).assign(zoo="z", target="test_acc", metric="r2", split="test", k=k, minutes=0.0,
                                      chosen=1, note="")
    if k is None:
        table["draw"] = np.nan
    return table.reindex(columns=RAW_COLUMNS)


def verdict(rows: pd.DataFrame, comparison: str) -> pd.Series:
    found = rows[(rows.comparison == comparison) & (rows.target == "test_acc")]
    assert len(found) == 1
    return found.iloc[0]


def test_a_clear_gain_is_met_and_a_gain_inside_the_noise_is_not():
    clear = verdict(paired_rows(planted(0.2, 0.01)), "training")
    assert clear.met and clear["diff"] > 0.15 and clear.low > 0.1 and clear.pairs == 3
    noisy = verdict(paired_rows(planted(0.2, 0.5)), "training")  # the same mean gain, lost in the seeds' noise
    assert not noisy.met and noisy.low <= 0.1


def test_label_scarce_pairs_match_draw_to_draw_against_a_baseline():
    raw = planted(0.05, 0.001, k="30", draws=5)
    diffs = paired_differences(raw[raw.feature_set == "L"], raw[raw.feature_set == "B_s"])
    assert len(diffs) == 15  # 3 seeds x 5 draws, each against its draw's baseline
    # gain 0.05 over an init 0 ... 0.02 above the baseline: every pair is 0.05 ... 0.07, never the draws' 0.05 steps
    assert diffs.min() > 0.04 and diffs.max() < 0.08
    row = verdict(paired_rows(raw), "k=30: > B_s + gbt")
    assert row.met and row.margin == 0.0


def test_the_interval_covers_the_mean_and_one_pair_is_its_own_interval():
    mean, low, high = paired_interval(np.array([0.1, 0.2, 0.3, 0.4]))
    assert low <= mean <= high and mean == np.float64(0.25)
    assert paired_interval(np.array([0.3])) == (0.3, 0.3, 0.3)


def test_pairs_are_kept_beside_the_table_and_a_rerun_of_one_learner_keeps_the_baselines(tmp_path):
    stem = tmp_path / "table"
    write_paired(stem, planted(0.2, 0.01), "z")
    learner_only = planted(0.0, 0.01)
    write_paired(stem, learner_only[learner_only.encoder != "baselines"], "z")
    kept = pd.read_csv(tmp_path / "table_rows.csv")
    assert (kept.encoder == "baselines").sum() == 1 and (kept.feature_set == "L").sum() == 3
    assert not verdict(read_paired(stem), "training").met  # the rerun's rows replaced the first run's


def test_a_narrower_baseline_run_keeps_the_raw_baseline_rows_it_did_not_make(tmp_path):
    def raw(k, value):
        return pd.DataFrame([dict(zoo="z", encoder="baselines", feature_set="B_s", probe="gbt", target="test_acc",
                                  metric="r2", split="test", k=k, draw=d, value=value, seed=0) for d in range(2)]
                            ).reindex(columns=RAW_COLUMNS)
    write_paired(tmp_path / "t", pd.concat([raw("10", 0.1), raw("30", 0.2)]), "z")
    write_paired(tmp_path / "t", raw("30", 0.5), "z")  # a run of k = 30 alone
    kept = pd.read_csv(tmp_path / "t_rows.csv", dtype={"k": object})
    assert sorted(zip(kept.k, kept.value)) == [("10", 0.1), ("10", 0.1), ("30", 0.5), ("30", 0.5)]
