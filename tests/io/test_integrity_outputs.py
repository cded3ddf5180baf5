"""Output paths: --overwrite replaces only what weightspace wrote, one run per output, errors as one line."""

import argparse
import errno
import json
import os
import pathlib

import numpy as np
import pytest

from weightspace.cli import main
from weightspace.errors import OutputError
from weightspace.io.atomic import append_text
from weightspace.io.outputs import clean_stale, lock_path, output_lock
from weightspace.zoo.generate import generate
from weightspace.zoo.presets import get_preset
from weightspace.zoo.store import Zoo


def user_folder(path: pathlib.Path) -> pathlib.Path:
    """A folder weightspace did not write: ``raw/keep.txt`` and ``notes.md``."""
    (path / "raw").mkdir(parents=True)
    (path / "raw" / "keep.txt").write_text("mine")
    (path / "notes.md").write_text("mine too")
    return path


def assert_untouched(path: pathlib.Path) -> None:
    assert (path / "raw" / "keep.txt").read_text() == "mine" and (path / "notes.md").read_text() == "mine too"
    assert sorted(p.name for p in path.iterdir()) == ["notes.md", "raw"]
    assert not any(p.name.startswith(".") for p in path.parent.iterdir()), "temporary or lock files left behind"


# ------------------------------------------------------------------ --overwrite
def test_generate_overwrite_refuses_a_folder_that_is_not_a_zoo(tmp_path, capsys):
    out = user_folder(tmp_path / "DIR")
    code = main(["zoo", "generate", "--preset", "tetris_seed", "--smoke", "--out", str(out), "--overwrite"])
    assert code != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "raw/" in err and "notes.md" in err  # names what was found
    assert_untouched(out)


def test_export_convert_and_download_refuse_a_folder_that_is_not_theirs(make_zoo, tmp_path):
    from weightspace.formats import convert, download, export_raytune

    zoo = make_zoo()
    export = export_raytune(zoo, tmp_path / "export")
    assert export_raytune(zoo, export, overwrite=True) == export  # its own export is replaced
    out = user_folder(tmp_path / "DIR")
    with pytest.raises(OutputError, match="keep|raw"):
        export_raytune(zoo, out, overwrite=True)
    assert_untouched(out)
    with pytest.raises(OutputError, match="not a weightspace zoo|raw"):
        convert("raytune", export, out, overwrite=True)
    assert_untouched(out)
    with pytest.raises(OutputError, match="weightspace zoo"):
        zoo.save(export, overwrite=True)  # an export is not a zoo either
    user_folder(tmp_path / "root" / "21_mnist_seed")
    with pytest.raises(OutputError, match="raw"):  # refused before any network access
        download("21_mnist_seed", tmp_path / "root", overwrite=True)
    assert_untouched(tmp_path / "root" / "21_mnist_seed")


def test_overwrite_replaces_a_zoo_and_an_empty_folder(make_zoo, tmp_path):
    make_zoo().save(tmp_path / "z")
    make_zoo(seed=1).save(tmp_path / "z", overwrite=True)
    (tmp_path / "empty").mkdir()
    make_zoo().save(tmp_path / "empty", overwrite=True)
    assert Zoo.load(tmp_path / "empty").num_models == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "z"]


def test_experiment_refuses_a_foreign_output_dir_and_resume_of_a_finished_run(tmp_path, capsys):
    from weightspace.cli.experiment_run import _refuse_overwrite, run_script
    from weightspace.pipeline.experiment import Experiment

    experiment = Experiment(name="t", preset="tetris_seed")
    out = user_folder(tmp_path / "DIR")
    for flags in ([], ["--overwrite"]):
        code = run_script(experiment, "baselines", tmp_path / "script.py",
                          ["--smoke-test", "--output-dir", str(out), "--datasets", str(tmp_path / "data"), *flags])
        assert code != 0 and "notes.md" in capsys.readouterr().err
        assert_untouched(out)

    done = tmp_path / "done"
    done.mkdir()
    (done / "experiment.json").write_text(json.dumps({"format": "weightspace-experiment", "name": "t"}))
    (done / "results.json").write_text("{}")
    (done / "report.md").write_text("# report")  # finished, report included: --resume has nothing left to do
    resume = argparse.Namespace(overwrite=False, resume=True)
    with pytest.raises(FileExistsError, match="--overwrite"):
        _refuse_overwrite(done, "representation", resume)
    (done / "tune").mkdir()
    (done / "tune" / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="neither resumes nor deletes"):  # --overwrite clears only a ray.tune run
        _refuse_overwrite(done, "representation", argparse.Namespace(overwrite=True, resume=False))
    assert (done / "tune" / "keep.txt").exists()


