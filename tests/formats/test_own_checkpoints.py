"""Your own checkpoints, first class: a folder a plain-PyTorch script wrote (run names as ids, a CNN with pooling,
its own inputs) converts into a zoo whose ids are kept as written, whose network runs without the user's code,
and whose B_probe is computed; a tampered zoo and bad input are refused with one line, nothing half-written."""

import copy
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from weightspace.cli import main
from weightspace.data.splits import ModelSplit
from weightspace.errors import InputError
from weightspace.formats import convert_checkpoints
from weightspace.zoo.store import Zoo, ZooFormatError

ROOT = Path(__file__).resolve().parents[2]

IDS = ("run002", "007", "run000", "run001", "NA", "run003")  # run names; "007" and "NA" stay text
EPOCHS = (0, 1, 2)


def user_cnn(width: int = 4) -> nn.Module:
    """The user's network, in plain PyTorch: 8x8 grey images, 10 classes."""
    return nn.Sequential(nn.Conv2d(1, width, 3), nn.ReLU(), nn.Conv2d(width, width, 3), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))


def write_runs(folder, ids=IDS) -> pd.DataFrame:
    """What a user's training script leaves: ``<id>_ep<epoch>.pt`` state dicts and a CSV of them."""
    folder.mkdir()
    rows = []
    for k, run in enumerate(ids):
        torch.manual_seed(k)
        net = user_cnn()
        for epoch in EPOCHS:
            with torch.no_grad():  # a stand-in for an epoch of training
                for p in net.parameters():
                    p.add_(0.1 * torch.randn(p.shape))
            file = f"{run}_ep{epoch}.pt"
            torch.save(net.state_dict(), folder / file)
            rows.append({"file": file, "model_id": run, "epoch": epoch, "test_acc": 0.1 * k + 0.01 * epoch,
                         "lr": 10.0 ** -(k % 3), "optimizer": "adam" if k % 2 else "sgd"})
    table = pd.DataFrame(rows)
    table.to_csv(folder / "checkpoints.csv", index=False)
    return table


def listing(root) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


USER_MODULE = """
from pathlib import Path

from torch import nn

Path({marker!r}).touch()  # importing this file leaves a mark


def build(width=4):
    return nn.Sequential(nn.Conv2d(1, width, 3), nn.ReLU(), nn.Conv2d(width, width, 3), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))
"""


def write_user_code(folder, name: str) -> Path:
    """The user's model code as a module `name` in `folder`; importing it creates ``<folder>/<name>.imported``."""
    marker = folder / f"{name}.imported"
    (folder / f"{name}.py").write_text(USER_MODULE.format(marker=str(marker)))
    return marker


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("weightspace: error: "), err
    return lines[0]


class Payload:
    """Unpickling it runs code: it creates the file `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


@pytest.fixture(scope="module")
def own_zoo(tmp_path_factory) -> Path:
    """The user's runs converted with their network (plain PyTorch, `user_cnn`) and their own inputs."""
    root = tmp_path_factory.mktemp("own")
    write_runs(root / "runs")
    np.save(root / "inputs.npy", np.random.default_rng(0).random((40, 1, 8, 8), dtype=np.float32))
    convert_checkpoints(root / "runs", root / "zoo", model=user_cnn, inputs=root / "inputs.npy")
    return root / "zoo"


def copy_zoo(zoo: Path, tmp_path) -> Path:
    shutil.copytree(zoo, tmp_path / "zoo")
    return tmp_path / "zoo"


# ------------------------------------------------------------------- ids
def test_text_ids_are_kept_as_written_and_split_by_model(tmp_path):
    write_runs(tmp_path / "runs")
    convert_checkpoints(tmp_path / "runs", tmp_path / "zoo")
    zoo = Zoo.load(tmp_path / "zoo")
    ids = zoo.samples["model_id"].tolist()
    assert ids == [m for m in sorted(IDS) for _ in EPOCHS]  # sorted as text, "007" and "NA" as written
    assert all(isinstance(m, str) for m in ids)
    split = ModelSplit.of_zoo(zoo, seed=3)
    assert set(split.assignment) == set(IDS)
    assert split == ModelSplit.of_zoo(Zoo.load(tmp_path / "zoo"), seed=3)  # deterministic
    names = split.column(zoo.samples["model_id"].to_numpy())
    assert all(len(set(names[zoo.samples["model_id"] == m])) == 1 for m in IDS)  # a model on one side


