"""The zoo store: identical round trips, clear errors on bad files, atomic writes."""

import json

import numpy as np
import pandas as pd
import pytest

from weightspace import WeightLayout, create_zoo_model
from weightspace.cli import main
from weightspace.zoo.store import Zoo, ZooFormatError


def test_save_load_identical(make_zoo, tmp_path):
    zoo = make_zoo()
    zoo.save(tmp_path / "z")
    back = Zoo.load(tmp_path / "z")
    assert isinstance(back.weights, np.memmap)
    np.testing.assert_array_equal(np.asarray(back.weights), zoo.weights)
    pd.testing.assert_frame_equal(back.samples, zoo.samples)
    assert back.layout == zoo.layout
    assert back.hyperparameters == ["activation", "lr"]
    assert back.num_models == 20 and back.epochs == [0, 1]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir()), "temporary files left behind"


def test_refuses_existing_without_overwrite(make_zoo, tmp_path):
    zoo = make_zoo()
    zoo.save(tmp_path / "z")
    with pytest.raises(FileExistsError, match="overwrite"):
        make_zoo(seed=1).save(tmp_path / "z")
    other = make_zoo(seed=1)
    other.save(tmp_path / "z", overwrite=True)
    np.testing.assert_array_equal(np.asarray(Zoo.load(tmp_path / "z").weights), other.weights)


def test_failed_write_leaves_no_zoo(make_zoo, tmp_path, monkeypatch):
    zoo = make_zoo()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    with pytest.raises(OSError):
        zoo.save(tmp_path / "z")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("missing", ["weights.npy", "samples.csv", "layout.json", "zoo.json"])
def test_missing_file_named(make_zoo, tmp_path, missing):
    make_zoo().save(tmp_path / "z")
    (tmp_path / "z" / missing).unlink()
    with pytest.raises(ZooFormatError, match=missing.replace(".", r"\.")):
        Zoo.load(tmp_path / "z")


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="weightspace zoo generate"):
        Zoo.load(tmp_path / "nothing")


def test_row_mismatch(make_zoo, tmp_path):
    make_zoo().save(tmp_path / "z")
    samples = pd.read_csv(tmp_path / "z" / "samples.csv")
    samples.iloc[:-1].to_csv(tmp_path / "z" / "samples.csv", index=False)
    with pytest.raises(ZooFormatError, match="40 rows but samples.csv has 39"):
        Zoo.load(tmp_path / "z")


def test_layout_size_mismatch(make_zoo, tmp_path):
    make_zoo().save(tmp_path / "z")
    WeightLayout.from_module(create_zoo_model("mlp", in_dim=16, hidden=(6,), out_dim=4)).save(tmp_path / "z" / "layout.json")
    with pytest.raises(ZooFormatError, match="layout.json describes"):
        Zoo.load(tmp_path / "z")


def test_wrong_dtype(make_zoo, tmp_path):
    make_zoo().save(tmp_path / "z")
    w = np.load(tmp_path / "z" / "weights.npy")
    np.save(tmp_path / "z" / "weights.npy", w.astype(np.float64))
    with pytest.raises(ZooFormatError, match="float64, expected float32"):
        Zoo.load(tmp_path / "z")


def test_truncated_weights(make_zoo, tmp_path):
    make_zoo().save(tmp_path / "z")
    path = tmp_path / "z" / "weights.npy"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ZooFormatError, match="weights.npy"):
        Zoo.load(tmp_path / "z")


def test_not_a_zoo_json(make_zoo, tmp_path):
    make_zoo().save(tmp_path / "z")
    (tmp_path / "z" / "zoo.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ZooFormatError, match="not a weightspace zoo"):
        Zoo.load(tmp_path / "z")


def test_duplicated_model_epoch_is_refused_at_load(make_zoo, tmp_path):
    make_zoo().save(tmp_path / "z")
    samples = pd.read_csv(tmp_path / "z" / "samples.csv")
    samples.loc[1, "epoch"] = samples.loc[0, "epoch"]  # model 0 now has epoch 0 twice
    samples.to_csv(tmp_path / "z" / "samples.csv", index=False)
    with pytest.raises(ZooFormatError, match=r"2 rows share 1 \(model_id, epoch\) keys, e.g. \(0, 0\)"):
        Zoo.load(tmp_path / "z")
    with pytest.raises(ZooFormatError, match="once"):
        Zoo(np.zeros((len(samples), 100), np.float32), samples, make_zoo().layout).save(tmp_path / "y")
    assert not (tmp_path / "y").exists()


@pytest.mark.parametrize("info, words", [([1, 2], "JSON list, not an object"),
                                         ({"column_dtypes": {"epoch": "nonsense"}}, "column_dtypes"),
                                         ({"column_dtypes": ["float64"]}, "column_dtypes must map"),
                                         ({"version": "one"}, "version 'one'")])
def test_malformed_zoo_json_is_a_format_error(make_zoo, tmp_path, info, words):
    make_zoo().save(tmp_path / "z")
    path = tmp_path / "z" / "zoo.json"
    if isinstance(info, dict):
        info = {**json.loads(path.read_text()), **info}
    path.write_text(json.dumps(info))
    with pytest.raises(ZooFormatError, match=words):
        Zoo.load(tmp_path / "z")


def test_in_memory_mismatch(make_zoo):
    zoo = make_zoo()
    with pytest.raises(ZooFormatError, match="rows"):
        Zoo(zoo.weights[:-1], zoo.samples, zoo.layout)


def test_info_command(make_zoo, tmp_path, capsys):
    make_zoo().save(tmp_path / "z")
    assert main(["zoo", "info", str(tmp_path / "z")]) == 0
    out = capsys.readouterr().out
    assert "models       : 20" in out and "test_acc per epoch" in out and "parameters   : 100" in out


def test_info_command_on_bad_path(tmp_path, capsys):
    assert main(["zoo", "info", str(tmp_path / "none")]) == 2
    assert "no zoo at" in capsys.readouterr().err
