"""Every experiment folder's scripts run end to end with --smoke-test and write their files."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from weightspace.pipeline.learners.registry import SMOKE_ENCODER

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = sorted(p for p in ROOT.glob("[0-9][0-9]_*") if p.is_dir() and (p / "compute_baselines.py").exists())


def run(script: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script.name, *args], cwd=script.parent, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
# CI runs the first folder's (the README's); the others are long, run by -m slow
@pytest.mark.parametrize("folder", [pytest.param(f, id=f.name, marks=() if f == FOLDERS[0] else pytest.mark.long)
                                    for f in FOLDERS])
def test_smoke_run_writes_results_and_report(folder, tmp_path):
    out = tmp_path / "out"
    base = run(folder / "compute_baselines.py", "--smoke-test", "--output-dir", str(out), "--no-report")
    assert base.returncode == 0, base.stderr[-3000:]
    baselines = json.loads((out / "baseline_performance.json").read_text())
    assert {"results_im", "results_lq"} <= set(baselines)
    assert {"test_acc_train", "test_acc_val", "test_acc_test"} <= set(baselines["results_im"])

    again = run(folder / "compute_baselines.py", "--smoke-test", "--output-dir", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr  # finished results are kept

    scripts = sorted(folder.glob("simclr_ae_*.py"))
    assert scripts, f"{folder.name} has no simclr_ae_<name>.py"
    rep = run(scripts[0], "--smoke-test", "--output-dir", str(out), "--device", "cpu", "--precision", "bf16")
    assert rep.returncode == 0, rep.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert {"test_acc_train", "test_acc_val", "test_acc_test", "rsq_test"} <= set(results)
    assert (out / "embeddings.npy").exists() and (out / "history.csv").exists()
    for name in ("baseline_predictions.csv.gz", "predictions.csv.gz", "embedding_2d.csv"):
        assert (out / name).exists(), name  # the report draws from these, not from the zoo
    history = pd.read_csv(out / "history.csv")  # the embedding comes from the best iteration on val (latest on ties)
    score = history["probe_mean_val"]
    best = int(history.loc[score == score.max(), "training_iteration"].max())
    assert results["selected_iteration"] == best
    report = (out / "report.md").read_text()
    assert "test_acc" in report and ".png" in report and f"from iteration {best} of 2" in report
    gains = pd.read_csv(out / "training_gain.csv").set_index("target")  # trained against its random init
    assert gains.loc["test_acc", "trained"] == pytest.approx(results["test_acc_test"], abs=1e-9)
    if best == 0:  # the control is iteration 0 rebuilt: the same embedding, so exactly no gain
        assert (gains.gain == 0).all() and "Training added nothing" in report
    assert "### What training added" in report and "90 % interval" in report
    recorded = json.loads((out / "experiment.json").read_text())
    assert recorded["zoo"]["source"].startswith("generated smoke zoo")
    for target in recorded["config"]["targets"] or ():  # a folder naming its targets gets a score for each
        assert f"{target}_test" in results, f"{folder.name}: no test score for {target}"
    assert f"Learner: {recorded['learner']}" in report  # the report names the learner it ran
    assert recorded["config"]["representation"]["train"]["precision"] == "bf16"
    trial = json.loads(next((out / "tune").glob("*/params.json")).read_text())
    assert trial["train"]["precision"] == "bf16"  # --precision reached the trainable


@pytest.mark.long
@pytest.mark.slow
def test_the_2021_variant_runs_into_its_own_folder_and_unknown_variants_are_named(tmp_path):
    folder = ROOT / "11_tetris_seed"
    script = next(folder.glob("simclr_ae_*.py"))
    bad = run(script, "--smoke-test", "--variant", "2012", "--output-dir", str(tmp_path / "x"))
    assert bad.returncode == 2 and "unknown learner '2012'" in bad.stderr and "'2021'" in bad.stderr
    assert not (tmp_path / "x").exists()
    rep = run(script, "--smoke-test", "--variant", "2021", "--output-dir", str(tmp_path / "v"), "--device", "cpu")
    assert rep.returncode == 0, rep.stderr[-3000:]
    recorded = json.loads((tmp_path / "v" / "experiment.json").read_text())
    assert recorded["config"]["learner"] == "2021" and recorded["name"] == "tetris_seed_2021_smoke"
    assert recorded["learner"] == "2021 transformer (cpu schedule) (smoke)"  # the registry's title of its copy
    assert recorded["config"]["representation"]["encoder"]["name"] == "transformer_neuron"
    assert "Learner: 2021 transformer (cpu schedule) (smoke)" in (tmp_path / "v" / "report.md").read_text()


ABLATIONS = ROOT / "01_ablation_studies"
ABLATION_SCRIPTS = ("ablation_architecture.py", "ablation_compression.py", "ablation_loss_augmentation.py")


@pytest.mark.long
@pytest.mark.slow
def test_ablation_smoke_runs_write_trials_and_one_summary(tmp_path):
    assert ABLATIONS not in FOLDERS  # the grids have no baselines, results.json or report
    # the three scripts start their own ray instances; run side by side, they overlap ray's start-up waits
    procs = {name: subprocess.Popen([sys.executable, name, "--smoke-test", "--output-dir",
                                     str(tmp_path / name.removeprefix("ablation_").removesuffix(".py")),
                                     "--device", "cpu"], cwd=ABLATIONS, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
             for name in ABLATION_SCRIPTS}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name}: {err[-3000:]}"

    trials = {}
    for name in ABLATION_SCRIPTS:
        ablation = name.removeprefix("ablation_").removesuffix(".py")
        table = pd.read_csv(tmp_path / ablation / "trials.csv")
        assert len(table) == 2  # --smoke-test shrinks every grid to two trials
        assert not (tmp_path / ablation / "results.json").exists()
        trials[ablation] = table
    assert list(trials["architecture"]["encoder.name"]) == ["mlp", "transformer_weight"]
    architecture = trials["architecture"].set_index("encoder.name")
    # completed from the smoke copy of the folder's learner (SMOKE_ENCODER: the fields every learner shrinks to)
    assert architecture.loc["transformer_weight", "encoder.d_model"] == SMOKE_ENCODER["d_model"]
    assert architecture.loc["mlp", "encoder.latent_dim"] == SMOKE_ENCODER["latent_dim"]  # a field both share
    assert sorted(trials["compression"]["encoder.latent_dim"]) == [33, 50]

    summary = pd.read_csv(tmp_path / "summary.csv")  # every script refreshes the folder's one table
    assert summary.groupby("ablation").size().to_dict() == {a: 2 for a in trials}
    assert {"encoder.name", "encoder.latent_dim", "loss.gamma",
            "test_acc_test", "training_iteration_test", "ggap_test", "rsq_test"} <= set(summary.columns)
    assert "encoder.compression_token" not in summary  # a field of one encoder of a grid is not an axis
    assert summary["rsq_test"].notna().all() and summary["test_acc_test"].notna().all()
    assert (summary["minutes"] > 0).all()  # each trial's training time
    markdown = (tmp_path / "summary.md").read_text()
    assert markdown.count("\n| architecture |") == 2 and "R² reconstruction | minutes |" in markdown

    again = subprocess.run([sys.executable, "summarize.py", str(tmp_path)], cwd=ABLATIONS, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert pd.read_csv(tmp_path / "summary.csv").equals(summary)


def test_ablation_grid_variants_are_completed_shrunk_and_named():
    from weightspace.pipeline.ablation import grid_axes, resolve_search_space, shrink_search_space
    from weightspace.representation.config import LearnerConfig, config_to_dict

    base = config_to_dict(LearnerConfig())
    base["encoder"]["latent_dim"] = 20
    space = {"encoder": {"grid_search": [{"name": "mlp"}, {"name": "transformer_weight"},
                                         {"name": "transformer_weight", "compression_token": False}]},
             "loss": {"gamma": {"grid_search": [1.0, 0.5, 0.0]}},
             "augment": {"permute": {"grid_search": [True, False]}}}
    resolved = resolve_search_space(space, base)
    variants = resolved["encoder"]["grid_search"]
    # another encoder keeps the fields its config shares with the base (latent_dim, dropout, activation)
    assert variants[0] == {"name": "mlp", "latent_dim": 20, "hidden_layers": 10, "activation": "leakyrelu",
                           "dropout": 0.1}
    assert variants[1] == {**base["encoder"], "name": "transformer_weight"}
    assert variants[2] == {**base["encoder"], "name": "transformer_weight", "compression_token": False}
    # fields only some variants have are axes where those variants differ
    assert grid_axes(resolved) == ["encoder.name", "encoder.compression_token", "loss.gamma", "augment.permute"]
    with pytest.raises(ValueError, match="encoder.compression_token"):  # the mlp has no compression token
        resolve_search_space({"encoder": {"grid_search": [{"name": "mlp", "compression_token": False}]}}, base)

    small = shrink_search_space(space)
    assert small["encoder"]["grid_search"] == space["encoder"]["grid_search"][:2]  # the first axis keeps two values
    assert small["loss"]["gamma"]["grid_search"] == [1.0] and small["augment"]["permute"]["grid_search"] == [True]
    assert resolve_search_space(None, base) is None and shrink_search_space(None) is None

    with pytest.raises(ValueError, match="encoder.latent"):
        resolve_search_space({"encoder": {"grid_search": [{"latent": 8}]}}, base)
    with pytest.raises(ValueError, match="encodr"):
        resolve_search_space({"encodr": {"grid_search": [{}]}}, base)


def test_learner_options_given_for_an_ablation_lie_over_the_folders_own():
    from weightspace.pipeline.experiment import Experiment

    folder = Experiment(name="t", preset="tetris_seed", learner="behaviour",
                        learner_options={"behaviour": {"n_queries": 64, "iterations": 2}, "2021": {"size": "svhn_hyp"}})
    ablation = folder.with_learner_options({"behaviour": {"beta": 0, "n_queries": 32}, "neuron_set": {"width": 8}})
    assert ablation.learner_options == {"behaviour": {"n_queries": 32, "iterations": 2, "beta": 0},
                                        "2021": {"size": "svhn_hyp"}, "neuron_set": {"width": 8}}
    assert ablation.spec.title == "behaviour AE (beta 0, 32 task queries)" and ablation.iterations == 2
    assert folder.learner_options["behaviour"] == {"n_queries": 64, "iterations": 2}  # the folder's are untouched


def _mnist_experiment():
    from weightspace.pipeline.experiment import Experiment

    return Experiment(name="mnist_seed", preset="mnist_seed", zenodo="21_mnist_seed")


def test_missing_zoo_offline_names_the_files_and_the_alternatives(tmp_path):
    from weightspace.pipeline.zoo_source import find_zoo

    with pytest.raises(FileNotFoundError) as info:
        find_zoo(_mnist_experiment(), tmp_path)
    message = str(info.value)
    assert "train-images-idx3-ubyte" in message and str(tmp_path / "mnist") in message  # the files to place
    assert "--download" in message
    assert str(tmp_path / "21_mnist_seed") in message and str(tmp_path / "mnist_seed") in message  # zoos to place
    assert "tetris_seed" in message and "digits_seed" in message  # presets that run without files
    assert list(tmp_path.iterdir()) == []  # nothing was started


def test_failed_download_names_the_alternatives(tmp_path, monkeypatch):
    import urllib.error

    from weightspace.io import download as io_download
    from weightspace.pipeline.zoo_source import find_zoo

    def offline(url, dest, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(io_download, "fetch_url", offline)
    with pytest.raises(FileNotFoundError, match="unreachable") as info:
        find_zoo(_mnist_experiment(), tmp_path, download=True)
    assert str(tmp_path / "21_mnist_seed") in str(info.value) and "tetris_seed" in str(info.value)


def test_a_selection_metric_no_checkpoint_reported_stops_the_run():
    """No silent fallback to the last checkpoint: a broken evaluation must not pass for a chosen embedding."""
    from types import SimpleNamespace

    from weightspace.pipeline.experiment import selected_checkpoint

    result = SimpleNamespace(checkpoint="last", metrics={"training_iteration": 2},
                             best_checkpoints=[("c1", {"training_iteration": 1, "loss_val": 0.5}),
                                               ("c2", {"training_iteration": 2, "loss_val": 0.4})])
    with pytest.raises(RuntimeError, match="probe_mean_val.*loss_val"):
        selected_checkpoint(result, "probe_mean_val")
    assert selected_checkpoint(result, "last") == ("last", 2, "last")
    scored = SimpleNamespace(**{**vars(result), "best_checkpoints": [("c1", {"training_iteration": 1, "probe_mean_val": 0.7}),
                                                                       ("c2", {"training_iteration": 2, "probe_mean_val": 0.6})]})
    assert selected_checkpoint(scored, "probe_mean_val") == ("c1", 1, "probe_mean_val")
