"""Checkpoint folders: they convert into the zoo the Python API gives, bitwise; a bad file is named and refused
(or skipped when asked); a file never runs code; nothing is written on refusal; export -> convert is bitwise."""

import pickle
from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from weightspace import WeightLayout, create_zoo_model
from weightspace.cli import main
from weightspace.errors import InputError, OutputError
from weightspace.formats import convert_checkpoints, export_checkpoints, import_checkpoints
from weightspace.formats.checkpoints import layout_from_state, read_state
from weightspace.zoo.store import Zoo

# name -> (network builder, one example's input shape for WeightLayout.from_module)
ARCHITECTURES = {
    "mlp": (lambda: nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)), (4,)),
    "cnn": (lambda: nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)), (1, 6, 6)),
}
MODEL_IDS = (7, 2, 11)  # not in order: the zoo sorts by model_id, then epoch
EPOCHS = (0, 1)


def model(arch: str, seed: int) -> nn.Module:
    """A network of `arch` whose parameters are drawn from a generator seeded with `seed`."""
    net = ARCHITECTURES[arch][0]()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return net


def save_checkpoint(state: dict, path) -> None:
    """Save `state` the way the file's suffix and name ask: plain, wrapped, or as safetensors."""
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    elif path.stem.endswith("wrapped"):
        torch.save({"state_dict": state, "epoch": 3}, path)
    elif path.suffix == ".pth":
        torch.save({"model": state, "optimizer_step": 12}, path)
    else:
        torch.save(state, path)


def write_folder(folder, arch: str) -> tuple[np.ndarray, pd.DataFrame, WeightLayout]:
    """A checkpoint folder of `arch` (every file kind), and the weights, samples and layout it should give."""
    folder.mkdir()
    suffixes = [".pt", ".pth", ".safetensors", "_wrapped.pt"]
    rows, expected = [], {}
    for k, (m, e) in enumerate((m, e) for m in MODEL_IDS for e in EPOCHS):
        net = model(arch, seed=100 * m + e)
        file = f"m{m}/e{e}{suffixes[k % len(suffixes)]}" if k % 2 else f"m{m}_e{e}{suffixes[k % len(suffixes)]}"
        (folder / file).parent.mkdir(exist_ok=True)
        save_checkpoint(net.state_dict(), folder / file)
        rows.append({"file": file, "model_id": m, "epoch": e, "test_acc": 0.1 + 0.2 * k / 3, "lr": 10.0 ** -m,
                     "activation": "tanh" if m % 2 else "relu"})
        layout = WeightLayout.from_module(net, input_shape=ARCHITECTURES[arch][1])
        expected[m, e] = layout.vectorize(net.state_dict()).detach().numpy()
    pd.DataFrame(rows[::-1]).to_csv(folder / "checkpoints.csv", index=False)
    samples = pd.DataFrame(sorted(rows, key=lambda r: (r["model_id"], r["epoch"]))).drop(columns="file")
    samples["diverged"] = False
    return np.stack([expected[k] for k in sorted(expected)]), samples, layout


