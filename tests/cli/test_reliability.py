"""Reliability III (issue 38): each defect a hostile user found, reproduced, and refused in one line that names
the file, key, row or option, with nothing half-written and a non-zero exit (or, for a report cut short and two
runs on one run location, the behaviour the docs promise: docs/outputs_and_trust.md).
"""

import json
import os
import pickle
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.cli.test_cli_errors import _one_error_line
from weightspace import cli, create_zoo_model
from weightspace.io.atomic import write_json
from weightspace.pipeline import storage
from weightspace.pipeline.output_folder import mark_output_dir
from weightspace.pipeline.run_record import RECORD_FILE, Recorder
from weightspace.zoo import generate as generate_module
from weightspace.zoo.population import epoch_order, epoch_orders
from weightspace.zoo.spec import MAX_EPOCHS, MAX_MODELS, ZooSpec

DEEP = "[" * 100_000 + "]" * 100_000  # nested past Python's recursion limit
HUGE = "9" * 5_000  # more digits than Python converts to an int


class Payload:
    """Unpickling it creates the file `marker`: proof that planted code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def zoo_path(tmp_path_factory) -> Path:
    """A small saved zoo: the runs below are refused (or only report) before they would train on it."""
    from tests.conftest import _toy_zoo

    path = tmp_path_factory.mktemp("zoos") / "toy"
    _toy_zoo(20, (0, 1), 0, None, True, ()).save(path)
    return path


def run(zoo: Path, out: Path, *extra: str) -> int:
    return cli.main(["run", str(zoo), "--out", str(out), "--smoke", "--device", "cpu", *extra])


def started_run(out: Path, location: Path | None = None) -> Recorder:
    """An output folder whose ray.tune run (at `location`, default ``<out>/tune``) was started and recorded as
    `run_tuner` does: the run id in both places, ray's ``tuner.pkl`` digested, one trial checkpoint."""
    location = location or out / "tune"
    mark_output_dir(out, "toy_smoke", run_inside=location == out / "tune")
    recorder = Recorder.start(out / RECORD_FILE, str(location))
    storage.write_json(str(location / storage.CONFIG_FILE), {"run_id": recorder.run_id})
    (location / "tuner.pkl").write_bytes(b"ray's state")
    (location / "trial_0" / "checkpoint_000001").mkdir(parents=True)
    recorder.scan_local(location)
    return recorder


def spec_file(folder: Path, text: str | None = None, suffix: str = "json", **changes) -> Path:
    """A smoke-sized tetris spec file with `changes` (or the raw `text`)."""
    spec = {"name": "hostile", "task": "tetris", "architecture": "mlp", "seeds": 2, "epochs": 1,
            "arch_kwargs": {"in_dim": 16, "hidden": [5], "out_dim": 4}, "task_options": {"n_train": 20, "n_test": 20},
            **changes}
    path = folder / f"spec.{suffix}"
    path.write_text(text if text is not None else json.dumps(spec))
    return path


def generate_refused(tmp_path: Path, capsys, spec: Path) -> str:
    """`zoo generate --spec`: exit 2, one error line (returned), no zoo and no work folder."""
    out = tmp_path / "zoo"
    assert cli.main(["zoo", "generate", "--spec", str(spec), "--out", str(out)]) == 2
    line = _one_error_line(capsys)
    assert not out.exists() and not list(tmp_path.glob(".zoo*")), line
    return line


# ------------------------------------------------------------- 1. the last memory bomb
@pytest.fixture
def no_training(monkeypatch):
    """Listing the models or training a shard fails the test: the spec must be refused before either."""
    def unreachable(*args, **kwargs):
        raise AssertionError("the spec was not refused up front")

    monkeypatch.setattr(generate_module, "train_shard", unreachable)
    monkeypatch.setattr(ZooSpec, "models", unreachable)


@pytest.mark.parametrize("checkpoints", [[0, 1], None])
def test_1_a_billion_epochs_are_refused_from_the_spec_whatever_the_checkpoint_list(tmp_path, capsys, no_training,
                                                                                  checkpoints):
    line = generate_refused(tmp_path, capsys, spec_file(tmp_path, epochs=10**9, checkpoint_epochs=checkpoints))
    assert "spec.json" in line and "epochs" in line and f"{MAX_EPOCHS:,}" in line


