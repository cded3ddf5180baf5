"""Unpacking an archive replaces only what weightspace extracted: a user's file in the way survives (no network).

The Small CNN Zoo download unpacks into ``<root>/raw/<name>``; the CIFAR-10
task data unpacks ``cifar-10-batches-py/`` beside its archive. Both replace a
folder only when it is empty or carries weightspace's extraction marker.
"""

import io
import json
import tarfile

import numpy as np
import pytest

from tests.io.test_loaders import serve_small_cnn_zoo
from weightspace.cli import main
from weightspace.errors import OutputError
from weightspace.formats import download
from weightspace.io import download as io_download
from weightspace.io.download import DownloadError
from weightspace.io.outputs import EXTRACTION_MARKER


@pytest.fixture
def small_cnn_server(tmp_path, monkeypatch):
    """A fake storage.googleapis.com serving a one-model ``mnist.tar.xz``; returns (server, rows)."""
    return serve_small_cnn_zoo(tmp_path, monkeypatch)


def _tar(path, files: dict):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_users_file_in_the_raw_extraction_folder_survives_a_download(tmp_path, small_cnn_server):
    server, _ = small_cnn_server
    unpacked = tmp_path / "datasets" / "raw" / "unterthiner_mnist"
    unpacked.mkdir(parents=True)
    (unpacked / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"refusing to replace .*unterthiner_mnist.*keep\.txt"):
        download("unterthiner_mnist", tmp_path / "datasets")
    assert (unpacked / "keep.txt").read_text() == "mine" and server.seen == []  # refused before downloading


def test_a_users_file_in_the_raw_extraction_folder_is_refused_in_one_line(tmp_path, small_cnn_server, capsys):
    unpacked = tmp_path / "datasets" / "raw" / "unterthiner_mnist"
    unpacked.mkdir(parents=True)
    (unpacked / "keep.txt").write_text("mine")
    code = main(["zoo", "download", "unterthiner_mnist", "--root", str(tmp_path / "datasets"), "--overwrite"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("weightspace:") and "keep.txt" in lines[0]
    assert (unpacked / "keep.txt").read_text() == "mine"


def test_an_extraction_that_weightspace_wrote_is_marked_and_replaced(tmp_path, small_cnn_server):
    server, rows = small_cnn_server
    download("unterthiner_mnist", tmp_path / "datasets")
    raw = tmp_path / "datasets" / "raw"
    marker = json.loads((raw / "unterthiner_mnist" / EXTRACTION_MARKER).read_text())
    sha = (raw / "mnist.tar.xz.sha256").read_text().split()[0]
    assert marker == {"format": "weightspace-extraction", "archive": "mnist.tar.xz", "sha256": sha}
    (raw / "unterthiner_mnist" / "mnist" / "stale.npy").write_bytes(b"")  # inside a folder of ours: replaced
    zoo = download("unterthiner_mnist", tmp_path / "datasets", overwrite=True)
    assert not (raw / "unterthiner_mnist" / "mnist" / "stale.npy").exists() and len(server.seen) == 1
    np.testing.assert_array_equal(np.asarray(zoo.weights), rows)
    assert sorted(p.name for p in raw.iterdir()) == ["mnist.tar.xz", "mnist.tar.xz.sha256", "unterthiner_mnist"]


def test_a_corrupt_archive_leaves_the_earlier_extraction_whole(tmp_path):
    dest = tmp_path / "raw" / "x"
    io_download.extract_tar(_tar(tmp_path / "good.tar.gz", {"a/w.npy": b"old"}), dest)
    bad = tmp_path / "bad.tar.gz"
    good = _tar(tmp_path / "new.tar.gz", {"a/w.npy": b"new" * 1000}).read_bytes()
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(DownloadError, match="corrupt"):
        io_download.extract_tar(bad, dest)
    assert (dest / "a" / "w.npy").read_bytes() == b"old"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["x"]  # no temporary folder, no lock left


def test_safe_extract_tar_keeps_a_users_folder_of_the_same_name(tmp_path):
    archive = _tar(tmp_path / "cifar.tar.gz", {"cifar-10-batches-py/data_batch_1": b"batch"})
    dest = tmp_path / "cifar10"
    (dest / "cifar-10-batches-py").mkdir(parents=True)
    (dest / "cifar-10-batches-py" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"refusing to replace .*cifar-10-batches-py.*notes\.txt"):
        io_download.safe_extract_tar(archive, dest)
    assert [p.name for p in (dest / "cifar-10-batches-py").iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in dest.iterdir()) == ["cifar-10-batches-py"]  # no staging folder, no lock left


def test_safe_extract_tar_replaces_its_own_extraction_and_keeps_a_users_file(tmp_path):
    dest = tmp_path / "cifar10"
    io_download.safe_extract_tar(_tar(tmp_path / "one.tar.gz", {"d/x": b"1", "top.txt": b"same"}), dest)
    assert json.loads((dest / "d" / EXTRACTION_MARKER).read_text())["archive"] == "one.tar.gz"
    io_download.safe_extract_tar(_tar(tmp_path / "two.tar.gz", {"d/y": b"2", "top.txt": b"same"}), dest)
    assert sorted(p.name for p in (dest / "d").iterdir()) == [EXTRACTION_MARKER, "y"]
    (dest / "top.txt").write_text("edited by hand")
    with pytest.raises(OutputError, match=r"top\.txt"):
        io_download.safe_extract_tar(_tar(tmp_path / "three.tar.gz", {"d/z": b"3", "top.txt": b"same"}), dest)
    assert (dest / "top.txt").read_text() == "edited by hand" and (dest / "d" / "y").exists()  # none of it moved
