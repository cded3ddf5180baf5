"""Hostile and careless inputs are refused early: one line, exit code 2, nothing allocated or written.

Each test is a reproduction from the issue "Nothing planted runs..." (items 6, 7 and 8): memory bombs
in checkpoint files and spec files, inputs that gave tracebacks, and values that were accepted and
failed later (or were stored wrongly).
"""

import json
import resource
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.cli.test_cli_errors import _one_error_line
from weightspace import cli
from weightspace.errors import InputError
from weightspace.formats import checkpoints, import_checkpoints
from weightspace.zoo import generate as generate_module
from weightspace.zoo.spec import ZooSpec
from weightspace.zoo.store import Zoo

# a tiny linear model the checkpoint folders hold: 'fc.weight' (3, 4) and 'fc.bias' (3,)
GOOD = {"fc.weight": torch.ones(3, 4), "fc.bias": torch.zeros(3)}
# 1.6 KB on disk, 14 GB once copied: a view of one float
BOMB = {"fc.weight": torch.zeros(1, 1).expand(60000, 60000), "fc.bias": torch.zeros(1).expand(60000)}


def checkpoint_folder(folder, states: dict, **columns) -> None:
    """A checkpoint folder: one .pt file per entry of `states` (file name -> state dict) and checkpoints.csv."""
    folder.mkdir()
    for file, state in states.items():
        torch.save(state, folder / file)
    table = {"file": list(states), "model_id": list(range(len(states))), "epoch": [1] * len(states), **columns}
    pd.DataFrame(table).to_csv(folder / "checkpoints.csv", index=False)


def convert(src, out, *options: str, source: str = "checkpoints") -> int:
    return cli.main(["zoo", "convert", "--from", source, str(src), "--out", str(out), *options])


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KB


def spec_file(tmp_path, **changes) -> Path:
    """A smoke-sized tetris spec file with `changes` applied (arch_kwargs / task_options merged in)."""
    spec = {"name": "hostile", "task": "tetris", "architecture": "mlp", "seeds": 2, "epochs": 1,
            "arch_kwargs": {"in_dim": 16, "hidden": [5], "out_dim": 4}, "task_options": {"n_train": 20, "n_test": 20}}
    if changes.get("architecture", "mlp") != "mlp":
        spec["arch_kwargs"] = {}
    for key in ("arch_kwargs", "task_options"):
        spec[key].update(changes.pop(key, {}))
    spec.update(changes)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def unreachable(*args, **kwargs):
    raise AssertionError("the spec was not refused up front")


@pytest.fixture
def no_shard(monkeypatch):
    """Training a shard fails the test: the spec must be refused before."""
    monkeypatch.setattr(generate_module, "train_shard", unreachable)


@pytest.fixture
def no_training(monkeypatch, no_shard):
    """Listing the models or training a shard fails the test: the spec must be refused before either."""
    monkeypatch.setattr(ZooSpec, "models", unreachable)


def generate_refused(tmp_path, capsys, spec_path) -> str:
    """Run `zoo generate --spec` and return its one error line, asserting exit code 2 and nothing written."""
    out = tmp_path / "zoo"
    assert cli.main(["zoo", "generate", "--spec", str(spec_path), "--out", str(out)]) == 2
    line = _one_error_line(capsys)
    assert not out.exists() and not (tmp_path / ".zoo.partial").exists(), line
    return line


# ------------------------------------------------------------------ 6: memory bombs
def test_an_expanded_tensor_in_a_checkpoint_is_refused_before_it_is_copied(tmp_path, capsys):
    checkpoint_folder(tmp_path / "src", {"good.pt": GOOD, "bomb.pt": BOMB})
    assert (tmp_path / "src" / "bomb.pt").stat().st_size < 4096
    before = peak_rss_bytes()
    code = convert(tmp_path / "src", tmp_path / "zoo")
    line = _one_error_line(capsys)
    assert code == 2 and "'bomb.pt'" in line and "'fc.weight'" in line and "storage holds 1" in line
    assert peak_rss_bytes() - before < 500e6
    assert not (tmp_path / "zoo").exists()


def test_skip_bad_skips_an_expanded_tensor_and_keeps_the_others(tmp_path):
    checkpoint_folder(tmp_path / "src", {"good.pt": GOOD, "bomb.pt": BOMB})
    with pytest.warns(UserWarning, match="bomb.pt"):
        zoo = import_checkpoints(tmp_path / "src", skip_bad=True)
    assert zoo.num_samples == 1 and zoo.layout.num_params == 15


def test_an_expanded_tensor_in_a_raytune_folder_is_refused(tmp_path, capsys):
    model = tmp_path / "src" / "trial_0"
    (model / "checkpoint_1").mkdir(parents=True)
    (model / "result.json").write_text(json.dumps({"training_iteration": 1, "test_acc": 0.5}) + "\n")
    torch.save(BOMB, model / "checkpoint_1" / "checkpoints")
    before = peak_rss_bytes()
    code = convert(tmp_path / "src", tmp_path / "zoo", source="raytune")
    line = _one_error_line(capsys)
    assert code == 2 and "checkpoint_1" in line and "'fc.weight'" in line
    assert peak_rss_bytes() - before < 500e6 and not (tmp_path / "zoo").exists()