def test_1_more_models_than_a_zoo_may_hold_are_refused_from_the_counts(tmp_path, capsys, no_training):
    line = generate_refused(tmp_path, capsys, spec_file(tmp_path, seeds=10**4, samples=10**4,
                                                        sample={"lr": {"log_uniform": [1e-4, 1e-2]}}))
    assert "100,000,000 models" in line and f"{MAX_MODELS:,}" in line and "lower seeds" in line


def test_1_data_orders_are_drawn_an_epoch_at_a_time_and_equal_the_stacked_ones():
    orders = epoch_orders(7, 50, 0.5)
    assert torch.equal(torch.stack([next(orders) for _ in range(4)]), epoch_order(7, 50, 0.5, 4))


# ----------------------------------------------------------- 2. Ctrl-C during the report
def finished_without_report(out: Path) -> None:
    """An output folder as a run interrupted while writing its report leaves it: results, no report.md."""
    mark_output_dir(out, "toy_smoke", run_inside=True)
    write_json(out / "results.json", {"selected_iteration": 1})


def test_2_a_rerun_of_a_finished_run_without_its_report_names_weightspace_report(zoo_path, tmp_path, capsys):
    out = tmp_path / "res"
    finished_without_report(out)
    before = snapshot(out)
    assert run(zoo_path, out) == 2
    line = _one_error_line(capsys)
    assert f"weightspace report {out}" in line and "--resume" in line
    assert snapshot(out) == before


def test_2_resume_writes_a_report_that_was_cut_short_and_nothing_else(zoo_path, tmp_path, capsys, monkeypatch):
    from weightspace.cli import experiment_run

    out = tmp_path / "res"
    finished_without_report(out)
    results = (out / "results.json").read_bytes()

    def interrupted(out, *, smoke):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment_run, "_report", interrupted)
    assert run(zoo_path, out, "--resume") == 130  # Ctrl-C again, while --resume writes the report
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"`weightspace report {out}`" in err and "results" in err
    monkeypatch.undo()
    assert run(zoo_path, out, "--resume") == 0
    assert (out / "report.md").is_file() and (out / "results.json").read_bytes() == results
    assert not (out / "baselines.csv").exists()  # only the report was written: nothing trained or probed again
    capsys.readouterr()
    assert run(zoo_path, out, "--resume") == 2  # finished, report included
    assert "has finished" in _one_error_line(capsys)
    os.utime(out / "report.md", ns=(0, 0))  # a report older than the results (an earlier step's) is not theirs
    assert run(zoo_path, out) == 2 and "weightspace report" in _one_error_line(capsys)


@pytest.mark.long
@pytest.mark.slow
def test_2_ctrl_c_during_a_runs_report_says_weightspace_report_and_resume_writes_it(tmp_path, capsys,
                                                                                     monkeypatch):
    from weightspace.cli import experiment_run
    from weightspace.zoo.generate import generate
    from weightspace.zoo.presets import get_preset

    zoo = tmp_path / "zoo_b"
    generate(replace(get_preset("tetris_seed", smoke=True), seeds=24), zoo, progress=False, device="cpu")
    out = tmp_path / "res"
    monkeypatch.setattr(experiment_run, "_report", lambda out, *, smoke: (_ for _ in ()).throw(KeyboardInterrupt))
    assert run(zoo, out) == 130
    err = capsys.readouterr().err
    assert f"`weightspace report {out}`" in err and "run again with --resume to continue" not in err
    assert (out / "results.json").is_file() and not (out / "report.md").exists()
    monkeypatch.undo()
    assert run(zoo, out, "--resume") == 0 and (out / "report.md").is_file()