def test_whole_number_ids_stay_numbers(tmp_path):
    write_runs(tmp_path / "runs", ids=("3", "10", "2"))
    zoo = convert_checkpoints(tmp_path / "runs", tmp_path / "zoo")
    assert zoo.samples["model_id"].dtype == np.int64
    assert Zoo.load(tmp_path / "zoo").samples["model_id"].tolist() == [2] * 3 + [3] * 3 + [10] * 3


def test_an_empty_id_cell_is_refused_naming_its_row(tmp_path):
    table = write_runs(tmp_path / "runs")
    table.loc[4, "model_id"] = ""
    table.to_csv(tmp_path / "runs" / "checkpoints.csv", index=False)
    before = listing(tmp_path)
    with pytest.raises(InputError, match=r"rows \[5\] have no model_id; give each row the id of its model") as err:
        convert_checkpoints(tmp_path / "runs", tmp_path / "zoo")
    assert "\n" not in str(err.value)
    assert listing(tmp_path) == before


def test_predictions_keep_the_ids(tmp_path):
    from weightspace.downstream.baselines import BaselineConfig, run_baselines
    from weightspace.downstream.model_outputs import OutputsConfig

    write_runs(tmp_path / "runs")
    convert_checkpoints(tmp_path / "runs", tmp_path / "zoo")
    config = BaselineConfig(code=False, targets=("test_acc",), outputs=OutputsConfig(variants=()))
    run_baselines(Zoo.load(tmp_path / "zoo"), tmp_path / "out", config)
    predictions = pd.read_csv(tmp_path / "out" / "baseline_predictions.csv.gz", dtype={"model_id": str},
                              keep_default_na=False)
    assert set(predictions["model_id"]) == set(IDS)
    assert json.loads((tmp_path / "zoo" / "zoo.json").read_text())["column_dtypes"]["model_id"] in ("str", "object")


# ----------------------------------------------------- the user's network and inputs
def test_the_stored_program_gives_the_users_logits_for_the_same_weights(own_zoo):
    from torch.func import functional_call

    from weightspace.zoo.program import load_program

    zoo = Zoo.load(own_zoo)
    assert sorted(p.name for p in own_zoo.iterdir() if not p.name.startswith(".")) == [
        "inputs.npy", "layout.json", "network.pt2", "samples.csv", "weights.npy", "zoo.json"]
    assert zoo.info["architecture"]["program"]["model"].endswith(":user_cnn")
    assert zoo.info["task"]["input_shape"] == [1, 8, 8] and zoo.info["task"]["inputs"]["count"] == 40
    network = load_program((own_zoo / "network.pt2").read_bytes(), "network.pt2")
    x = torch.from_numpy(np.load(own_zoo / "inputs.npy")[:16])
    for row in (0, 7, len(zoo.samples) - 1):
        state = zoo.layout.devectorize(torch.from_numpy(np.array(zoo.weights[row])))
        mine = user_cnn().eval()
        mine.load_state_dict(state)
        with torch.no_grad():
            expected = mine(x)
            got = functional_call(network, {f"net.{k}": v for k, v in state.items()}, (x,))
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_b_probe_runs_the_stored_program_on_free_and_own_inputs(own_zoo):
    from weightspace.downstream.baselines import BaselineConfig, baseline_feature_sets
    from weightspace.downstream.model_outputs import Unavailable, zoo_model_outputs

    zoo = Zoo.load(own_zoo)
    features, _ = baseline_feature_sets(zoo, BaselineConfig(), names=["outputs_free", "outputs_task"])
    assert not any(isinstance(f, Unavailable) for f in features.values()), features
    free, task = zoo_model_outputs(zoo, "free", n_queries=8), zoo_model_outputs(zoo, "task", n_queries=8)
    assert free.shape == task.shape == (len(zoo.samples), 8 * 10)
    assert np.isfinite(free).all() and np.isfinite(task).all()
    x = torch.from_numpy(np.load(own_zoo / "inputs.npy"))
    queries = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:8]]  # draw_queries' draw
    mine = user_cnn().eval()
    mine.load_state_dict(zoo.layout.devectorize(torch.from_numpy(np.array(zoo.weights[5]))))
    with torch.no_grad():
        np.testing.assert_allclose(task[5], mine(queries).numpy().reshape(-1), rtol=0, atol=1e-5)