def assert_bitwise(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_array_equal(np.asarray(a, np.float32).view(np.uint32), np.asarray(b, np.float32).view(np.uint32))


def listing(root) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


# ------------------------------------------------------------- conversion
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_folder_converts_into_the_zoo_of_the_python_api(tmp_path, arch):
    weights, samples, layout = write_folder(tmp_path / "ckpts", arch)
    convert_checkpoints(tmp_path / "ckpts", tmp_path / "zoo")
    zoo = Zoo.load(tmp_path / "zoo")
    assert zoo.layout == layout
    assert_bitwise(zoo.weights, weights)
    pd.testing.assert_frame_equal(zoo.samples, samples, check_dtype=False)
    assert zoo.samples["model_id"].dtype == np.int64 and zoo.samples["epoch"].dtype == np.int64
    assert zoo.hyperparameters == ["lr", "activation"] and zoo.metrics == ["test_acc"]  # lr: one per model


def test_a_registered_architecture_gives_the_layout(tmp_path):
    (tmp_path / "ckpts").mkdir()
    kwargs = {"in_dim": 4, "hidden": [6], "out_dim": 3}
    nets = [create_zoo_model("mlp", **kwargs) for _ in range(2)]
    for m, net in enumerate(nets):
        torch.save(net.state_dict(), tmp_path / "ckpts" / f"{m}.pt")
    pd.DataFrame({"file": ["0.pt", "1.pt"], "model_id": [0, 1], "epoch": [5, 5]}).to_csv(
        tmp_path / "ckpts" / "checkpoints.csv", index=False)
    zoo = import_checkpoints(tmp_path / "ckpts", architecture="mlp", arch_kwargs=kwargs)
    layout = WeightLayout.from_module(create_zoo_model("mlp", **kwargs))
    assert zoo.layout == layout and zoo.layout.layers[1].legacy_index == 2
    assert_bitwise(zoo.weights, np.stack([layout.vectorize(n.state_dict()).detach().numpy() for n in nets]))
    assert zoo.info["architecture"] == {"name": "mlp", "kwargs": kwargs}
    wrong_width = r"'0\.pt' \(checkpoints\.csv row 1\).*'fc1\.weight' of shape \(6, 4\) instead of \(8, 4\)"
    with pytest.raises(InputError, match=wrong_width):
        import_checkpoints(tmp_path / "ckpts", architecture="mlp", arch_kwargs=dict(kwargs, hidden=[8]))


def test_layers_are_read_from_names_and_shapes(tmp_path):
    state = {"fc10.weight": torch.zeros(2, 3), "fc2.weight": torch.zeros(3, 4), "fc2.bias": torch.zeros(3)}
    with pytest.raises(InputError, match="'fc2' takes 4 inputs but 'fc10' before it has 2 outputs"):
        layout_from_state(state)
    layout = layout_from_state(dict(reversed(state.items())))
    assert [(s.name, s.has_bias) for s in layout.layers] == [("fc2", True), ("fc10", False)]
    save_file(state, tmp_path / "unordered.safetensors")  # the file keeps no order: natural name order
    assert list(read_state(tmp_path / "unordered.safetensors")) == ["fc2.weight", "fc2.bias", "fc10.weight"]
    with pytest.raises(InputError, match="'bn.running_mean' is not a '<layer>.weight'"):
        layout_from_state({"bn.weight": torch.ones(3), "bn.running_mean": torch.zeros(3)})


def test_an_exported_file_keeps_its_layer_order(tmp_path):
    net = nn.Sequential(OrderedDict(encoder=nn.Linear(4, 5), act=nn.Tanh(), decoder=nn.Linear(5, 3)))
    layout = WeightLayout.from_module(net)
    weights = layout.vectorize(net.state_dict()).detach().numpy()[None]
    export_checkpoints(Zoo(weights, pd.DataFrame({"model_id": [0], "epoch": [0]}), layout), tmp_path / "export")
    (tmp_path / "export" / "weightspace.json").unlink()  # the layout now comes from the file alone
    back = import_checkpoints(tmp_path / "export")
    assert back.layout == layout
    assert_bitwise(back.weights, weights)


# --------------------------------------------------------------- bad files
def other_architecture(folder):
    torch.save(model("cnn", 0).state_dict(), folder / "other.pt")
    return "other.pt", r"does not match the layout of .*'0\.weight' of shape \(3, 1, 3, 3\) instead of \(5, 4\)"


def truncated(folder):
    torch.save(model("mlp", 0).state_dict(), folder / "cut.pt")
    data = (folder / "cut.pt").read_bytes()
    (folder / "cut.pt").write_bytes(data[: len(data) // 2])
    return "cut.pt", "not a readable PyTorch checkpoint"


def nested(folder):
    torch.save({"encoder": model("mlp", 0).state_dict()}, folder / "nested.pt")
    return "nested.pt", r"a dict whose entries 'encoder' \(OrderedDict\) are not tensors"


def whole_module(folder):
    torch.save(model("mlp", 0), folder / "module.pt")
    return "module.pt", r"torch\.save\(model\.state_dict\(\), path\)"


@pytest.mark.parametrize("make_bad", [other_architecture, truncated, nested, whole_module])
def test_a_bad_file_is_named_and_refused_unless_skipped(tmp_path, make_bad):
    weights, samples, _ = write_folder(tmp_path / "ckpts", "mlp")
    file, reason = make_bad(tmp_path / "ckpts")
    table = pd.read_csv(tmp_path / "ckpts" / "checkpoints.csv")
    row = {"file": file, "model_id": 99, "epoch": 0, "test_acc": 0.5, "lr": 0.1, "activation": "relu"}
    pd.concat([table, pd.DataFrame([row])]).to_csv(tmp_path / "ckpts" / "checkpoints.csv", index=False)
    before = listing(tmp_path)
    with pytest.raises(InputError, match=rf"'{file}' \(checkpoints\.csv row {len(table) + 1}\): .*{reason}"):
        convert_checkpoints(tmp_path / "ckpts", tmp_path / "zoo")
    assert listing(tmp_path) == before
    with pytest.warns(UserWarning, match=rf"skipping 1 checkpoint files:\s+- '{file}'"):
        zoo = convert_checkpoints(tmp_path / "ckpts", tmp_path / "zoo", skip_bad=True)
    assert_bitwise(zoo.weights, weights)
    pd.testing.assert_frame_equal(zoo.samples, samples, check_dtype=False)


def test_a_file_not_in_the_csv_is_named_and_refused_unless_skipped(tmp_path):
    weights, _, _ = write_folder(tmp_path / "ckpts", "mlp")
    torch.save(model("mlp", 1).state_dict(), tmp_path / "ckpts" / "m7" / "forgotten.pth")
    with pytest.raises(InputError, match="'m7/forgotten.pth' is in the folder but not in checkpoints.csv"):
        import_checkpoints(tmp_path / "ckpts")
    with pytest.warns(UserWarning, match="m7/forgotten.pth"):
        assert_bitwise(import_checkpoints(tmp_path / "ckpts", skip_bad=True).weights, weights)


class Payload:
    """Unpickling it runs code: it creates the file `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


@pytest.mark.parametrize("write", [torch.save, lambda obj, path: path.write_bytes(pickle.dumps(obj, protocol=2))],
                         ids=["torch.save", "pickle"])
def test_a_malicious_pickle_is_refused_and_runs_nothing(tmp_path, write):
    pickle.loads(pickle.dumps(Payload(tmp_path / "proof")))
    assert (tmp_path / "proof").exists(), "the payload must run when unpickled plainly, or this test proves nothing"
    weights, samples, _ = write_folder(tmp_path / "ckpts", "mlp")
    write(Payload(tmp_path / "marker"), tmp_path / "ckpts" / "m7_e0.pt")  # replaces a listed checkpoint
    before = listing(tmp_path)
    refused = r"'m7_e0\.pt' \(checkpoints\.csv row \d\): .*the global (builtins\.)?exec\).*nothing in it was run"
    with pytest.raises(InputError, match=refused):
        convert_checkpoints(tmp_path / "ckpts", tmp_path / "zoo")
    assert not (tmp_path / "marker").exists()
    assert listing(tmp_path) == before


# ------------------------------------------------------------------ the CSV
def missing_file(table):
    table.loc[3, "file"] = "gone.pt"
    return r"rows \[4\] name files that are not in .*'gone\.pt'"


def repeated_checkpoint(table):
    table.loc[4, ["model_id", "epoch"]] = table.loc[1, ["model_id", "epoch"]].to_numpy()
    return r"rows \[2, 5\] repeat a model_id and epoch"


def repeated_file(table):
    table.loc[5, "file"] = table.loc[0, "file"]
    return r"rows \[1, 6\] repeat a file"


def empty_model_id(table):
    table["model_id"] = table["model_id"].astype(object)
    table.loc[2, "model_id"] = None
    return r"rows \[3\] have no model_id; give each row the id of its model"


def fractional_epoch(table):
    table["epoch"] = table["epoch"].astype(float)
    table.loc[0, "epoch"] = 1.5
    return r"rows \[1\] hold epoch values that are not whole numbers \(\[1\.5\]\)"


@pytest.mark.parametrize("break_table", [missing_file, repeated_checkpoint, repeated_file, empty_model_id, fractional_epoch])
def test_a_bad_csv_row_is_named_and_nothing_is_written(tmp_path, break_table):
    write_folder(tmp_path / "ckpts", "mlp")
    table = pd.read_csv(tmp_path / "ckpts" / "checkpoints.csv")
    message = break_table(table)
    table.to_csv(tmp_path / "ckpts" / "checkpoints.csv", index=False)
    before = listing(tmp_path)
    with pytest.raises(InputError, match=message):
        convert_checkpoints(tmp_path / "ckpts", tmp_path / "zoo", skip_bad=True)
    assert listing(tmp_path) == before


# ------------------------------------------------------------------- export
def awkward_zoo() -> Zoo:
    """Rows out of order, a non-finite row, floats that print long, text, a 2021 layout."""
    layout = WeightLayout.from_module(create_zoo_model("mlp", in_dim=4, hidden=[5], out_dim=3))
    g = torch.Generator().manual_seed(0)
    weights = torch.randn(6, layout.num_params, generator=g).numpy()
    weights[4, 3] = np.nan
    samples = pd.DataFrame({"model_id": [3, 3, 3, 1, 1, 1], "epoch": [2, 0, 1, 0, 2, 1],
                            "test_acc": [0.1 + 0.2, 1 / 3, 2 / 3, 1e-17, 0.5, np.nan],
                            "seed": [3, 3, 3, 1, 1, 1], "lr": [0.1] * 3 + [0.01] * 3,
                            "activation": ["relu"] * 3 + ["tanh"] * 3,
                            "diverged": [False, False, False, False, True, False]})
    info = {"name": "awkward", "hyperparameters": ["lr", "activation"], "metrics": ["test_acc"],
            "architecture": {"name": "mlp", "kwargs": {"in_dim": 4, "hidden": [5], "out_dim": 3}}, "task": {"name": "toy"}}
    return Zoo(weights, samples, layout, info)


def test_export_then_convert_is_bitwise(tmp_path):
    awkward_zoo().save(tmp_path / "zoo")
    original = Zoo.load(tmp_path / "zoo")
    export_checkpoints(original, tmp_path / "export")
    with safe_open(tmp_path / "export" / "model00001_epoch002.safetensors", framework="pt") as f:
        assert {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()} == {
            "fc1.weight": (5, 4), "fc1.bias": (5,), "fc2.weight": (3, 5), "fc2.bias": (3,)}
    table = pd.read_csv(tmp_path / "export" / "checkpoints.csv")
    assert list(table.columns) == ["file", *original.samples.columns]
    assert table["file"].tolist()[:2] == ["model00001_epoch000.safetensors", "model00001_epoch001.safetensors"]
    convert_checkpoints(tmp_path / "export", tmp_path / "back")
    back = Zoo.load(tmp_path / "back")
    order = np.lexsort((original.samples["epoch"], original.samples["model_id"]))
    assert_bitwise(back.weights, np.asarray(original.weights)[order])
    pd.testing.assert_frame_equal(back.samples, original.samples.iloc[order].reset_index(drop=True))
    assert back.layout == original.layout
    assert (back.name, back.hyperparameters, back.metrics) == (original.name, original.hyperparameters, original.metrics)
    table.drop(columns="diverged").to_csv(tmp_path / "export" / "checkpoints.csv", index=False)
    computed = import_checkpoints(tmp_path / "export").samples["diverged"]  # from the weights alone
    assert computed.tolist() == [False, False, True, False, False, False]


def test_export_replaces_only_its_own_folder(tmp_path):
    zoo = awkward_zoo()
    export_checkpoints(zoo, tmp_path / "export")
    with pytest.raises(FileExistsError):
        export_checkpoints(zoo, tmp_path / "export")
    export_checkpoints(zoo, tmp_path / "export", overwrite=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(OutputError, match="notes.txt"):
        export_checkpoints(zoo, tmp_path / "mine", overwrite=True)
    assert listing(tmp_path / "mine") == ["notes.txt"]
    zoo.samples["model_id"] = zoo.samples["model_id"].map({3: 3.5, 1: 1.5})
    with pytest.raises(InputError, match=r"\['model_id'\] must be whole numbers \(model_id: or text\)"):
        export_checkpoints(zoo, tmp_path / "float_ids")
    assert not (tmp_path / "float_ids").exists()


def test_text_ids_export_and_convert_back_as_written(tmp_path):
    zoo = awkward_zoo()
    zoo.samples["model_id"] = zoo.samples["model_id"].map({3: "007", 1: "run/1"})
    export_checkpoints(zoo, tmp_path / "export")
    assert sorted(p.name for p in (tmp_path / "export").glob("*.safetensors"))[:2] == [
        "007_epoch000.safetensors", "007_epoch001.safetensors"]
    back = import_checkpoints(tmp_path / "export")
    assert back.samples["model_id"].tolist() == ["007"] * 3 + ["run/1"] * 3  # text, sorted as text


# ---------------------------------------------------------------------- CLI
def test_cli_converts_refuses_skips_and_exports(tmp_path, capsys):
    weights, _, _ = write_folder(tmp_path / "ckpts", "mlp")
    other_architecture(tmp_path / "ckpts")
    convert = ["zoo", "convert", "--from", "checkpoints", str(tmp_path / "ckpts"), "--out", str(tmp_path / "zoo")]
    assert main(convert) == 2
    assert "'other.pt' is in the folder but not in checkpoints.csv" in capsys.readouterr().err
    assert not (tmp_path / "zoo").exists()
    with pytest.warns(UserWarning, match="other.pt"):
        assert main(convert + ["--skip-bad", "--hyperparameters", "lr,activation"]) == 0
    assert Zoo.load(tmp_path / "zoo").hyperparameters == ["lr", "activation"]
    assert main(["zoo", "export", "--to", "checkpoints", str(tmp_path / "zoo"), "--out", str(tmp_path / "export")]) == 0
    assert main(["zoo", "convert", "--from", "checkpoints", str(tmp_path / "export"), "--out", str(tmp_path / "back")]) == 0
    assert_bitwise(Zoo.load(tmp_path / "back").weights, weights)
    assert main(["zoo", "convert", "--from", "raytune", str(tmp_path / "ckpts"), "--out", str(tmp_path / "r"),
                 "--skip-bad"]) == 2
    assert "--skip-bad apply only to --from checkpoints" in capsys.readouterr().err