@pytest.mark.parametrize("changes, words", [
    ({"seeds": 10**9}, "1,000,000,000 models"),
    ({"epochs": 10**5, "seeds": 10**5}, "100,001 checkpoints"),  # the most epochs a spec may ask for
    ({"samples": 10**9, "sample": {"lr": {"log_uniform": [1e-4, 1e-2]}}}, "2,000,000,000 models"),
])
def test_a_spec_too_large_for_the_machine_is_refused_before_any_model_is_listed(tmp_path, capsys, no_training,
                                                                               changes, words):
    line = generate_refused(tmp_path, capsys, spec_file(tmp_path, **changes))
    assert words in line and "lower seeds" in line


def test_a_count_written_as_a_float_is_refused(tmp_path, capsys, no_training):
    line = generate_refused(tmp_path, capsys, spec_file(tmp_path, seeds=1e9))
    assert "seeds must be a count" in line


def test_a_model_too_large_to_be_a_zoo_model_is_refused(tmp_path, capsys, no_training):
    line = generate_refused(tmp_path, capsys, spec_file(tmp_path, arch_kwargs={"hidden": [30000, 30000]}))
    assert "900,660,004 parameters" in line and "smaller layers" in line


def test_workers_are_capped_at_the_shards_and_the_cpus(tmp_path, monkeypatch):
    spec = ZooSpec(name="w", task="tetris", architecture="tetris_mlp", seeds=4, epochs=0, shard_size=2,
                   task_options={"n_train": 8, "n_test": 8})
    used = {}

    def run_ray(spec, todo, task, work, fingerprint, bar, workers, ray_address):
        used["workers"], used["shards"] = workers, len(todo)
        raise KeyboardInterrupt  # stop before ray starts

    monkeypatch.setattr(generate_module, "_run_ray", run_ray)
    with pytest.raises(KeyboardInterrupt):
        generate_module.generate(spec, tmp_path / "zoo", workers=100000, progress=False)
    assert used["shards"] == 2 and 1 <= used["workers"] <= 2


# ------------------------------------------------------------------ 7: one line, not a traceback
@pytest.mark.parametrize("bad, words", [
    ({"fc.weight": torch.zeros(3, 4).to_sparse(), "fc.bias": torch.zeros(3)}, "sparse"),
    ({"fc.weight": torch.zeros(3, 4, device="meta"), "fc.bias": torch.zeros(3)}, "meta device"),
])
def test_sparse_and_meta_tensors_are_one_line_and_skipped_with_skip_bad(tmp_path, capsys, bad, words):
    checkpoint_folder(tmp_path / "src", {"good.pt": GOOD, "bad.pt": bad})
    code = convert(tmp_path / "src", tmp_path / "zoo")
    line = _one_error_line(capsys)
    assert code == 2 and "'bad.pt'" in line and words in line and not (tmp_path / "zoo").exists()
    assert convert(tmp_path / "src", tmp_path / "zoo", "--skip-bad") == 0
    assert Zoo.load(tmp_path / "zoo").num_samples == 1


def test_huge_arch_kwargs_are_refused_before_the_model_is_built(tmp_path, capsys):
    checkpoint_folder(tmp_path / "src", {"good.pt": GOOD})
    start = time.monotonic()
    code = convert(tmp_path / "src", tmp_path / "zoo", "--architecture", "mlp",
                   "--arch-kwargs", '{"hidden": [100000, 100000]}')
    line = _one_error_line(capsys)
    assert code == 2 and "10,002,200,004 parameters" in line and time.monotonic() - start < 10


@pytest.mark.parametrize("task, options, words", [
    ("tetris", {"n_train": 10**10}, "10,000,000,020 images"),
    ("synthetic", {"shape": [1, 10**5, 10**5], "n_train": 10, "n_test": 10}, "10,000,000,000 pixels"),
])
def test_a_task_too_large_for_the_machine_is_one_line(tmp_path, capsys, no_shard, task, options, words):
    # cnn_unterthiner pools globally: it takes images of any size
    path = spec_file(tmp_path, task=task, task_options=options, architecture="cnn_unterthiner")
    line = generate_refused(tmp_path, capsys, path)
    assert words in line and "n_train" in line


def test_a_spec_nested_200000_levels_deep_is_one_line(tmp_path, capsys, no_training):
    path = tmp_path / "spec.json"
    path.write_text('{"name": ' + "[" * 200_000 + "]" * 200_000 + "}")
    line = generate_refused(tmp_path, capsys, path)
    assert "too deeply" in line