def test_function_space_targets_run_the_stored_program(own_zoo):
    from weightspace.representation.function_target import FunctionTarget, zoo_architecture

    zoo = Zoo.load(own_zoo)
    architecture = zoo_architecture(zoo)
    json.dumps(architecture)  # it is saved with the resolved config
    rows = torch.from_numpy(np.array(zoo.weights[:4]))
    for queries in ("uniform", "task"):
        target = FunctionTarget(zoo.layout, architecture, n_queries=6, queries=queries)
        out = target(rows)
        assert out.shape == (4, 6 * 10) and torch.isfinite(out).all()
        for again in (copy.deepcopy(target), pickle.loads(pickle.dumps(target))):  # learners copy and send them
            torch.testing.assert_close(again(rows + 0), out, rtol=0, atol=0)
    with pytest.raises(ValueError, match="runs with its own activation"):
        FunctionTarget(zoo.layout, architecture, activation="tanh")


def test_reading_the_zoo_imports_none_of_the_users_code(tmp_path, monkeypatch, capsys):
    from weightspace.downstream.model_outputs import zoo_model_outputs
    from weightspace.representation.function_target import FunctionTarget, zoo_architecture

    write_runs(tmp_path / "runs")
    marker = write_user_code(tmp_path, "user_net_read")
    monkeypatch.chdir(tmp_path)
    assert main(["zoo", "convert", "--from", "checkpoints", "runs", "--out", "zoo", "--model", "user_net_read:build",
                 "--task", "digits"]) == 0
    assert "stored program (user_net_read:build)" in capsys.readouterr().out
    assert marker.exists()  # imported at conversion, from the current directory
    assert json.loads((tmp_path / "zoo" / "zoo.json").read_text())["task"] == {"name": "digits",
                                                                               "input_shape": [1, 8, 8]}
    marker.unlink()
    (tmp_path / "user_net_read.py").unlink()  # the user's code is gone
    monkeypatch.delitem(sys.modules, "user_net_read")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    zoo = Zoo.load(tmp_path / "zoo")
    assert zoo_model_outputs(zoo, "free", n_queries=4).shape == zoo_model_outputs(zoo, "task", n_queries=4).shape == (
        18, 40)
    assert FunctionTarget(zoo.layout, zoo_architecture(zoo), n_queries=4, queries="task")(
        torch.from_numpy(np.array(zoo.weights[:2]))).shape == (2, 40)
    assert "user_net_read" not in sys.modules and not marker.exists()