def test_a_run_under_a_storage_uri_is_refused_replaced_or_kept_like_a_local_one(tmp_path):
    from weightspace.cli.experiment_run import _refuse_overwrite
    from weightspace.pipeline import storage
    from weightspace.pipeline.output_folder import mark_output_dir
    from weightspace.pipeline.run_record import RECORD_FILE, Recorder

    out = tmp_path / "out"
    mark_output_dir(out, "t")
    uri = f"file://{tmp_path / 'bucket'}"
    run = tmp_path / "bucket" / "out"  # <storage>/<output folder name>
    run.mkdir(parents=True)
    (run / "tuner.pkl").write_bytes(b"ray's")
    for flags in ({"overwrite": True, "resume": False}, {"overwrite": False, "resume": True}):
        with pytest.raises(OutputError, match="neither resumes nor deletes"):  # not started by this folder
            _refuse_overwrite(out, "representation", argparse.Namespace(**flags, storage=uri))
        assert (run / "tuner.pkl").exists()

    recorder = Recorder.start(out / RECORD_FILE, storage.join(uri, "out"))  # as run_tuner starts a run
    storage.write_json(storage.join(uri, f"out/{storage.CONFIG_FILE}"), {"run_id": recorder.run_id})
    recorder.scan_file(storage.TUNER_FILE)  # --resume verifies the run against its record before anything else
    fresh = argparse.Namespace(overwrite=False, resume=False, storage=uri)
    with pytest.raises(FileExistsError, match="--resume"):  # an unfinished run in the storage
        _refuse_overwrite(out, "representation", fresh)
    _refuse_overwrite(out, "representation", argparse.Namespace(overwrite=False, resume=True, storage=uri))
    assert (run / "tuner.pkl").exists()  # --resume keeps it
    _refuse_overwrite(out, "representation", argparse.Namespace(overwrite=True, resume=False, storage=uri))
    assert not run.exists() and not (out / RECORD_FILE).exists()  # --overwrite deletes it, and its record
    run.mkdir()
    (run / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="neither resumes nor deletes"):  # and only a run it started
        _refuse_overwrite(out, "representation", argparse.Namespace(overwrite=True, resume=False, storage=uri))
    assert (run / "keep.txt").exists()


# ------------------------------------------------------------------- the lock
def test_a_second_run_on_a_locked_output_refuses_and_writes_nothing(make_zoo, tmp_path):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "z"
    fd = os.open(lock_path(out), os.O_RDWR | os.O_CREAT)  # another run's lock (another open file: flock conflicts)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"4242\n")
        with pytest.raises(OutputError, match=r"pid 4242.*\.z\.lock"):
            generate(get_preset("tetris_seed", smoke=True), out, progress=False)
        with pytest.raises(OutputError, match="lock"):
            make_zoo().save(out)
    finally:
        os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".z.lock"]
    make_zoo().save(out)  # released: the next run goes ahead and removes the lock file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["z"]


# -------------------------------------------------------------- environment
def _refuse_under(root: pathlib.Path, monkeypatch, code: int) -> None:
    """Make every mkdir and open for writing under `root` fail with `code`, as a read-only or full disk would."""
    mkdir, open_ = pathlib.Path.mkdir, os.open

    def refusing_mkdir(self, *args, **kwargs):
        if str(self).startswith(str(root)):
            raise OSError(code, os.strerror(code), str(self))
        return mkdir(self, *args, **kwargs)

    def refusing_open(path, flags, *args, **kwargs):
        if str(path).startswith(str(root)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(code, os.strerror(code), str(path))
        return open_(path, flags, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", refusing_mkdir)
    monkeypatch.setattr(os, "open", refusing_open)


@pytest.mark.parametrize("code, words", [(errno.EROFS, "read-only"), (errno.EACCES, "read-only"),
                                         (errno.ENOSPC, "no space left")])
def test_unwritable_output_is_one_line_and_a_nonzero_exit(tmp_path, monkeypatch, capsys, code, words):
    _refuse_under(tmp_path / "ro", monkeypatch, code)
    status = main(["zoo", "generate", "--preset", "tetris_seed", "--smoke", "--out", str(tmp_path / "ro" / "z")])
    err = capsys.readouterr().err.strip()
    assert status != 0 and len(err.splitlines()) == 1 and words in err, err
    assert "Traceback" not in err


def test_full_disk_during_save_names_the_cause_and_leaves_nothing(make_zoo, tmp_path, monkeypatch):
    def short_write(*args, **kwargs):
        raise OSError("1200 requested and 992 written")  # numpy's words for a full disk, errno lost

    monkeypatch.setattr(np, "save", short_write)
    with pytest.raises(OutputError, match="no space left on device"):
        make_zoo().save(tmp_path / "z")
    assert list(tmp_path.iterdir()) == []


def test_out_under_a_file_is_refused(make_zoo, tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    with pytest.raises(OutputError, match="afile' is a file"):
        make_zoo().save(tmp_path / "afile" / "sub")
    code = main(["zoo", "generate", "--preset", "tetris_seed", "--smoke", "--out", str(tmp_path / "afile" / "sub")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "is a file" in err


# ---------------------------------------------------------------- leftovers
def test_leftovers_of_an_interrupted_save_are_cleaned_and_reported(make_zoo, tmp_path, capsys):
    make_zoo().save(tmp_path / "z")
    (tmp_path / ".z.tmp-0123abcd").mkdir()  # a kill inside Zoo.save
    (tmp_path / ".z.tmp-0123abcd" / "weights.npy").write_bytes(b"half")
    (tmp_path / ".z.old-89abcdef").mkdir()  # a kill between the renames of --overwrite
    (tmp_path / ".z.tmpfoo").mkdir()  # not a name weightspace gives: kept
    make_zoo(seed=1).save(tmp_path / "z", overwrite=True)
    err = capsys.readouterr().err
    assert ".z.tmp-0123abcd" in err and ".z.old-89abcdef" in err and "removed" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".z.tmpfoo", "z"]


def test_an_overwrite_cut_between_its_renames_gets_the_old_zoo_back(make_zoo, tmp_path, capsys):
    make_zoo().save(tmp_path / "z")
    os.replace(tmp_path / "z", tmp_path / ".z.old-0123abcd")  # the first rename happened, the second did not
    with output_lock(tmp_path / "z"):
        clean_stale(tmp_path / "z")
    assert "restored" in capsys.readouterr().err
    assert Zoo.load(tmp_path / "z").num_models == 20


def test_append_text_keeps_whole_lines(tmp_path):
    for i in range(3):
        append_text(tmp_path / "history.jsonl", json.dumps({"epoch": i}) + "\n")
    assert [json.loads(line)["epoch"] for line in (tmp_path / "history.jsonl").read_text().splitlines()] == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["history.jsonl"]
