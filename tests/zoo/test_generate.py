"""Zoo generation: presets, resumption after kill -9, ray shards equal in-process shards."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from weightspace.cli import main
from weightspace.zoo.generate import ShardFailed, generate
from weightspace.zoo.presets import get_preset, list_presets
from weightspace.zoo.spec import ZooSpec
from weightspace.zoo.store import Zoo, ZooFormatError


def assert_same_zoo(a: Zoo, b: Zoo, atol=0.0):
    if atol == 0:
        np.testing.assert_array_equal(np.asarray(a.weights), np.asarray(b.weights))
        pd.testing.assert_frame_equal(a.samples, b.samples)
    else:
        np.testing.assert_allclose(np.asarray(a.weights), np.asarray(b.weights), atol=atol, rtol=0)
        pd.testing.assert_frame_equal(a.samples, b.samples, atol=atol, rtol=0)
    assert a.layout == b.layout


def test_smoke_preset_through_cli(tmp_path, capsys):
    assert main(["zoo", "generate", "--preset", "tetris_seed", "--smoke", "--out", str(tmp_path / "z")]) == 0
    out = capsys.readouterr().out
    assert "models       : 6" in out and "test_acc per epoch" in out
    zoo = Zoo.load(tmp_path / "z")
    assert zoo.epochs == [0, 1, 2] and zoo.layout.num_params == 100
    assert {"model_id", "epoch", "seed", "lr", "test_acc", "train_acc", "ggap", "diverged"} <= set(zoo.samples)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir()), "work folder left behind"


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_is_well_formed(name):
    spec = get_preset(name)
    models = spec.models()
    assert len({m["model_id"] for m in models}) == len(models)
    assert sum(len(s.models) for s in spec.shards()) == len(models)
    assert spec.notes
    smoke = get_preset(name, smoke=True)
    assert len(smoke.models()) <= 24 and smoke.epochs <= 2


def test_grid_preset_varies_hyperparameters(tmp_path):
    zoo = generate(get_preset("tetris_hyp", smoke=True), tmp_path / "z", progress=False)
    assert zoo.hyperparameters == ["activation", "dropout", "init"]
    assert zoo.samples.groupby("model_id")["activation"].nunique().max() == 1
    assert set(zoo.samples["activation"]) == {"tanh", "relu"}


def test_unknown_preset_and_grid_key():
    with pytest.raises(ValueError, match="tetris_seed"):
        get_preset("tetris_sed")
    with pytest.raises(ValueError, match="weight_decay"):
        ZooSpec("x", "tetris", "tetris_mlp", grid={"learning_rate": [1e-3]})
    assert main(["zoo", "generate", "--preset", "nope", "--out", "/tmp/never"]) == 2


def test_refuses_a_different_zoo_unless_overwrite(tmp_path):
    spec = get_preset("tetris_seed", smoke=True)
    generate(spec, tmp_path / "z", progress=False)
    again = generate(spec, tmp_path / "z", progress=False)  # same spec: nothing to do
    assert again.num_models == 6
    other = replace(spec, seeds=4)
    with pytest.raises(FileExistsError, match="overwrite"):
        generate(other, tmp_path / "z", progress=False)
    assert generate(other, tmp_path / "z", overwrite=True, progress=False).num_models == 4


def _fail_shard(monkeypatch, failing: str) -> None:
    """Make the shard `failing` crash (twice), as a broken node would; the other shards are committed."""
    from weightspace.zoo import generate as module

    train = module.train_shard

    def crashing(spec, shard, *args, **kwargs):
        if shard.shard_id == failing:
            raise RuntimeError("simulated crash")
        return train(spec, shard, *args, **kwargs)

    monkeypatch.setattr(module, "train_shard", crashing)


def _half_done(tmp_path, monkeypatch) -> ZooSpec:
    """A run of 6 models in shards of 3 whose second shard failed: ``.z.partial`` holds shard 0000-0000 only."""
    spec = replace(get_preset("tetris_seed", smoke=True), shard_size=3)
    with monkeypatch.context() as patch:
        _fail_shard(patch, "0000-0001")
        with pytest.raises(ShardFailed):
            generate(spec, tmp_path / "z", progress=False)
    assert [p.name for p in (tmp_path / ".z.partial").glob("shard-*.csv")] == ["shard-0000-0000.csv"]
    return spec


def test_resuming_with_another_shard_size_is_refused(tmp_path, monkeypatch):
    spec = _half_done(tmp_path, monkeypatch)
    with pytest.raises(FileExistsError, match="shard_size 3, now 2"):
        generate(replace(spec, shard_size=2), tmp_path / "z", progress=False)
    replanned = generate(replace(spec, shard_size=2), tmp_path / "z", overwrite=True, progress=False)
    assert len(replanned.samples) == 6 * 3 and not replanned.samples.duplicated(["model_id", "epoch"]).any()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["z"]


def test_assembling_refuses_shards_that_do_not_make_up_the_zoo(tmp_path, monkeypatch):
    spec = _half_done(tmp_path, monkeypatch)
    work = tmp_path / ".z.partial"
    for ext in ("npy", "csv"):  # shard 0000-0001 "done" with the rows of 0000-0000: models 0-2 twice, 3-5 missing
        shutil.copy(work / f"shard-0000-0000.{ext}", work / f"shard-0000-0001.{ext}")
    with pytest.raises(ZooFormatError, match=r"9 \(model, epoch\) pairs missing \(first \(3, 0\)\); 9 repeated"):
        generate(spec, tmp_path / "z", progress=False)
    assert not (tmp_path / "z").exists()


def test_stale_work_folders_are_cleaned_and_reported(tmp_path, capsys):
    spec, other = get_preset("tetris_seed", smoke=True), get_preset("tetris_hyp", smoke=True)
    work = tmp_path / ".z.partial"
    work.mkdir()  # a run of another preset that failed before training (written by older code: no format marker)
    (work / "spec.json").write_text(json.dumps({"fingerprint": other.fingerprint(), "spec": other.to_dict()}))
    assert generate(spec, tmp_path / "z", progress=False).num_models == 6
    assert f"removed '{work}'" in capsys.readouterr().err
    work.mkdir()  # a kill after the zoo was saved, before its work folder was removed
    (work / "spec.json").write_text(json.dumps({"fingerprint": spec.fingerprint(), "spec": spec.to_dict()}))
    generate(spec, tmp_path / "z", progress=False)
    assert f"removed '{work}'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["z"]
    with pytest.raises(FileNotFoundError):  # a run that fails before training leaves no work folder
        generate(get_preset("mnist_seed", smoke=True), tmp_path / "m", data_root=tmp_path / "data", progress=False)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


KILL_SPEC = ZooSpec(
    name="killme", task="tetris", architecture="tetris_mlp",
    task_options={"n_train": 128, "n_test": 128, "seed": 1},
    grid={"lr": [1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3, 7e-3, 8e-3]}, seeds=8, epochs=10, batch_size=16,
    checkpoint_epochs=(0, 5, 10), shard_size=8,
)


@pytest.mark.slow
def test_resume_after_kill_gives_identical_zoo(tmp_path):
    out = tmp_path / "killed"
    work = tmp_path / ".killed.partial"
    code = ("import json, sys; from weightspace.zoo.spec import ZooSpec; from weightspace.zoo.generate import generate; "
            "generate(ZooSpec.from_dict(json.loads(sys.argv[1])), sys.argv[2], progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(KILL_SPEC.to_dict()), str(out)])
    deadline = time.time() + 120
    while not list(work.glob("shard-*.csv")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(work.glob("shard-*.csv")))
    assert 0 < done < len(KILL_SPEC.shards()), f"kill landed at {done} shards; the test needs a partial run"
    assert not out.exists()
    resumed = generate(KILL_SPEC, out, progress=False)
    fresh = generate(KILL_SPEC, tmp_path / "fresh", progress=False)
    assert_same_zoo(Zoo.load(out), fresh)
    assert resumed.num_models == 64


@pytest.mark.slow
def test_ray_workers_match_in_process(tmp_path):
    ray = pytest.importorskip("ray")
    spec = get_preset("tetris_hyp", smoke=True)
    # ray workers train with one thread; so does the local run here, so the two compute the same
    # float operations in the same order and must agree bit for bit (a tolerance would hide a bug
    # and still fail on machines whose thread splits round differently)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = generate(spec, tmp_path / "local", progress=False)
    finally:
        torch.set_num_threads(threads)
    try:
        distributed = generate(spec, tmp_path / "ray", workers=2, progress=False)
    finally:
        ray.shutdown()
    assert_same_zoo(Zoo.load(tmp_path / "ray"), local)
    assert distributed.num_models == local.num_models