@pytest.mark.long
@pytest.mark.slow
def test_weightspace_run_shows_b_probe_for_a_plain_pytorch_zoo(tmp_path, monkeypatch):
    """The issue's flow in two commands, the second in a fresh process without the user's code."""
    write_runs(tmp_path / "runs", ids=[f"run{k:03d}" for k in range(20)])
    write_user_code(tmp_path, "user_net_run")
    monkeypatch.chdir(tmp_path)
    assert main(["zoo", "convert", "--from", "checkpoints", "runs", "--out", "zoo", "--model", "user_net_run:build",
                 "--task", "digits"]) == 0
    (tmp_path / "user_net_run.py").unlink()
    (tmp_path / "elsewhere").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "modules")}
    command = [sys.executable, "-m", "weightspace.cli", "run", str(tmp_path / "zoo"), "--out", str(tmp_path / "res"),
               "--smoke", "--device", "cpu"]
    run = subprocess.run(command, cwd=tmp_path / "elsewhere", env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    scores = json.loads((tmp_path / "res" / "baseline_performance.json").read_text())
    for key in ("results_outputs_free", "results_outputs_task"):
        assert scores[key]["test_acc_test"] is not None, scores[key]
    assert "not available" not in (tmp_path / "res" / "report.md").read_text()
    predictions = pd.read_csv(tmp_path / "res" / "baseline_predictions.csv.gz", dtype={"model_id": str})
    assert set(predictions["model_id"]) <= {f"run{k:03d}" for k in range(20)}
    # what training added, with its interval, or plainly that it added nothing: on the console and in the report
    said = re.search(r"^Training added (to the random init on \d+ of \d+ targets|nothing).*$", run.stdout, re.M)
    assert said, run.stdout[-2000:]
    assert said.group(0) in (tmp_path / "res" / "report.md").read_text()
    gains = pd.read_csv(tmp_path / "res" / "training_gain.csv")
    assert "test_acc" in set(gains.target) and gains[["low", "high"]].notna().all().all()
    # the behaviour learner runs the user's network, stored as a program, in its loss
    command[command.index("--out") + 1] = str(tmp_path / "beh")
    behaviour = subprocess.run([*command, "--learner", "behaviour"], cwd=tmp_path / "elsewhere", env=env,
                               capture_output=True, text=True, timeout=600)
    assert behaviour.returncode == 0, behaviour.stderr[-3000:]
    assert "Training added" in behaviour.stdout and (tmp_path / "beh" / "training_gain.csv").is_file()


# ------------------------------------------------------------------ tampering
def rewrite_member(archive: Path, suffix: str, data: bytes) -> None:
    """Replace the member of a zip archive whose name ends with `suffix`."""
    old = zipfile.ZipFile(io.BytesIO(archive.read_bytes()))
    new = io.BytesIO()
    with zipfile.ZipFile(new, "w") as out:
        for info in old.infolist():
            out.writestr(info.filename, data if info.filename.endswith(suffix) else old.read(info))
    archive.write_bytes(new.getvalue())


def record_digest(zoo: Path, name: str) -> None:
    """Write the file's new SHA-256 into zoo.json, as one who tampers with both would."""
    info = json.loads((zoo / "zoo.json").read_text())
    entry = info["architecture"]["program"] if name == "network.pt2" else info["task"]["inputs"]
    entry["sha256"] = hashlib.sha256((zoo / name).read_bytes()).hexdigest()
    (zoo / "zoo.json").write_text(json.dumps(info))


def plant_whole_file(zoo: Path, name: str, marker: Path) -> str:
    (zoo / name).write_bytes(pickle.dumps(Payload(marker)))
    return "differs from the SHA-256 zoo.json records"


def plant_sample_inputs(zoo: Path, name: str, marker: Path) -> str:
    buffer = io.BytesIO()
    torch.save(Payload(marker), buffer)
    rewrite_member(zoo / name, "data/sample_inputs/model.pt", buffer.getvalue())
    record_digest(zoo, name)
    return "its sample inputs are not plain tensors"


def plant_pickled_weight(zoo: Path, name: str, marker: Path) -> str:
    archive = zipfile.ZipFile(zoo / name)
    config = next(n for n in archive.namelist() if n.endswith("model_weights_config.json"))
    entries = json.loads(archive.read(config))
    first = next(iter(entries["config"].values()))
    first["use_pickle"] = True
    buffer = io.BytesIO()
    torch.save(Payload(marker), buffer)
    rewrite_member(zoo / name, "model_weights_config.json", json.dumps(entries).encode())
    rewrite_member(zoo / name, "data/weights/" + first["path_name"], buffer.getvalue())
    record_digest(zoo, name)
    return "not as raw tensor data"


def plant_pickled_inputs(zoo: Path, name: str, marker: Path) -> str:
    np.save(zoo / name, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    record_digest(zoo, name)
    return "is not a .npy array of inputs"


@pytest.mark.parametrize("name, plant", [("network.pt2", plant_whole_file), ("network.pt2", plant_sample_inputs),
                                         ("network.pt2", plant_pickled_weight), ("inputs.npy", plant_whole_file),
                                         ("inputs.npy", plant_pickled_inputs)],
                         ids=["program", "program-sample-inputs", "program-weight", "inputs", "inputs-npy"])
def test_a_tampered_file_is_refused_in_one_line_and_nothing_in_it_runs(own_zoo, tmp_path, capsys, name, plant):
    zoo = copy_zoo(own_zoo, tmp_path)
    marker = tmp_path / "ran"
    message = plant(zoo, name, marker)
    with pytest.raises(ZooFormatError, match=f"'{zoo / name}'.*{message}"):
        Zoo.load(zoo)
    assert main(["zoo", "info", str(zoo)]) == 2
    line = one_error_line(capsys)
    assert name in line and message in line
    assert not marker.exists()


# ------------------------------------------------------------------ bad input
def empty_id_cell(folder: Path) -> None:
    table = pd.read_csv(folder / "runs" / "checkpoints.csv", dtype={"model_id": str}, keep_default_na=False)
    table.loc[7, "model_id"] = ""
    table.to_csv(folder / "runs" / "checkpoints.csv", index=False)


@pytest.mark.parametrize("options, message", [
    (["--model", "user_net_bad:build", "--model-kwargs", '{"width": 8}', "--task", "digits"],
     r"--model 'user_net_bad:build' with --model-kwargs \{'width': 8\}: the checkpoint '\w+_ep0\.pt' \(checkpoints"
     r"\.csv row 1\) does not load into its module \(strict\): Error\(s\) in loading state_dict .*size mismatch"),
    (["--inputs", "rgb.npy"], r"--inputs 'rgb\.npy' holds inputs of shape \(3, 8, 8\), but the networks' first layer "
                              r"'0' takes \(C=1, H, W\) per input"),
    (["--model", "user_net_bad:build", "--inputs", "tiny.npy"],
     r"--model 'user_net_bad:build': its module does not run on inputs of shape \(1, 2, 2\)"),
    (["--model", "user_net_bad:build"], "--model needs example inputs to check and export the network"),
    (["--model", "user_net_bad:nothing", "--task", "digits"], "--model 'user_net_bad:nothing': 'user_net_bad' has no "
                                                              "'nothing'"),
    (["--model", "no_such_module:build", "--task", "digits"], "'no_such_module' cannot be imported"),
    (["--task", "imagenet"], "--task 'imagenet' is not a built-in task"),
    (["--inputs", "labels.npy"], r"--inputs 'labels\.npy' holds an array of shape \(40,\)"),
    ([empty_id_cell], r"rows \[8\] have no model_id; give each row the id of its model"),
], ids=["model-does-not-load", "inputs-wrong-shape", "model-does-not-run", "model-without-inputs", "no-callable",
        "no-module", "unknown-task", "inputs-not-a-batch", "empty-id"])
def test_bad_input_is_one_line_and_nothing_is_written(tmp_path, monkeypatch, capsys, options, message):
    write_runs(tmp_path / "runs")
    write_user_code(tmp_path, "user_net_bad")
    np.save(tmp_path / "rgb.npy", np.zeros((4, 3, 8, 8), np.float32))
    np.save(tmp_path / "tiny.npy", np.zeros((4, 1, 2, 2), np.float32))
    np.save(tmp_path / "labels.npy", np.zeros(40, np.int64))
    for option in options:
        if callable(option):
            option(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "user_net_bad", raising=False)  # imported from this test's folder
    before = listing(tmp_path)
    argv = ["zoo", "convert", "--from", "checkpoints", "runs", "--out", "zoo"]
    assert main(argv + [o for o in options if not callable(o)]) == 2
    line = one_error_line(capsys)
    assert re.search(message, line), line
    made_by_import = ("__pycache__", "user_net_bad.imported")  # Python's cache, the user module's mark
    assert [p for p in listing(tmp_path) if not p.startswith(made_by_import)] == before


# ------------------------------------------------------------------ one-line notes
def test_a_feature_set_that_cannot_be_computed_says_why_and_how_in_one_line(tmp_path):
    from weightspace.cli.errors import notes_as_lines
    from weightspace.downstream.baselines import BaselineConfig, baseline_feature_sets
    from weightspace.downstream.model_outputs import Unavailable

    write_runs(tmp_path / "runs")
    (tmp_path / "runs" / "run000_ep1.pt").write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning) as caught:
        assert main(["zoo", "convert", "--from", "checkpoints", str(tmp_path / "runs"), "--out",
                     str(tmp_path / "zoo"), "--skip-bad"]) == 0
    with notes_as_lines():  # as the command line shows them
        shown = [warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line) for w in caught]
    assert all(note.startswith("weightspace: note: ") and note.count("\n") == 1 for note in shown), shown
    assert any("run000_ep1.pt" in note for note in shown)  # no line of weightspace's source under it
    assert any("columns ['lr'] vary between models but not between a model's checkpoints: taken as hyperparameters"
               in note for note in shown)
    features, _ = baseline_feature_sets(Zoo.load(tmp_path / "zoo"), BaselineConfig(),
                                        names=["outputs_free", "outputs_task"])
    for f in features.values():
        assert isinstance(f, Unavailable) and "\n" not in f.reason
        assert "convert the zoo with --model MODULE:CALLABLE (and --task NAME or --inputs FILE)" in f.reason


