"""The experiment report: the table shows every target and baseline, figures are written and linked,
the report is drawn from the folder's files alone (no zoo, nothing fitted), and missing or broken
inputs give a line in the report instead of a crash."""

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from weightspace.cli import main
from weightspace.data.splits import split_column
from weightspace.downstream.baselines import run_baselines
from weightspace.downstream.evaluate import COLUMNS, evaluate
from weightspace.io.atomic import write_csv
from weightspace.pipeline.projection import COLUMNS as PROJECTION_COLUMNS
from weightspace.pipeline.projection import project_embedding
from weightspace.report.markdown import FIGURES, build_report
from weightspace.report.tables import results_markdown
from weightspace.zoo.generate import generate
from weightspace.zoo.presets import get_preset

TARGETS = ("test_acc", "train_acc", "ggap", "training_iteration")


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """A complete experiment folder on a smoke zoo: baselines, random embeddings and their 2-D projection,
    results, predictions, history, json; the zoo is deleted once they are written."""
    root = tmp_path_factory.mktemp("report")
    zoo = generate(get_preset("tetris_seed", smoke=True), root / "zoo", progress=False)
    out = root / "exp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 6-model zoo: empty val split, probe notes
        run_baselines(zoo, out)
        samples = zoo.samples.copy()
        samples["split"] = split_column(samples["model_id"].to_numpy(), (0.5, 0.25, 0.25), 42)
        Z = np.random.default_rng(0).normal(size=(len(samples), 8)).astype(np.float32)  # (S, latent)
        table = evaluate(Z, zoo.samples, feature_sets={"embedding": Z}, probes=("linear", "gbt"),
                         splits=samples["split"].to_numpy(), out_predictions=out / "predictions.csv.gz")
    write_csv(table, out / "results.csv")
    np.save(out / "embeddings.npy", Z)
    write_csv(samples, out / "embedding_samples.csv")
    write_csv(project_embedding(Z, umap=False)[0], out / "embedding_2d.csv")
    it = np.arange(1, 6)
    history = pd.DataFrame({"training_iteration": it, "loss_train": 3.0 / it, "loss_val": 3.2 / it,
                            "loss_contrast_train": 2.0 / it, "loss_val_recon": 0.5 / it,  # both spellings
                            "rsq_train": 1 - 1 / it, "rsq_test": 0.9 - 1 / it, "date": "2024-01-01",
                            **{f"{t}_{s}": np.linspace(0, 0.5, 5) for t in TARGETS for s in ("val", "test")}})
    write_csv(history, out / "history.csv")
    meta = {"format": "weightspace-experiment", "name": "smoke_experiment", "zoo": {"path": str(zoo.path), "source": "generated smoke zoo"},
            "config": {"iterations": 2, "representation": {"encoder": {"latent_dim": 8}}},
            "timings": {"baselines": 1.5, "representation": 400.0}, "notes": "a test"}
    (out / "experiment.json").write_text(json.dumps(meta))
    shutil.rmtree(zoo.path)  # the report is drawn from the folder alone
    return out


def copy_of(experiment, tmp_path, drop=()):
    out = tmp_path / "exp"
    shutil.copytree(experiment, out)
    for name in drop:
        (out / name).unlink()
    return out


def figure_links(text):
    return {name for name in FIGURES.values() if f"]({name})" in text}


def test_report_has_a_row_per_target_every_figure_and_the_config(experiment, tmp_path):
    out = copy_of(experiment, tmp_path)
    path = build_report(out, umap=False)
    text = path.read_text()
    assert path == out / "report.md"
    assert text.startswith("# Experiment report: smoke_experiment")
    assert "Zoo: generated smoke zoo" in text
    header = ("| target | metric | B_W | B_s | B_s + GBT | Code | Code + GBT | B_probe | B_probe task | Hyperparameters "
              "| Representation |")
    assert text.count(header) == 2  # R² / accuracy, then Kendall tau
    for target in TARGETS:
        assert f"| {target} | R² |" in text and f"| {target} | Kendall τ |" in text
    assert "| embedding / gbt |" in text  # pairs outside the main columns get their own table
    assert "Not in the tables: Hyperparameters" in text  # tetris_seed varies no hyperparameter
    assert "Kendall τ is undefined here: the predictions (or the true values) are constant" in text
    assert figure_links(text) == set(FIGURES.values())
    for name in FIGURES.values():
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert "PCA" in text and "--no-umap" in text
    assert "<details>" in text and '"latent_dim": 8' in text
    assert "| representation | 6.7 min |" in text
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporary files


def test_each_row_bolds_its_best_value(experiment, tmp_path):
    text = build_report(copy_of(experiment, tmp_path), umap=False).read_text()
    rows = [line for line in text.splitlines() if line.startswith("| test_acc | R² |")]
    values = [float(c.strip(" *")) for c in rows[0].split("|")[3:-1] if c.strip() not in ("\u2014", "")]
    bold = [float(c.strip(" *")) for c in rows[0].split("|")[3:-1] if "**" in c]
    assert bold == [max(values)]