# ------------------------------------------------------- 3. one run per run location
def test_3_a_second_run_on_a_storage_location_in_use_refuses_and_writes_nothing(zoo_path, tmp_path, capsys):
    fcntl = pytest.importorskip("fcntl")
    shared = tmp_path / "shared"
    shared.mkdir()
    fd = os.open(shared / ".res.lock", os.O_RDWR | os.O_CREAT)  # the first run's lock on <storage>/res
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"4242\n")
        assert run(zoo_path, tmp_path / "b" / "res", "--storage", str(shared)) == 3
    finally:
        os.close(fd)
    line = _one_error_line(capsys)
    assert "run location" in line and str(shared / "res") in line and "pid 4242" in line and "--storage" in line
    assert not (tmp_path / "b" / "res").exists() and sorted(p.name for p in shared.iterdir()) == [".res.lock"]


def test_3_the_run_location_lock_is_taken_on_a_local_or_file_uri_location_and_released(tmp_path):
    from weightspace.io.outputs import holds_lock

    for location in (str(tmp_path / "s" / "res"), f"file://{tmp_path / 's' / 'res'}"):
        with storage.lock(location) as locked:
            assert locked and holds_lock(tmp_path / "s" / "res")
        assert not holds_lock(tmp_path / "s" / "res") and not (tmp_path / "s" / ".res.lock").exists()
    with storage.lock("s3://bucket/runs/res") as locked:  # an object store has no lock: the record guards it
        assert not locked


def test_3_a_storage_uri_holding_another_runs_record_is_refused(zoo_path, tmp_path, capsys):
    location = tmp_path / "bucket" / "res"
    started_run(tmp_path / "first" / "res", location)  # the first run, started from another output folder
    before = snapshot(location)
    assert run(zoo_path, tmp_path / "second" / "res", "--storage", f"file://{tmp_path / 'bucket'}") == 3
    assert "not the ray.tune run this output folder started" in _one_error_line(capsys)
    assert snapshot(location) == before


# ------------------------------------------------------------ 4. a tampered learner.pt
@pytest.mark.parametrize("content", ["planted pickle", "random bytes", "another dict"])
def test_4_a_tampered_learner_pt_is_refused_in_one_line_on_resume(zoo_path, tmp_path, capsys, content):
    out = tmp_path / "res"
    started_run(out)
    checkpoint = out / "tune" / "trial_0" / "checkpoint_000001" / "learner.pt"
    marker = tmp_path / "PLANTED_CODE_RAN"
    if content == "planted pickle":
        checkpoint.write_bytes(pickle.dumps(Payload(marker)))
    elif content == "random bytes":
        checkpoint.write_bytes(os.urandom(256))
    else:
        torch.save({"fc.weight": torch.ones(2, 2)}, checkpoint)
    before = snapshot(out)
    assert run(zoo_path, out, "--resume") == 2
    line = _one_error_line(capsys)
    assert str(checkpoint) in line and "not a learner checkpoint weightspace wrote" in line
    assert "--overwrite" in line and "weights_only=False" not in line
    assert snapshot(out) == before and not marker.exists()


def test_4_a_checkpoint_the_learner_wrote_loads_and_one_of_another_learner_is_refused(tmp_path):
    from weightspace import WeightLayout
    from weightspace.pipeline.learners import create_learner
    from weightspace.representation.checkpoint import CheckpointError, read_checkpoint
    from weightspace.representation.learner import Learner

    layout = WeightLayout.from_module(create_zoo_model("tetris_mlp"))
    config = create_learner("neuron_set").shrunk().config
    path = Learner(config, layout, device="cpu").save(tmp_path / "learner.pt")
    read_checkpoint(storage.read_bytes(str(path)), name=str(path))
    Learner(config, layout, device="cpu").load(path)
    other = WeightLayout.from_module(create_zoo_model("mlp", in_dim=3, hidden=[2], out_dim=2))
    with pytest.raises(CheckpointError, match="learner.pt' is not a learner checkpoint.*does not fit this learner"):
        Learner(create_learner("2021").shrunk().config, other, device="cpu").load(path)


# ------------------------------------------- 5 and 6. weightspace's own JSON files, damaged
@pytest.mark.parametrize("damage, words", [(DEEP, "too deeply"), ('{"run_id": ' + HUGE + "}", "run_id holds an "
                                                                                               "integer of 5,000")])