def test_zoo_info_reads_an_architecture_given_as_a_string(tmp_path, capsys):
    checkpoint_folder(tmp_path / "src", {"good.pt": GOOD})
    assert convert(tmp_path / "src", tmp_path / "zoo") == 0
    info = json.loads((tmp_path / "zoo" / "zoo.json").read_text())
    info["architecture"] = "mlp"
    (tmp_path / "zoo" / "zoo.json").write_text(json.dumps(info))
    capsys.readouterr()
    assert cli.main(["zoo", "info", str(tmp_path / "zoo")]) == 0
    assert "architecture : mlp" in capsys.readouterr().out


# ------------------------------------------------------------------ 8: refused before, not after
def test_a_text_test_acc_is_refused_before_the_zoo_is_written(tmp_path, capsys):
    checkpoint_folder(tmp_path / "src", {"a.pt": GOOD, "b.pt": GOOD}, test_acc=["0.5", "high"])
    code = convert(tmp_path / "src", tmp_path / "zoo")
    line = _one_error_line(capsys)
    assert code == 2 and "rows [2]" in line and "test_acc" in line and "'high'" in line
    assert not (tmp_path / "zoo").exists()


def test_zoo_info_reads_a_zoo_whose_test_acc_is_text(tmp_path, capsys):
    samples = pd.DataFrame({"model_id": [0, 1], "epoch": [1, 1], "test_acc": ["0.5", "high"], "diverged": False})
    checkpoint_folder(tmp_path / "src", {"a.pt": GOOD})
    layout = import_checkpoints(tmp_path / "src").layout
    Zoo(np.zeros((2, layout.num_params), np.float32), samples, layout, {"name": "z"}).save(tmp_path / "zoo")
    capsys.readouterr()
    assert cli.main(["zoo", "info", str(tmp_path / "zoo")]) == 0
    assert "models       : 2" in capsys.readouterr().out


def test_an_epoch_of_1e30_is_refused_not_stored_as_a_negative_number(tmp_path, capsys):
    checkpoint_folder(tmp_path / "src", {"a.pt": GOOD})
    (tmp_path / "src" / "checkpoints.csv").write_text("file,model_id,epoch\na.pt,0,1e30\n")
    code = convert(tmp_path / "src", tmp_path / "zoo")
    line = _one_error_line(capsys)
    assert code == 2 and "epoch" in line and "1e+30" in line and not (tmp_path / "zoo").exists()


@pytest.mark.parametrize("changes, words", [
    ({"arch_kwargs": {"hidden": "abc"}}, "hidden='abc'"),
    ({"arch_kwargs": {"hidden": [-5]}}, "hidden=[-5]"),
    ({"arch_kwargs": {"in_dim": 7}}, "set arch_kwargs in_dim to 16"),
    ({"seeds": [2**70]}, "seeds must be whole numbers from 0 to 2**63-1"),
    ({"seeds": []}, "seeds is empty"),
])
def test_a_bad_spec_stops_generation_before_anything_is_written(tmp_path, capsys, no_shard, changes, words):
    line = generate_refused(tmp_path, capsys, spec_file(tmp_path, **changes))
    assert words in line


def test_a_negative_sample_seed_names_the_key_and_what_to_pass(tmp_path, capsys, no_training):
    path = spec_file(tmp_path, samples=2, sample_seed=-5, sample={"lr": {"log_uniform": [1e-4, 1e-2]}})
    line = generate_refused(tmp_path, capsys, path)
    assert "sample_seed must be a whole number from 0" in line and "-5" in line and "set sample_seed to" in line


def test_the_home_folder_is_refused_as_a_checkpoint_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    checkpoint_folder(tmp_path / "home", {"a.pt": GOOD})
    code = convert(tmp_path / "home", tmp_path / "zoo")
    line = _one_error_line(capsys)
    assert code == 2 and "is your home folder" in line and not (tmp_path / "zoo").exists()


def test_the_file_system_root_is_refused_as_a_checkpoint_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "_unlisted", unreachable)  # the walk of the whole file system
    with pytest.raises(InputError, match="root of the file system"):
        import_checkpoints("/", csv=tmp_path / "listing.csv")


def test_scanning_a_huge_folder_stops_with_a_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(checkpoints, "MAX_SCANNED", 5)
    checkpoint_folder(tmp_path / "src", {"a.pt": GOOD})
    for k in range(10):
        (tmp_path / "src" / f"other{k}.txt").write_text("")
    code = convert(tmp_path / "src", tmp_path / "zoo")
    line = _one_error_line(capsys)
    assert code == 2 and "more than 5 files and folders" in line


def test_the_ray_timeout_is_honoured_when_ray_was_imported_first():
    import ray  # noqa: F401 - `weightspace run` imports ray (through ray.tune) before it connects

    from weightspace.errors import ClusterError
    from weightspace.pipeline.cluster import connect_ray

    with socket.socket() as server:  # listens (the kernel completes connections), never answers
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        address = f"127.0.0.1:{server.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(ClusterError, match="within about 3 s"):
            connect_ray(address, timeout_s=3, log_to_driver=False)
    assert time.monotonic() - start < 20  # ray's own settings, read when it was imported, take about 45 s
