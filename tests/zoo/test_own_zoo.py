"""Your own zoo: a spec file generates the zoo of its preset, experiment scripts take `--zoo PATH`,
and `weightspace run ZOO --out DIR` writes the results and the report of any zoo."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from weightspace import cli
from weightspace.zoo.presets import get_preset

ROOT = Path(__file__).resolve().parents[2]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("weightspace: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def own_zoo(tmp_path_factory) -> Path:
    """A zoo outside any datasets/ folder: 30 Tetris MLPs x 3 checkpoints (seconds)."""
    from weightspace.zoo.generate import generate

    path = tmp_path_factory.mktemp("elsewhere") / "my_zoo"
    spec = replace(get_preset("tetris_seed", smoke=True), name="my_zoo", seeds=30, shard_size=32)
    generate(spec, path, progress=False, device="cpu")
    return path


# ---------------------------------------------------------------- spec files
def test_a_spec_file_from_presets_show_generates_the_presets_zoo_bitwise(tmp_path, capsys):
    from weightspace.zoo.generate import generate
    from weightspace.zoo.spec_file import load_spec_file
    from weightspace.zoo.store import Zoo

    assert cli.main(["zoo", "presets", "--show", "tetris_seed"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["architecture"] == "tetris_mlp" and data["seeds"] == 1000  # the preset, as it is
    smoke = get_preset("tetris_seed", smoke=True)
    data.update(name=smoke.name, seeds=6, epochs=2, shard_size=3, notes=smoke.notes)  # edited as a user would
    data["task_options"].update(n_train=64, n_test=64)
    spec_file = tmp_path / "my_zoo.json"
    spec_file.write_text(json.dumps(data, indent=1))
    assert load_spec_file(spec_file) == smoke

    assert cli.main(["zoo", "generate", "--spec", str(spec_file), "--out", str(tmp_path / "from_file"),
                     "--device", "cpu"]) == 0
    from_file = Zoo.load(tmp_path / "from_file")
    direct = generate(smoke, tmp_path / "direct", progress=False, device="cpu")
    assert from_file.weights.tobytes() == np.asarray(direct.weights).tobytes()  # bitwise
    assert from_file.samples.equals(direct.samples)
    assert from_file.info["fingerprint"] == direct.info["fingerprint"] == smoke.fingerprint()
    capsys.readouterr()

    assert cli.main(["zoo", "presets", "--show", "tetris_seed", "--smoke", "--format", "toml"]) == 0
    toml_file = tmp_path / "my_zoo.toml"
    toml_file.write_text(capsys.readouterr().out)
    assert load_spec_file(toml_file) == smoke  # the TOML form reads back as the same spec


def test_every_preset_reads_back_from_json_and_toml(tmp_path):
    from weightspace.zoo.presets import PRESETS
    from weightspace.zoo.spec_file import dump_spec, load_spec_file

    sampled = replace(get_preset("svhn_unterthiner"), name="sampled", grid={}, seeds=(1, 5), samples=3,
                      sample={"lr": {"log_uniform": [1e-4, 1e-2]}, "activation": {"choice": ["relu", "tanh"]}})
    for spec in [*PRESETS.values(), sampled]:
        for fmt in ("json", "toml"):
            path = tmp_path / f"{spec.name}.{fmt}"
            try:
                path.write_text(dump_spec(spec, fmt))
            except ValueError as err:  # TOML has no null: a grid listing None is JSON only
                assert fmt == "toml" and "--format json" in str(err)
                continue
            back = load_spec_file(path)
            assert back == spec and back.fingerprint() == spec.fingerprint(), (spec.name, fmt)


BAD_SPECS = {  # file name: (content, what the error line must name besides the file)
    "unknown_key.json": ('{"name": "z", "task": "tetris", "architecture": "tetris_mlp", "seed": 3}',
                         ["'seed'", "'seeds'", "'sample_seed'"]),
    "bad.json": ('{\n  "name": "z",\n  "task": tetris\n}', ["not valid JSON", "line 3"]),
    "bad.toml": ('name = "z"\ntask = tetris\n', ["not valid TOML", "line 2"]),
    "unknown_key.toml": ('name = "z"\ntask = "tetris"\narchitecture = "tetris_mlp"\n[grid]\nlearning_rate = [0.1]\n',
                         ["learning_rate", "'lr'"]),
    "wrong_type.json": ('{"name": "z", "task": "tetris", "architecture": "tetris_mlp", "epochs": "3"}',
                        ["epochs", "'3'"]),
    "architecture.json": ('{"name": "z", "task": "tetris", "architecture": "resnet"}', ["'resnet'", "tetris_mlp"]),
    "task.json": ('{"name": "z", "task": "imagenet", "architecture": "mlp"}', ["'imagenet'", "digits"]),
    "arch_kwargs.json": ('{"name": "z", "task": "digits", "architecture": "mlp", "arch_kwargs": {"hiden": [8]}}',
                         ["'hiden'", "'hidden'"]),
}


@pytest.mark.parametrize("name", sorted(BAD_SPECS))
def test_a_bad_spec_file_is_refused_naming_the_file_and_the_key_and_nothing_is_written(name, tmp_path, capsys,
                                                                                          monkeypatch):
    import weightspace.zoo.generate

    def unreachable(*args, **kwargs):
        raise AssertionError("generate() was reached; the spec file should have been refused")

    monkeypatch.setattr(weightspace.zoo.generate, "generate", unreachable)
    content, named = BAD_SPECS[name]
    (tmp_path / name).write_text(content)
    code = cli.main(["zoo", "generate", "--spec", str(tmp_path / name), "--out", str(tmp_path / "zoo")])
    line = _one_error_line(capsys)
    assert code == 2 and str(tmp_path / name) in line
    for part in named:
        assert part in line, line
    assert [p.name for p in tmp_path.iterdir()] == [name]


# ------------------------------------------------------------------ --zoo PATH
def test_an_experiment_script_runs_on_the_zoo_given_by_zoo(own_zoo, tmp_path):
    """What ``python compute_baselines.py --smoke-test --zoo PATH ...`` runs, in this process (the scripts'
    own start-up is run by tests/pipeline/test_experiments.py's smoke runs)."""
    import importlib.util

    from weightspace.cli.experiment_run import run_script

    out, datasets = tmp_path / "out", tmp_path / "datasets"
    folder = ROOT / "11_tetris_seed"
    spec = importlib.util.spec_from_file_location("experiment_11_tetris_seed", folder / "experiment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    code = run_script(module.EXPERIMENT, "baselines", folder / "compute_baselines.py",
                      ["--smoke-test", "--zoo", str(own_zoo), "--output-dir", str(out), "--datasets", str(datasets),
                       "--no-report"])
    assert code == 0
    recorded = json.loads((out / "experiment.json").read_text())
    assert recorded["zoo"]["path"] == str(own_zoo) and recorded["zoo"]["models"] == 30
    assert recorded["zoo"]["source"] == f"given zoo '{own_zoo}'"
    assert (out / "baseline_performance.json").exists()
    assert not (out / "zoo").exists() and not datasets.exists()  # nothing generated, nothing looked up


def test_zoo_that_is_not_a_zoo_folder_is_refused_before_anything_is_written(tmp_path, capsys):
    from weightspace.cli.experiment_run import run_script
    from weightspace.pipeline.experiment import Experiment

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "notes.md").write_text("mine")
    experiment = Experiment(name="t", preset="tetris_seed")
    code = run_script(experiment, "baselines", tmp_path / "script.py",
                      ["--smoke-test", "--zoo", str(tmp_path / "results"), "--output-dir", str(tmp_path / "out")])
    line = _one_error_line(capsys)
    assert code == 2 and str(tmp_path / "results") in line and "zoo.json" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


