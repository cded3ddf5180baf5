"""Nothing planted runs, nothing a user owns is deleted, an interrupted run is never reported as finished.

Each test is a reproduction of what a hostile or careless user did: a pickle planted where `--resume`
looks, user files beside weightspace's markers, `--storage .`, Ctrl-C at two moments. The payloads
write a marker file; the tests assert it never appears, that user files are intact, and that the
command ends with its exit code and one line.
"""

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from weightspace import cli
from weightspace.zoo.presets import get_preset
from weightspace.zoo.store import Zoo


class Payload:
    """Unpickling it creates the file `marker`: proof that planted code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(Payload(marker)))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("weightspace")]
    assert len(lines) == 1 and lines[0].startswith("weightspace: error: "), err
    return lines[0]


def user_files(folder: Path) -> dict[str, str]:
    """Write a user's files into `folder`; returns them (relative path -> content)."""
    files = {"docs/thesis.tex": "\\chapter{mine}", ".ssh/id_rsa": "KEY", ".bashrc": "alias ll='ls -l'",
             "notes.txt": "notes"}
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return files


def assert_intact(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        assert (folder / name).read_text() == text, f"{folder / name} was changed or deleted"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def zoo_b(tmp_path_factory) -> Path:
    """`zoo generate --preset tetris_seed --smoke` with 24 seeds: enough models for a smoke run (seconds)."""
    from weightspace.zoo.generate import generate

    path = tmp_path_factory.mktemp("zoos") / "zoo_b"
    generate(replace(get_preset("tetris_seed", smoke=True), seeds=24), path, progress=False, device="cpu")
    return path


def run_command(zoo: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(zoo), "--out", str(out), "--smoke", "--device", "cpu", *extra]


# ------------------------------------------------------------ 1. --resume and planted code
def test_resume_refuses_a_tuner_pkl_planted_in_shared_storage(zoo_b, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "PLANTED_CODE_RAN"
    plant(tmp_path / "shared" / "fresh_out" / "tuner.pkl", marker)
    code = cli.main(run_command(zoo_b, Path("fresh_out"), "--storage", "shared", "--resume"))
    assert code == 3 and "not the ray.tune run this output folder started" in one_error_line(capsys)
    assert not marker.exists()
    assert (tmp_path / "shared" / "fresh_out" / "tuner.pkl").exists()  # refused, not deleted


def test_verify_names_a_planted_or_replaced_file_and_accepts_what_the_record_holds(tmp_path):
    from weightspace.pipeline import storage
    from weightspace.pipeline.run_record import Recorder, UntrustedRunError, verify

    run = tmp_path / "out" / "tune"
    recorder = Recorder.start(tmp_path / "out" / "tune_record.json", str(run))
    storage.write_json(str(run / storage.CONFIG_FILE), {"run_id": recorder.run_id})
    (run / "trial" / "checkpoint_000000").mkdir(parents=True)
    (run / "tuner.pkl").write_bytes(b"state 1")
    (run / "trial" / "params.pkl").write_bytes(b"params")
    (run / "trial" / "progress.csv").write_text("a\n1\n")  # a log: never unpickled, free to change
    (run / "trial" / "checkpoint_000000" / "learner.pt").write_bytes(b"weights only")
    recorder.scan_local(run)
    verify(Recorder.load(recorder.path), str(run))
    (run / "trial" / "progress.csv").write_text("a\n1\n2\n")
    verify(Recorder.load(recorder.path), str(run))

    marker = tmp_path / "PLANTED_CODE_RAN"
    plant(run / "trial" / "checkpoint_000000" / "_dict_checkpoint.pkl", marker)  # ray would unpickle it
    with pytest.raises(UntrustedRunError, match="_dict_checkpoint.pkl' is not written by this run"):
        verify(Recorder.load(recorder.path), str(run))
    (run / "trial" / "checkpoint_000000" / "_dict_checkpoint.pkl").unlink()
    plant(run / "tuner.pkl", marker)
    with pytest.raises(UntrustedRunError, match="tuner.pkl' is changed since weightspace saved it"):
        verify(Recorder.load(recorder.path), str(run))
    storage.write_json(str(run / storage.CONFIG_FILE), {"run_id": "another run"})
    with pytest.raises(UntrustedRunError, match="run id differs"):
        verify(Recorder.load(recorder.path), str(run))
    with pytest.raises(UntrustedRunError, match="keeps no record"):
        verify(None, str(run))
    assert not marker.exists()


def test_the_record_keeps_the_last_digests_of_a_file_and_moves_with_its_output_folder(tmp_path):
    from weightspace.pipeline import storage
    from weightspace.pipeline.run_record import Recorder, verify

    run = tmp_path / "out" / "tune"
    run.mkdir(parents=True)
    recorder = Recorder.start(tmp_path / "out" / "tune_record.json", str(run))
    storage.write_json(str(run / storage.CONFIG_FILE), {"run_id": recorder.run_id})
    for save in range(6):  # ray rewrites its state; the storage may still hold one of the last saves
        (run / "experiment_state.json").write_bytes(f"save {save}".encode())
        os.utime(run / "experiment_state.json", ns=(save * 10**9, save * 10**9))
        recorder.scan_local(run)
    (run / "experiment_state.json").write_bytes(b"save 3")
    verify(Recorder.load(recorder.path), str(run))
    (run / "experiment_state.json").write_bytes(b"save 1")  # older than the last four: refused
    with pytest.raises(ValueError, match="experiment_state.json"):
        verify(Recorder.load(recorder.path), str(run))
    (run / "experiment_state.json").write_bytes(b"save 5")
    shutil.move(tmp_path / "out", tmp_path / "moved")  # a run inside its output folder moves with it
    verify(Recorder.load(tmp_path / "moved" / "tune_record.json"), str(tmp_path / "moved" / "tune"))


@pytest.mark.slow
def test_a_copied_run_resumes_and_refuses_once_its_tuner_pkl_is_replaced(zoo_b, tmp_path):
    out = tmp_path / "res"
    done = subprocess.run([sys.executable, "-m", "weightspace.cli", *run_command(zoo_b, out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "results.json").unlink()  # as if it had not finished
    resumed = subprocess.run([sys.executable, "-m", "weightspace.cli", *run_command(zoo_b, copy, "--resume")],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (copy / "results.json").exists()

    (copy / "results.json").unlink()
    marker = tmp_path / "PLANTED_CODE_RAN"
    plant(copy / "tune" / "tuner.pkl", marker)
    refused = subprocess.run([sys.executable, "-m", "weightspace.cli", *run_command(zoo_b, copy, "--resume")],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "tuner.pkl' is changed since weightspace saved it" in refused.stderr, \
        refused.stderr[-600:]
    assert "Traceback" not in refused.stderr and not marker.exists()


# ------------------------------------------------- 2. run --overwrite deletes only its own run
def test_overwrite_refuses_a_run_location_another_project_wrote(zoo_b, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    foreign = tmp_path / "stor2" / "foreign"
    (foreign / "PPO_trial_0").mkdir(parents=True)
    (foreign / "PPO_trial_0" / "result.json").write_text("{}")
    plant(foreign / "tuner.pkl", tmp_path / "PLANTED_CODE_RAN")
    before = snapshot(foreign)
    code = cli.main(run_command(zoo_b, Path("foreign"), "--storage", "stor2", "--overwrite"))
    assert code == 3 and "neither resumes nor deletes" in one_error_line(capsys)
    assert snapshot(foreign) == before and not (tmp_path / "PLANTED_CODE_RAN").exists()


def test_storage_dot_cannot_make_the_run_location_the_zoo_or_the_output_folder(zoo_b, tmp_path, capsys,
                                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    zoo_f = tmp_path / "zoo_f"
    shutil.copytree(zoo_b, zoo_f)
    before = snapshot(zoo_f)
    code = cli.main(run_command(Path("zoo_f"), Path("res/zoo_f"), "--storage", ".", "--overwrite"))
    assert code == 3 and "the zoo" in one_error_line(capsys)
    assert snapshot(zoo_f) == before

    code = cli.main(run_command(zoo_b, tmp_path, "--storage", str(tmp_path.parent), "--overwrite"))
    assert code == 3 and "output folder" in one_error_line(capsys)  # the run would be the output folder itself


def test_storage_at_a_user_folder_deletes_nothing_of_it(zoo_b, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    files = user_files(home)
    plant(home / "tuner.pkl", tmp_path / "PLANTED_CODE_RAN")
    for flags in (["--overwrite"], ["--resume"], []):
        code = cli.main(run_command(zoo_b, tmp_path / "res" / "home", "--storage", str(tmp_path), *flags))
        assert code == 3 and "neither resumes nor deletes" in one_error_line(capsys)
        assert_intact(home, files)
    assert not (tmp_path / "PLANTED_CODE_RAN").exists()


def test_overwrite_keeps_a_users_notes_in_the_output_folder(zoo_b, tmp_path, capsys):
    from weightspace.io.atomic import write_json
    from weightspace.pipeline.output_folder import mark_output_dir

    out = tmp_path / "res"
    mark_output_dir(out, "zoo_b_smoke", run_inside=True)
    write_json(out / "results.json", {})  # as a finished run leaves it: in the folder's manifest
    (out / "my_notes.md").write_text("keep me")
    code = cli.main(run_command(zoo_b, out, "--overwrite"))
    assert code == 3 and "my_notes.md, which weightspace did not write" in one_error_line(capsys)
    assert (out / "my_notes.md").read_text() == "keep me" and (out / "results.json").exists()


# ---------------------------------------------- 3. --overwrite replaces only what weightspace wrote
def test_convert_refuses_an_output_that_holds_its_source(zoo_b, tmp_path, capsys):
    from weightspace.formats import export_checkpoints

    zoo_d = tmp_path / "zoo_d"
    shutil.copytree(zoo_b, zoo_d)
    export_checkpoints(Zoo.load(zoo_b), zoo_d / "my_checkpoints")
    before = snapshot(zoo_d / "my_checkpoints")
    code = cli.main(["zoo", "convert", "--from", "checkpoints", str(zoo_d / "my_checkpoints"), "--out", str(zoo_d),
                     "--overwrite"])
    assert code == 3 and "contains the source" in one_error_line(capsys)
    assert snapshot(zoo_d / "my_checkpoints") == before and len(before) > 20

    code = cli.main(["zoo", "convert", "--from", "checkpoints", str(zoo_d / "my_checkpoints"), "--out",
                     str(zoo_d / "my_checkpoints" / "zoo")])
    assert code == 3 and "lies inside the source" in one_error_line(capsys)


def test_a_hand_copied_zoo_json_does_not_make_a_users_folder_replaceable(zoo_b, tmp_path, capsys):
    home = tmp_path / "home"
    files = user_files(home)
    shutil.copy(zoo_b / "zoo.json", home / "zoo.json")
    code = cli.main(["zoo", "generate", "--preset", "tetris_seed", "--smoke", "--out", str(home), "--overwrite"])
    line = one_error_line(capsys)
    assert code == 3 and "which weightspace did not write and which would be lost" in line and ".bashrc" in line
    assert_intact(home, files)


def test_notes_in_a_zoo_a_spec_inside_it_and_a_readme_in_an_export_survive_overwrite(zoo_b, tmp_path, capsys):
    from weightspace.formats import export_raytune

    zoo = tmp_path / "zoo"
    spec = replace(get_preset("tetris_seed", smoke=True), seeds=2)
    assert cli.main(["zoo", "generate", "--preset", "tetris_seed", "--smoke", "--out", str(zoo)]) == 0
    (zoo / "NOTES.md").write_text("what I saw")
    assert cli.main(["zoo", "generate", "--preset", "tetris_seed", "--smoke", "--out", str(zoo), "--overwrite"]) == 3
    assert "NOTES.md" in one_error_line(capsys) and (zoo / "NOTES.md").read_text() == "what I saw"
    (zoo / "NOTES.md").unlink()
    assert cli.main(["zoo", "generate", "--preset", "tetris_seed", "--smoke", "--out", str(zoo), "--overwrite"]) == 0
    capsys.readouterr()

    from weightspace.zoo.spec_file import dump_spec

    (zoo / "spec.json").write_text(dump_spec(spec, "json"))
    assert cli.main(["zoo", "generate", "--spec", str(zoo / "spec.json"), "--out", str(zoo), "--overwrite"]) == 3
    assert "contains the spec file" in one_error_line(capsys) and (zoo / "spec.json").exists()

    export = export_raytune(Zoo.load(zoo_b), tmp_path / "export")
    (export / "README.md").write_text("how I use it")
    assert cli.main(["zoo", "export", "--to", "raytune", str(zoo_b), str(export), "--overwrite"]) == 3
    assert "README.md" in one_error_line(capsys) and (export / "README.md").read_text() == "how I use it"
    (export / "README.md").unlink()
    assert cli.main(["zoo", "export", "--to", "raytune", str(zoo_b), str(export), "--overwrite"]) == 0


def test_generate_with_out_dot_inside_a_zoo_is_refused_before_training(zoo_b, tmp_path, capsys, monkeypatch):
    zoo = tmp_path / "zoo"
    shutil.copytree(zoo_b, zoo)
    monkeypatch.chdir(zoo)
    code = cli.main(["zoo", "generate", "--preset", "digits_seed", "--smoke", "--out", "."])
    assert code == 2 and "--overwrite" in one_error_line(capsys)
    assert not list(tmp_path.glob(".*")), "a work folder or lock was left beside the zoo"


# -------------------------------------------------------------- 4. Ctrl-C during a run
DRIVER = """
import sys
from weightspace.cli.experiment_run import parse_args, run_experiment
from weightspace.pipeline.experiment import zoo_experiment
from weightspace.pipeline.learners import registry
from weightspace.zoo.store import Zoo

registry.SMOKE_ITERATIONS = int(sys.argv[2])  # the smoke learner, trained for this many iterations
zoo = Zoo.load(sys.argv[1])
experiment = zoo_experiment(zoo).smoke()
args = parse_args("representation", ["--zoo", sys.argv[1], "--output-dir", sys.argv[3], "--device", "cpu",
                                     "--no-report", *sys.argv[4:]])
sys.exit(run_experiment(experiment, "representation", args))
"""


# the Ctrl-C is sent within 50 ms of its moment, so the run is far from its end then; the resumed run trains what
# is left of them
CTRL_C_ITERATIONS = 15


def interrupted_run(zoo: Path, out: Path, *, iterations: int, when,
                    stop: signal.Signals = signal.SIGINT) -> subprocess.CompletedProcess:
    """Run `iterations` smoke iterations into `out` and send `stop` once `when(out)` holds."""
    process = subprocess.Popen([sys.executable, "-c", DRIVER, str(zoo), str(iterations), str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not when(out) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(stop)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_a_ctrl_c_inside_a_held_section_is_remembered_and_raised_after_it():
    """ray writes tuner.pkl and the run's record takes its digest in a held section: a Ctrl-C there (one came
    while the test below ran beside other jobs) left a tuner.pkl the record lacked, and every resume refused it."""
    from weightspace.pipeline.tune import _remember_ctrl_c

    before = signal.getsignal(signal.SIGINT)
    reached = []
    with _remember_ctrl_c() as interrupted:
        assert not interrupted
        with interrupted.held():
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("the rest of the held section")
        assert reached and interrupted and interrupted.seen == [signal.SIGINT]
        with pytest.raises(KeyboardInterrupt):  # outside a held section, a Ctrl-C raises as usual
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def checkpoints(out: Path) -> list[Path]:
    return list((out / "tune").glob("*/checkpoint_*/learner.pt"))


@pytest.mark.slow
@pytest.mark.parametrize("moment, stop", [
    pytest.param("after the first checkpoint", signal.SIGINT, id="ctrl-c after the first checkpoint"),
    pytest.param("before the first checkpoint", signal.SIGINT, id="ctrl-c before the first checkpoint"),
    # a batch scheduler's time limit, `scancel`, `kill`: as Ctrl-C (long: the handover has fast tests in
    # tests/io/test_local_ray.py)
    pytest.param("after the first checkpoint", signal.SIGTERM, id="sigterm after the first checkpoint",
                 marks=pytest.mark.long)])
def test_ctrl_c_never_reports_success_and_the_run_resumes(zoo_b, tmp_path, moment, stop):
    out = tmp_path / "res"
    if moment == "after the first checkpoint":
        when = lambda o: bool(checkpoints(o))  # noqa: E731
    else:
        when = lambda o: (o / "tune" / "tuner.pkl").exists()  # noqa: E731
    stopped = interrupted_run(zoo_b, out, iterations=CTRL_C_ITERATIONS, when=when, stop=stop)
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr and "run again with --resume" in stopped.stderr
    assert "results in" not in stopped.stdout
    assert not (out / "results.json").exists() and not (out / "results.csv").exists()

    again = subprocess.run([sys.executable, "-c", DRIVER, str(zoo_b), str(CTRL_C_ITERATIONS), str(out)],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "pass --resume to continue it" in again.stderr  # not "finished"
    resumed = subprocess.run([sys.executable, "-c", DRIVER, str(zoo_b), str(CTRL_C_ITERATIONS), str(out),
                              "--resume"], capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    history = np.loadtxt(out / "history.csv", delimiter=",", skiprows=1, usecols=0, ndmin=1)
    assert json.loads((out / "results.json").read_text())["selected_iteration"] <= CTRL_C_ITERATIONS and len(history) >= 1
    import pandas as pd

    assert pd.read_csv(out / "history.csv")["training_iteration"].max() == CTRL_C_ITERATIONS


# ------------------------------------- 5. no writes into folders weightspace did not write
def test_an_experiment_json_without_the_format_marker_is_not_weightspaces(zoo_b, tmp_path, capsys):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "experiment.json").write_text(json.dumps({"name": "my study", "config": {"lr": 1}}))
    (proj / "report.md").write_text("my report")
    (proj / "results.csv").write_text("my,results\n")
    before = snapshot(proj)
    assert cli.main(run_command(zoo_b, proj)) == 3
    assert "is not an experiment's output folder" in one_error_line(capsys)
    assert snapshot(proj) == before


def test_baselines_refuse_a_users_folder_and_replace_their_own_only_with_overwrite(zoo_b, tmp_path, capsys):
    home2 = tmp_path / "home2"
    home2.mkdir()
    (home2 / "baselines.csv").write_text("my,table\n")
    assert cli.main(["baselines", str(zoo_b), "--out", str(home2)]) == 3
    assert "baselines.csv" in one_error_line(capsys) and (home2 / "baselines.csv").read_text() == "my,table\n"

    out = tmp_path / "base"
    assert cli.main(["baselines", str(zoo_b), "--out", str(out)]) == 0
    written = (out / "baseline_performance.json").read_bytes()
    capsys.readouterr()
    assert cli.main(["baselines", str(zoo_b), "--out", str(out)]) == 2
    assert "--overwrite" in one_error_line(capsys)
    assert cli.main(["baselines", str(zoo_b), "--out", str(out), "--overwrite"]) == 0
    assert (out / "baseline_performance.json").read_bytes() == written  # the same split, the same numbers
    assert cli.main(["baselines", str(zoo_b), "--out", str(zoo_b / "base")]) == 3  # not into the zoo
    assert not (zoo_b / "base").exists()


def test_report_writes_only_into_an_experiment_folder(zoo_b, tmp_path, capsys):
    home3 = tmp_path / "home3"
    home3.mkdir()
    (home3 / "report.md").write_text("my report")
    assert cli.main(["report", str(home3)]) == 3
    assert "not an experiment's output folder" in one_error_line(capsys)
    assert (home3 / "report.md").read_text() == "my report"
    before = snapshot(zoo_b)
    assert cli.main(["report", str(zoo_b)]) == 3
    assert "not an experiment's output folder" in one_error_line(capsys) and snapshot(zoo_b) == before


# ------------------------------------------------------- 7. one line for a zoo a run cannot use
def test_run_refuses_a_train_split_smaller_than_a_batch_and_nan_weights_in_one_line(zoo_b, tmp_path, capsys):
    from weightspace.zoo.generate import generate

    small = tmp_path / "small"
    generate(replace(get_preset("tetris_seed", smoke=True), seeds=4), small, progress=False, device="cpu")
    assert cli.main(run_command(small, tmp_path / "r1")) == 2
    line = one_error_line(capsys)
    assert "fewer than one batch of 16" in line and "--resume" not in line
    assert not (tmp_path / "r1" / "baselines.csv").exists()  # refused before the baselines

    zoo = Zoo.load(zoo_b)
    nan = Zoo(np.full(zoo.weights.shape, np.nan, dtype=np.float32), zoo.samples, zoo.layout, zoo.info)
    nan.save(tmp_path / "nan")
    assert cli.main(run_command(tmp_path / "nan", tmp_path / "r2")) == 2
    assert "NaN or infinite weights" in one_error_line(capsys)


def test_overwrite_unmarks_the_finished_run_first_so_an_interrupted_rerun_never_reads_as_finished(tmp_path):
    import argparse

    from weightspace.cli.experiment_run import _refuse_overwrite
    from weightspace.io.atomic import write_json
    from weightspace.io.outputs import OutputExistsError
    from weightspace.pipeline.output_folder import mark_output_dir

    out = tmp_path / "res"
    mark_output_dir(out, "t", run_inside=True)
    write_json(out / "results.json", {})
    with pytest.raises(OutputExistsError, match="has finished"):
        _refuse_overwrite(out, "representation", argparse.Namespace(overwrite=False, resume=False, storage=None))
    _refuse_overwrite(out, "representation", argparse.Namespace(overwrite=True, resume=False, storage=None))
    assert not (out / "results.json").exists() and (out / "experiment.json").exists()


def test_a_ctrl_c_while_ray_writes_tuner_pkl_leaves_a_run_that_resume_trusts(make_zoo, tmp_path, monkeypatch):
    """The window the slow Ctrl-C test hits only on a busy machine, made certain: the Tuner has written
    tuner.pkl when the Ctrl-C arrives, before `run_tuner` gets to record it."""
    from ray import tune

    from weightspace.pipeline import tune as weightspace_tune
    from weightspace.pipeline.run_record import Recorder, run_id_at, verify
    from weightspace.representation import LearnerConfig

    class InterruptedTuner:
        def __init__(self, trainable, *, param_space, tune_config, run_config):
            location = Path(run_config.storage_path) / run_config.name
            location.mkdir(parents=True, exist_ok=True)
            (location / "tuner.pkl").write_bytes(pickle.dumps({"ray": "state"}))
            raise KeyboardInterrupt

    monkeypatch.setattr(tune, "with_parameters", lambda trainable, **kwargs: trainable)  # no object store needed
    monkeypatch.setattr(tune, "Tuner", InterruptedTuner)
    zoo = make_zoo(models=20)
    config = LearnerConfig()
    config.data.path = str(tmp_path / "zoo")
    record = tmp_path / "out" / "tune_record.json"
    with pytest.raises(KeyboardInterrupt):
        weightspace_tune.run_tuner(config, name="run", storage_path=tmp_path / "out", iterations=1, zoo=zoo,
                                   record=record, resume=False, verbose=0)
    location = str(tmp_path / "out" / "run")
    recorder = Recorder.load(record)
    assert recorder is not None and run_id_at(location) == recorder.run_id  # the run's id was written first
    verify(recorder, location)  # tuner.pkl is vouched for: --resume will continue this run
