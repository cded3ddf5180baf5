"""The baseline registry: each baseline is declared once, and the suite, the report's columns, the console table,
baseline_performance.json and the quality table all read that declaration."""

import json

import pandas as pd

from weightspace.downstream.baselines import (
    BASELINES,
    BaselineConfig,
    format_table,
    json_key,
    run_baselines,
    short_name,
)
from weightspace.pipeline import quality
from weightspace.pipeline.experiment import zoo_experiment
from weightspace.report.tables import COLUMNS, RIVALS


def test_every_declared_baseline_reaches_the_table_the_json_the_console_and_the_report(make_zoo, tmp_path):
    zoo = make_zoo(models=30)
    config = BaselineConfig(outputs={"variants": ()})  # B_probe needs networks this toy zoo cannot build
    table = run_baselines(zoo, tmp_path, config)
    written = json.loads((tmp_path / "baseline_performance.json").read_text())
    console = format_table(table)
    for baseline in BASELINES:
        if baseline.key.startswith("outputs_"):
            continue
        probes = set(table[table.feature_set == baseline.key].probe)
        assert probes == set(baseline.runs(config)), baseline.key
        for probe in probes:
            assert json_key(baseline.key, probe) in written
            assert f" {short_name(baseline.key, probe)} " in console
        assert {(label, baseline.key) for label, key, _ in COLUMNS if key == baseline.key} \
            == {(label, baseline.key) for label, _, _ in baseline.columns()}
    assert written["results_im"] and written["results_lq"]  # the 2021 names of B_W and B_s
    assert {key for _, key, _ in RIVALS} <= {b.key for b in BASELINES}


def test_the_quality_table_names_each_baseline_as_declared(make_zoo):
    zoo = make_zoo(models=30)
    config = quality.QualityConfig(encoders=(), baselines=("B_W", "B_s", "code"))
    rows = quality.run_quality(zoo, zoo_experiment(zoo), config)
    declared = {(b.table, p) for b in BASELINES if b.table in ("B_W", "B_s", "code") for p in b.probes}
    assert set(zip(rows.feature_set, rows.probe)) == declared
    assert isinstance(rows, pd.DataFrame) and rows.value.notna().any()