# ------------------------------------------------------------ weightspace run
@pytest.mark.slow
def test_weightspace_run_writes_results_and_report_for_a_zoo_without_a_folder(own_zoo, tmp_path):
    out = tmp_path / "report"
    command = [sys.executable, "-m", "weightspace.cli", "run", str(own_zoo), "--out", str(out), "--smoke",
               "--device", "cpu"]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert {"test_acc_train", "test_acc_val", "test_acc_test"} <= set(json.loads((out / "results.json").read_text()))
    assert "results_lq" in json.loads((out / "baseline_performance.json").read_text())
    report = (out / "report.md").read_text()
    assert "my_zoo" in report and "Learner: neuron_set" in report and "test_acc" in report
    recorded = json.loads((out / "experiment.json").read_text())
    assert recorded["name"] == "my_zoo_smoke" and recorded["zoo"]["path"] == str(own_zoo)

    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "--overwrite" in again.stderr  # finished results are kept


def test_weightspace_run_refuses_a_folder_it_did_not_write(own_zoo, tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.md").write_text("keep")
    code = cli.main(["run", str(own_zoo), "--out", str(tmp_path / "mine"), "--device", "cpu"])
    assert code == 3 and "notes.md" in _one_error_line(capsys)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.md"]


def test_run_experiment_uses_six_spread_checkpoints_or_the_ones_asked_for():
    from weightspace.pipeline.experiment import zoo_experiment

    def zoo(epochs):
        return SimpleNamespace(name="z", path="/z", epochs=list(epochs))

    assert zoo_experiment(zoo(range(26))).zoo_epochs == (0, 5, 10, 15, 20, 25)  # as 11_tetris_seed
    assert zoo_experiment(zoo(range(21))).zoo_epochs == (0, 4, 8, 12, 16, 20)  # as 20_digits_seed
    assert zoo_experiment(zoo([0, 1, 2, 3, 20, 40, 60, 80, 86])).zoo_epochs == (0, 2, 3, 40, 60, 86)
    assert zoo_experiment(zoo(range(6))).zoo_epochs is None  # all
    assert zoo_experiment(zoo(range(26)), epochs="all").zoo_epochs is None
    assert zoo_experiment(zoo(range(26)), epochs=(3, 1)).zoo_epochs == (1, 3)
    with pytest.raises(ValueError, match=r"\[30\]"):
        zoo_experiment(zoo(range(26)), epochs=(1, 30))
    variant = zoo_experiment(zoo(range(3))).variant("2021")
    assert variant.name == "z_2021" and variant.representation.encoder.name == "transformer_neuron"