# ------------------------------------------------------------------ layouts without a CSV
def per_model_folders(runs: Path, table: pd.DataFrame) -> list[str]:
    """run000/epoch_3.pt, each with its metrics in run000/epoch_3.json."""
    for row in table.itertuples():
        (runs / row.model_id).mkdir(exist_ok=True)
        (runs / row.file).rename(runs / row.model_id / f"epoch_{row.epoch}.pt")
        metrics = {"test_acc": row.test_acc, "lr": row.lr, "optimizer": row.optimizer}
        (runs / row.model_id / f"epoch_{row.epoch}.json").write_text(json.dumps(metrics))
    return []


def lightning_checkpoints(runs: Path, table: pd.DataFrame) -> list[str]:
    """What PyTorch Lightning saves: epoch=3-step=120.ckpt, the network under a module prefix, the epoch inside."""
    for k, row in enumerate(table.itertuples()):
        state = torch.load(runs / row.file, weights_only=True)
        (runs / row.model_id).mkdir(exist_ok=True)
        name = f"epoch={row.epoch}-step={10 * row.epoch}.ckpt" if k % 2 else f"saved_{'abc'[row.epoch]}.ckpt"
        torch.save({"epoch": row.epoch, "global_step": 10 * row.epoch, "pytorch-lightning_version": "2.4.0",
                    "state_dict": {f"model.{key}": value for key, value in state.items()},
                    "optimizer_states": [{"state": {}, "param_groups": [{"lr": row.lr}]}],
                    "hyper_parameters": {"lr": row.lr}}, runs / row.model_id / name)
        (runs / row.file).unlink()
    return []