def toy_table():
    rows = []
    def add(fs, probe, target, task, split, metric, value, note=""):
        rows.append(dict(zip(COLUMNS, (fs, probe, target, task, split, metric, value, "", 10, note))))
    for fs, probe, v in (("raw", "linear", 0.1), ("stats", "linear", 0.4), ("stats", "gbt", 0.6),
                         ("hyper", "linear", 0.2), ("hyper", "gbt", 0.3), ("embedding", "linear", 0.5)):
        add(fs, probe, "test_acc", "regression", "test", "r2", v)
        add(fs, probe, "test_acc", "regression", "test", "kendall_tau", v / 2)
        add(fs, probe, "test_acc", "regression", "val", "r2", v)
        add(fs, probe, "activation", "classification", "test", "accuracy", 0.5 + v)
    note = "target 'training_iteration' is an input of feature set 'hyper'"
    for probe in ("linear", "gbt"):
        add("hyper", probe, "training_iteration", "regression", "test", "r2", np.nan, note)
        add("hyper", probe, "training_iteration", "regression", "test", "kendall_tau", np.nan, note)
    add("stats", "linear", "training_iteration", "regression", "test", "r2", 0.7)
    add("stats", "linear", "training_iteration", "regression", "test", "kendall_tau", 0.6)
    return pd.DataFrame(rows)


def test_results_markdown_picks_probes_and_explains_missing_values():
    text = results_markdown(toy_table())
    lines = text.splitlines()
    acc = next(line for line in lines if line.startswith("| test_acc | R² |"))
    assert acc.split("|")[3:-1] == [" 0.100 ", " 0.400 ", " **0.600** ", " 0.300 (gbt) ", " 0.500 "]
    assert "| activation | accuracy |" in text and "| activation | Kendall τ |" not in text
    epoch = next(line for line in lines if line.startswith("| training_iteration | R² |"))
    assert epoch.count("\u2014[^1]") == 1 and epoch.count("\u2014") == 4  # raw, gbt, embedding: no rows; hyper: a note
    assert "[^1]: target 'training_iteration' is an input of feature set 'hyper'" in text
    assert text.count("[^2]") == 0  # the same note is one footnote
    assert "Not in the tables: Code, Code + GBT, B_probe, B_probe task._" in text  # baselines this table lacks


def test_cli_report_returns_zero(experiment, tmp_path, capsys):
    out = copy_of(experiment, tmp_path)
    assert main(["report", str(out), "--no-umap"]) == 0
    assert str(out / "report.md") in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nowhere"), "--no-umap"]) == 2


def test_empty_folder_gives_a_report_that_says_what_is_missing(tmp_path):
    text = build_report(tmp_path, umap=False).read_text()
    assert text.startswith(f"# Experiment report: {tmp_path.name}")
    for reason in ("no baselines.csv", "no results.csv", "no embeddings.npy", "no history.csv",
                   "experiment.json is missing"):
        assert reason in text
    assert not figure_links(text) and not list(tmp_path.glob("*.png"))


def test_missing_embeddings_skip_only_the_embedding_figures(experiment, tmp_path):
    out = copy_of(experiment, tmp_path, drop=("embeddings.npy",))
    text = build_report(out, umap=False).read_text()
    assert "no embeddings.npy" in text
    assert figure_links(text) == {FIGURES["curves"]}
    assert "| test_acc | R² |" in text


def test_mismatched_embeddings_and_broken_files_are_reported(experiment, tmp_path):
    out = copy_of(experiment, tmp_path, drop=("results.csv",))
    np.save(out / "embeddings.npy", np.zeros((3, 8), dtype=np.float32))
    (out / "history.csv").write_text("")
    (out / "experiment.json").write_text("{not json")
    text = build_report(out, umap=False).read_text()
    assert "embeddings.npy has shape (3, 8)" in text and "history.csv is unreadable" in text
    assert "No representation results" in text
    assert "| test_acc | R² |" in text  # the baselines still make a table


def test_report_without_the_zoo_draws_every_figure_and_table_and_fits_nothing(experiment, tmp_path, monkeypatch):
    from weightspace.downstream import probes
    from weightspace.zoo.store import Zoo

    def refuse(*args, **kwargs):
        raise AssertionError("the report must only read the experiment folder's files")

    for owner, name in ((Zoo, "load"), (probes.RidgeProbe, "fit"), (probes.BoostedTreesRegressorProbe, "fit")):
        monkeypatch.setattr(owner, name, refuse)
    out = copy_of(experiment, tmp_path)
    assert not Path(json.loads((out / "experiment.json").read_text())["zoo"]["path"]).exists()
    text = build_report(out, umap=False).read_text()
    assert figure_links(text) == set(FIGURES.values())
    assert "Representation, linear probe and B_s + boosted trees" in text and "Not plotted" not in text
    assert "| test_acc | R² |" in text and "| embedding / gbt |" in text
    assert "Skipped" not in text