def test_5_6_a_damaged_run_record_is_refused_naming_it(zoo_path, tmp_path, capsys, damage, words):
    out = tmp_path / "res"
    started_run(out)
    (out / RECORD_FILE).write_text(damage)
    before = snapshot(out)
    assert run(zoo_path, out, "--resume") == 2
    line = _one_error_line(capsys)
    assert RECORD_FILE in line and words in line and "sys.set_int_max_str_digits" not in line
    assert snapshot(out) == before


@pytest.mark.parametrize("damage, words", [(DEEP, "too deeply"), ('{"entries": [' + HUGE + "]}", "entries[0]")])
def test_5_6_a_damaged_manifest_is_refused_naming_it(zoo_path, tmp_path, capsys, damage, words):
    out = tmp_path / "res"
    finished_without_report(out)
    (out / ".weightspace-manifest.json").write_text(damage)
    before = snapshot(out)
    assert run(zoo_path, out, "--overwrite") == 2
    line = _one_error_line(capsys)
    assert ".weightspace-manifest.json" in line and words in line
    assert snapshot(out) == before


@pytest.mark.parametrize("damage, words", [(DEEP, "too deeply"), ('{"format": "weightspace-zoo", "version": '
                                                                  + HUGE + "}", "version holds an integer")])
def test_5_6_a_damaged_zoo_json_is_refused_naming_it(zoo_path, tmp_path, capsys, damage, words):
    zoo = tmp_path / "zoo"
    shutil.copytree(zoo_path, zoo)
    (zoo / "zoo.json").write_text(damage)
    assert cli.main(["zoo", "info", str(zoo)]) == 2
    line = _one_error_line(capsys)
    assert str(zoo / "zoo.json") in line and words in line
    assert run(zoo, tmp_path / "res") == 2
    assert str(zoo / "zoo.json") in _one_error_line(capsys) and not (tmp_path / "res").exists()


@pytest.mark.parametrize("damage, words", [(DEEP, "too deeply"), ('{"format": "weightspace-experiment", "n": '
                                                                  + HUGE + "}", "n holds an integer")])
def test_5_6_a_damaged_experiment_json_is_refused_naming_it(zoo_path, tmp_path, capsys, damage, words):
    out = tmp_path / "res"
    finished_without_report(out)
    (out / "experiment.json").write_text(damage)
    before = snapshot(out)
    assert run(zoo_path, out, "--overwrite") == 3
    line = _one_error_line(capsys)
    assert str(out / "experiment.json") in line and words in line
    assert snapshot(out) == before


def test_5_6_a_deep_or_huge_spec_file_is_refused_naming_file_and_key(tmp_path, capsys, no_training):
    assert "too deeply" in generate_refused(tmp_path, capsys, spec_file(tmp_path, text='{"grid": ' + DEEP + "}"))
    text = json.dumps({"name": "x", "task": "tetris", "architecture": "mlp", "epochs": 0}).replace("0}", HUGE + "}")
    line = generate_refused(tmp_path, capsys, spec_file(tmp_path, text=text))
    assert "spec.json" in line and "epochs holds an integer of 5,000 digits" in line
    pytest.importorskip("tomllib")
    toml = f'name = "x"\ntask = "tetris"\narchitecture = "mlp"\nepochs = {HUGE}\n'
    line = generate_refused(tmp_path, capsys, spec_file(tmp_path, text=toml, suffix="toml"))
    assert "spec.toml" in line and "line 4 (epochs)" in line and "5,000 digits" in line


def test_6_a_lr_of_400_digits_is_refused_as_out_of_range(tmp_path, capsys, no_training):
    line = generate_refused(tmp_path, capsys, spec_file(tmp_path, fixed={"lr": int("9" * 400)}))
    assert "fixed['lr']" in line and "must be a number" in line


