"""Your own checkpoints, first class: a folder a plain-PyTorch script wrote (run names as ids, a CNN with pooling,
its own inputs) converts into a zoo whose ids are kept as written, whose network runs without the user's code,
and whose B_probe is computed; a tampered zoo and bad input are refused with one line, nothing half-written."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from weightspace.data.splits import ModelSplit
from weightspace.errors import InputError
from weightspace.formats import convert_checkpoints
from weightspace.zoo.store import Zoo

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