def file_name_pattern(runs: Path, table: pd.DataFrame) -> list[str]:
    """The user's run000_ep3.pt files as they are, without their CSV."""
    return ["--pattern", "{model_id}_ep{epoch}.pt"]


@pytest.mark.parametrize("relayout", [per_model_folders, lightning_checkpoints, file_name_pattern])
def test_the_layouts_people_save_convert_to_the_zoo_their_csv_gives(tmp_path, relayout):
    from weightspace.downstream.model_outputs import zoo_model_outputs

    table = write_runs(tmp_path / "runs")
    convert_checkpoints(tmp_path / "runs", tmp_path / "listed", model=user_cnn, task="digits")
    (tmp_path / "runs" / "checkpoints.csv").unlink()
    options = relayout(tmp_path / "runs", table)
    pattern = options[1] if options else None
    convert_checkpoints(tmp_path / "runs", tmp_path / "zoo", model=user_cnn, task="digits", pattern=pattern)
    listed, zoo = Zoo.load(tmp_path / "listed"), Zoo.load(tmp_path / "zoo")
    np.testing.assert_array_equal(np.asarray(zoo.weights), np.asarray(listed.weights))
    assert zoo.samples["model_id"].tolist() == listed.samples["model_id"].tolist()  # text, as written
    assert zoo.samples["epoch"].tolist() == listed.samples["epoch"].tolist()
    if relayout is per_model_folders:  # the metrics from the JSON beside each file
        pd.testing.assert_frame_equal(zoo.samples, listed.samples, check_like=True)
        assert zoo.hyperparameters == listed.hyperparameters == ["lr", "optimizer"]
    features = zoo_model_outputs(zoo, "task", n_queries=4)
    np.testing.assert_array_equal(features, zoo_model_outputs(listed, "task", n_queries=4))