# ------------------------------------------------------------------ 7. --seed -1
@pytest.mark.parametrize("command", [["baselines", "zoo", "--out", "b"], ["run", "zoo", "--out", "r"]])
def test_7_a_negative_seed_is_refused_naming_the_option(tmp_path, capsys, command):
    with pytest.raises(SystemExit) as info:
        cli.main([*command, "--seed", "-1"])
    last = capsys.readouterr().err.splitlines()[-1]
    assert info.value.code == 2 and "--seed" in last and "-1" in last and "Traceback" not in last


# --------------------------------------------------- 8 and 9. the CSV of a checkpoint folder
def checkpoint_folder(folder: Path, **changes) -> Path:
    """Two models at epochs 0 and 1, tetris_mlp weights; `changes` maps (row, column) -> the cell's text."""
    folder.mkdir()
    rows = []
    for m in range(2):
        for e in (0, 1):
            torch.save(create_zoo_model("tetris_mlp").state_dict(), folder / f"m{m}_e{e}.pt")
            rows.append({"file": f"m{m}_e{e}.pt", "model_id": m, "epoch": e, "test_acc": 0.5, "test_loss": 1.2})
    table = pd.DataFrame(rows).astype(object)
    for (row, column), text in changes.get("cells", {}).items():
        table.loc[row - 1, column] = text
    table.to_csv(folder / "checkpoints.csv", index=False)
    return folder


def convert_refused(tmp_path: Path, capsys, cells: dict) -> str:
    src = checkpoint_folder(tmp_path / "src", cells=cells)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value" warnings fail the test
        code = cli.main(["zoo", "convert", "--from", "checkpoints", str(src), "--out", str(tmp_path / "zoo")])
    assert code == 2
    line = _one_error_line(capsys)
    assert not (tmp_path / "zoo").exists() and not list(tmp_path.glob(".zoo*")), line
    return line


@pytest.mark.parametrize("text", ["inf", "-inf", "1e400"])
def test_8_an_infinite_test_acc_is_refused_naming_row_and_column(tmp_path, capsys, text):
    line = convert_refused(tmp_path, capsys, {(3, "test_acc"): text})
    assert "checkpoints.csv" in line and "rows [3]" in line and "test_acc" in line and "finite" in line


def test_5_a_damaged_weightspace_json_of_a_checkpoints_export_is_refused_naming_it(tmp_path, capsys):
    src = checkpoint_folder(tmp_path / "src")
    (src / "weightspace.json").write_text(DEEP)
    assert cli.main(["zoo", "convert", "--from", "checkpoints", str(src), "--out", str(tmp_path / "zoo")]) == 2
    line = _one_error_line(capsys)
    assert str(src / "weightspace.json") in line and "too deeply" in line and not (tmp_path / "zoo").exists()


def test_8_an_infinite_loss_of_a_diverged_model_is_kept(tmp_path):
    from weightspace.formats import import_checkpoints

    zoo = import_checkpoints(checkpoint_folder(tmp_path / "src", cells={(2, "test_loss"): "inf"}))
    assert zoo.samples["test_loss"].tolist().count(float("inf")) == 1


def test_9_a_negative_epoch_is_refused_naming_the_row(tmp_path, capsys):
    line = convert_refused(tmp_path, capsys, {(2, "epoch"): "-1"})
    assert "checkpoints.csv" in line and "rows [2]" in line and "negative epochs" in line


# ------------------------------------------------------------ links are never outputs
def test_run_out_refuses_a_link_to_an_experiment_folder_like_the_other_commands(zoo_path, tmp_path, capsys):
    real = tmp_path / "real"
    finished_without_report(real)
    write_json(real / "baseline_performance.json", {})
    before = snapshot(real)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert run(zoo_path, link, "--overwrite") == 3
    line = _one_error_line(capsys)
    assert f"'{link}'" in line and "is a link" in line
    for command in (["baselines", str(zoo_path), "--out", str(link), "--overwrite"], ["report", str(link)],
                    ["zoo", "generate", "--preset", "tetris_seed", "--smoke", "--out", str(link), "--overwrite"]):
        assert cli.main(command) == 3, command
        assert str(link) in _one_error_line(capsys)
    assert snapshot(real) == before and link.is_symlink()
