"""User and environment errors reach the command line as one line and a non-zero exit, never a traceback."""

import errno
import os
import socket
import subprocess
import sys
import time

import pytest
import torch

from weightspace import cli
from weightspace.cli import experiment_run as experiment_cli
from weightspace.errors import InputError, OutputError

SMOKE = ["zoo", "generate", "--preset", "tetris_seed", "--smoke"]


def _one_error_line(capsys) -> str:
    """The single `weightspace: error:` line on stderr, asserting it is the last line and no traceback came with it."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("weightspace: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    return errors[0]


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def no_generate(monkeypatch):
    """`zoo generate` must refuse before training: reaching `generate` fails the test."""
    import weightspace.zoo.generate

    def unreachable(*args, **kwargs):
        raise AssertionError("generate() was reached; the option should have been refused up front")

    monkeypatch.setattr(weightspace.zoo.generate, "generate", unreachable)


@pytest.fixture
def experiment(tmp_path, monkeypatch):
    """(experiment, script path) for `run_script`; reaching `find_zoo` fails the test unless a test replaces it."""
    from weightspace.pipeline.experiment import Experiment

    def unreachable(*args, **kwargs):
        raise AssertionError("find_zoo() was reached; the option should have been refused up front")

    monkeypatch.setattr(experiment_cli, "find_zoo", unreachable)
    exp = Experiment(name="tetris_seed", preset="tetris_seed", zenodo="11_tetris_seed")
    return exp, tmp_path / "simclr_ae_tetris_seed.py"


def _run_experiment(experiment, tmp_path, *args: str) -> int:
    exp, script = experiment
    return experiment_cli.run_script(exp, "representation", script,
                                     ["--output-dir", str(tmp_path / "out"), "--datasets", str(tmp_path / "ds"), *args])


# ------------------------------------------------------------------ devices
def test_unknown_device_is_refused_up_front_naming_the_choices(tmp_path, capsys, no_generate):
    code = cli.main([*SMOKE, "--out", str(tmp_path / "z"), "--device", "bogus"])
    line = _one_error_line(capsys)
    assert code == 2 and "'bogus'" in line and "cpu" in line and "cuda" in line
    assert list(tmp_path.iterdir()) == []


def test_unknown_device_is_refused_by_the_experiment_scripts(experiment, tmp_path, capsys):
    code = _run_experiment(experiment, tmp_path, "--device", "bogus")
    line = _one_error_line(capsys)
    assert code == 2 and "'bogus'" in line and "auto" in line and "cpu" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_without_a_gpu_is_refused_up_front(experiment, tmp_path, capsys, no_generate):
    assert cli.main([*SMOKE, "--out", str(tmp_path / "z"), "--device", "cuda"]) == 2
    assert "GPU" in _one_error_line(capsys)
    assert _run_experiment(experiment, tmp_path, "--device", "cuda") == 2
    assert "GPU" in _one_error_line(capsys)


def test_the_library_refuses_an_unknown_device_without_retrying(tmp_path):
    from weightspace.zoo.generate import generate
    from weightspace.zoo.presets import get_preset

    with pytest.raises(InputError, match="bogus"):
        generate(get_preset("tetris_seed", smoke=True), tmp_path / "z", device="bogus", progress=False)


@pytest.mark.parametrize("name", ["auto", "cpu", None])
def test_available_devices_resolve(name):
    from weightspace.zoo.devices import resolve_device

    assert resolve_device(name).type in ("cpu", "cuda")


# ------------------------------------------------------------------ options
def test_negative_workers_are_refused_by_the_parser(tmp_path, capsys, no_generate):
    with pytest.raises(SystemExit) as info:
        cli.main([*SMOKE, "--out", str(tmp_path / "z"), "--workers", "-3"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    assert "--workers" in err.splitlines()[-1] and "-3" in err.splitlines()[-1]


# ------------------------------------------------------------------ ray
def test_a_dead_ray_address_fails_fast_with_a_message(tmp_path, capsys, no_generate):
    address = f"127.0.0.1:{_unused_port()}"
    start = time.monotonic()
    code = cli.main([*SMOKE, "--out", str(tmp_path / "z"), "--workers", "2", "--ray-address", address])
    assert time.monotonic() - start < 60
    line = _one_error_line(capsys)
    assert code == 3 and address in line and "ray" in line


def test_a_dead_ray_address_fails_fast_in_the_experiment_scripts(experiment, tmp_path, capsys):
    address = f"127.0.0.1:{_unused_port()}"
    start = time.monotonic()
    code = _run_experiment(experiment, tmp_path, "--ray-address", address, "--ray-timeout", "5")
    assert time.monotonic() - start < 60
    line = _one_error_line(capsys)
    assert code == 3 and address in line


@pytest.mark.slow
def test_a_port_that_does_not_answer_as_ray_gives_up_after_the_timeout():
    script = ("import sys, time\n"
              "from weightspace.pipeline.cluster import connect_ray\n"
              "from weightspace.errors import ClusterError\n"
              "start = time.monotonic()\n"
              "try:\n"
              "    connect_ray(sys.argv[1], timeout_s=3, log_to_driver=False)\n"
              "except ClusterError as err:\n"
              "    print(round(time.monotonic() - start), err)\n")
    with socket.socket() as server:  # listens (the kernel completes connections), never answers
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        address = f"127.0.0.1:{server.getsockname()[1]}"
        # a fresh process: ray reads its connection settings when it is first imported
        done = subprocess.run([sys.executable, "-c", script, address], capture_output=True, text=True, timeout=300)
    seconds, _, message = done.stdout.strip().partition(" ")
    assert seconds.isdigit(), done.stdout + done.stderr[-2000:]
    assert int(seconds) < 30 and address in message  # unbounded, ray tries for more than 7 minutes


# ------------------------------------------------------------------ files and folders
def test_out_below_a_file_names_the_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("not a folder")
    code = cli.main([*SMOKE, "--out", str(tmp_path / "afile" / "sub")])
    line = _one_error_line(capsys)
    assert code != 0 and str(tmp_path / "afile") in line and "is a file" in line
    assert (tmp_path / "afile").read_text() == "not a folder"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_one_line(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code = cli.main([*SMOKE, "--out", str(folder / "z")])
    finally:
        folder.chmod(0o755)
    line = _one_error_line(capsys)
    assert code == 3 and "permission denied" in line and str(folder) in line


OS_ERRORS = [  # (error raised where the command writes, words of the message, exit code)
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/z/weights.npy"), "no space left on device", 3),
    (OSError("1200 requested and 992 written"), "disk", 3),  # numpy's short write on a full disk
    (OSError(errno.EROFS, os.strerror(errno.EROFS), "/data/z"), "read-only", 3),
    (PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/data/z"), "permission denied", 3),
    (FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "/data/nothing"), "/data/nothing", 2),
    (ValueError("zoo 'x' has no layout.json;\nconvert it first"), "convert it first", 2),
    (KeyError("epoch"), "epoch", 2),
    (ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379"), "10.0.0.1:6379", 3),
    (OutputError("'/data/z' is locked by another run"), "locked", 3),
    (InputError("negative layer shape"), "negative layer shape", 2),
]


@pytest.mark.parametrize("error,words,exit_code", OS_ERRORS, ids=[repr(e[0])[:40] for e in OS_ERRORS])
def test_user_and_environment_errors_are_one_line_in_both_command_lines(error, words, exit_code, experiment,
                                                                         tmp_path, capsys, monkeypatch):
    import weightspace.zoo.presets

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(weightspace.zoo.presets, "describe_presets", fail)
    assert cli.main(["zoo", "presets"]) == exit_code
    assert words in _one_error_line(capsys)

    monkeypatch.setattr(experiment_cli, "find_zoo", fail)
    assert _run_experiment(experiment, tmp_path) == exit_code
    assert words in _one_error_line(capsys)


def test_a_bug_still_shows_its_traceback(monkeypatch):
    import weightspace.zoo.presets

    def bug(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(weightspace.zoo.presets, "describe_presets", bug)
    with pytest.raises(ZeroDivisionError):
        cli.main(["zoo", "presets"])