def test_a_file_the_pattern_does_not_place_is_named(tmp_path, monkeypatch, capsys):
    write_runs(tmp_path / "runs")
    (tmp_path / "runs" / "checkpoints.csv").unlink()
    (tmp_path / "runs" / "notes_final.pt").write_bytes((tmp_path / "runs" / "run000_ep0.pt").read_bytes())
    before = listing(tmp_path)
    argv = ["zoo", "convert", "--from", "checkpoints", str(tmp_path / "runs"), "--out", str(tmp_path / "zoo")]
    assert main(argv + ["--pattern", "{model_id}_ep{epoch}.pt"]) == 2
    err = capsys.readouterr().err
    assert "'notes_final.pt' does not match --pattern" in err and "Traceback" not in err
    assert listing(tmp_path) == before
    assert main(argv) == 2  # flat files, no CSV, no pattern
    assert "is not in a model's folder (<model_id>/<file>); give a --pattern or a CSV" in one_error_line(capsys)
    assert main(argv + ["--pattern", "{model_id}.pt"]) == 2
    assert "--pattern '{model_id}.pt' must hold {model_id} and {epoch} once each" in one_error_line(capsys)
    assert main(argv + ["--pattern", "{model_id}_ep{epoch}.pt", "--skip-bad"]) == 0
    assert Zoo.load(tmp_path / "zoo").num_samples == 18


class ScaledCNN(nn.Module):
    """A user network with a constant of its own (a non-persistent buffer): not in the checkpoints, in the program."""

    def __init__(self):
        super().__init__()
        self.body = user_cnn()
        self.register_buffer("scale", torch.full((1,), 2.0), persistent=False)

    def forward(self, x):
        return self.body(x * self.scale)


def test_a_network_with_constants_of_its_own_runs_from_its_program(tmp_path):
    from weightspace.downstream.model_outputs import zoo_model_outputs

    (tmp_path / "runs").mkdir()
    rows = []
    for k in range(3):
        torch.manual_seed(k)
        torch.save(ScaledCNN().state_dict(), tmp_path / "runs" / f"m{k}.pt")
        rows.append({"file": f"m{k}.pt", "model_id": f"m{k}", "epoch": 0})
    pd.DataFrame(rows).to_csv(tmp_path / "runs" / "checkpoints.csv", index=False)
    np.save(tmp_path / "x.npy", np.random.default_rng(1).random((10, 1, 8, 8), dtype=np.float32))
    convert_checkpoints(tmp_path / "runs", tmp_path / "zoo", model=ScaledCNN, inputs=tmp_path / "x.npy")
    zoo = Zoo.load(tmp_path / "zoo")
    task = zoo_model_outputs(zoo, "task", n_queries=10)
    x = torch.from_numpy(np.load(tmp_path / "x.npy"))
    queries = x[torch.randperm(10, generator=torch.Generator().manual_seed(0))]
    mine = ScaledCNN().eval()
    mine.load_state_dict(torch.load(tmp_path / "runs" / "m2.pt", weights_only=True))
    with torch.no_grad():
        np.testing.assert_allclose(task[2], mine(queries).numpy().reshape(-1), rtol=0, atol=1e-5)