def test_saved_predictions_reproduce_the_scores_of_the_tables(experiment):
    from weightspace.downstream.targets import score

    for table_name, predictions_name in (("results.csv", "predictions.csv.gz"),
                                         ("baselines.csv", "baseline_predictions.csv.gz")):
        table = pd.read_csv(experiment / table_name)
        predictions = pd.read_csv(experiment / predictions_name)
        scored = table[(table["metric"] == "r2") & table["value"].notna()]
        assert len(scored)
        for r in scored.itertuples():
            part = predictions[(predictions["feature_set"] == r.feature_set) & (predictions["probe"] == r.probe)
                               & (predictions["target"] == r.target) & (predictions["split"] == r.split)]
            assert len(part) == r.n
            assert score("regression", part["truth"].to_numpy(float), part["prediction"].to_numpy(float))["r2"] \
                == pytest.approx(r.value, rel=1e-9, abs=1e-12)


def test_projection_covers_the_finite_rows_and_says_why_it_has_no_umap():
    Z = np.random.default_rng(0).normal(size=(40, 4))
    Z[3] = np.nan
    coords, why = project_embedding(Z, umap=False, max_rows=30)
    assert list(coords.columns) == PROJECTION_COLUMNS and set(coords["method"]) == {"PCA"}
    assert len(coords) == 30 and 3 not in set(coords["row"]) and coords["row"].is_monotonic_increasing
    assert why == "UMAP was not asked for"
    empty, why = project_embedding(Z[:2], umap=True)
    assert empty.empty and "only 2 embeddings are finite" in why


def test_missing_baseline_predictions_plot_only_the_representation(experiment, tmp_path):
    out = copy_of(experiment, tmp_path, drop=("baseline_predictions.csv.gz",))
    text = build_report(out, umap=False).read_text()
    assert FIGURES["pred_vs_true"] in figure_links(text)
    assert "Not plotted: B_s + boosted trees" in text and "is not there" in text


def test_history_without_known_columns_skips_the_curves(experiment, tmp_path):
    out = copy_of(experiment, tmp_path)
    pd.DataFrame({"training_iteration": [1, 2], "lr": [0.1, 0.1]}).to_csv(out / "history.csv", index=False)
    text = build_report(out, umap=False).read_text()
    assert "history.csv has no loss" in text and FIGURES["curves"] not in figure_links(text)


@pytest.mark.long
@pytest.mark.slow  # umap-learn imports and JITs for about 30 s
def test_umap_projection(experiment, tmp_path):
    pytest.importorskip("umap")
    out = copy_of(experiment, tmp_path)
    coords, _ = project_embedding(np.load(out / "embeddings.npy"), umap=True)  # what the pipeline saves
    write_csv(coords, out / "embedding_2d.csv")
    text = build_report(out, umap=True).read_text()
    assert "UMAP of the embeddings" in text and "PCA" not in text


def test_report_without_a_saved_umap_draws_the_pca_and_says_why(experiment, tmp_path):
    out = copy_of(experiment, tmp_path)
    (out / "results.json").write_text(json.dumps({"projection_note": "umap-learn is not installed"}))
    text = build_report(out, umap=True).read_text()
    assert "PCA because the run saved no UMAP projection (umap-learn is not installed)" in text
    (out / "embedding_2d.csv").unlink()
    text = build_report(out, umap=True).read_text()
    assert "Skipped the 2-D projection: there is no embedding_2d.csv" in text
    assert figure_links(text) == {FIGURES["pred_vs_true"], FIGURES["curves"]}


def test_outcome_sentence_counts_the_targets_the_representation_wins():
    from weightspace.report.tables import outcome_sentence

    rows = []
    for fs, probe, values in (("embedding", "linear", (0.5, 0.2)), ("stats", "linear", (0.3, 0.4)),
                              ("stats", "gbt", (0.6, 0.1))):
        for target, value in zip(("test_acc", "training_iteration"), values):
            rows.append({"feature_set": fs, "probe": probe, "target": target, "task": "regression", "split": "test",
                         "metric": "r2", "value": value})
    sentence = outcome_sentence(pd.DataFrame(rows))
    assert sentence.startswith("One run:") and "supports no claim" in sentence and "beats" not in sentence
    assert "reads above B_s on 1 of 2 (test_acc)" in sentence
    assert "B_s + boosted trees on 1 of 2 (training_iteration)" in sentence
    assert outcome_sentence(pd.DataFrame(rows[2:])) == ""  # no representation rows: no sentence
