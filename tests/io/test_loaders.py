"""Loaders that a file cannot bend: restricted unpickling, damaged archives, verified downloads (no network).

Malicious pickles are written by hand, opcode by opcode, so each test shows
exactly what a crafted file does; downloads are served by a fake ``urlopen``.
"""

import base64
import hashlib
import io
import json
import lzma
import pickle
import struct
import tarfile
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest
import torch

from tests.formats.test_formats import save_legacy, simclr_split, unterthiner_models, write_unterthiner
from weightspace.cli import main
from weightspace.errors import InputError, WeightspaceError
from weightspace.formats import download, legacy_pickle, read_zenodo_2021
from weightspace.formats.legacy_pickle import ALLOWED_GLOBALS, LegacyPickleError, load_legacy_pickle
from weightspace.formats.published_zoos import ZENODO_RECORD_URL, ZENODO_URL
from weightspace.io import download as io_download
from weightspace.io.download import ChecksumError, DownloadError
from weightspace.zoo import task_files


# ------------------------------------------------------------ pickle opcodes
def op_global(dotted: str) -> bytes:
    module, name = dotted.rsplit(".", 1)
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def op_str(text: str) -> bytes:
    return b"X" + struct.pack("<I", len(text.encode())) + text.encode()


def op_int(value: int) -> bytes:
    return b"I" + str(value).encode() + b"\n"


PROTO, EMPTY_DICT, SETITEM, BUILD, POP, STOP = b"\x80\x02", b"}", b"s", b"b", b"0", b"."
MARK, TUPLE, TUPLE1, TUPLE2, REDUCE, NONE, FALSE = b"(", b"t", b"\x85", b"\x86", b"R", b"N", b"\x89"
EMPTY_LIST, APPEND = b"]", b"a"


def dtype_op(code: str, copy: bool = True) -> bytes:
    """``numpy.dtype(code, False, copy)``, as numpy pickles a dtype."""
    return op_global("numpy.dtype") + MARK + op_str(code) + FALSE + (b"\x88" if copy else FALSE) + TUPLE + REDUCE


def empty_array_op(shape: tuple, code: str) -> bytes:
    """numpy's ``_reconstruct(ndarray, shape, code)``."""
    return (op_global("numpy.core.multiarray._reconstruct") + MARK + op_global("numpy.ndarray")
            + MARK + b"".join(op_int(n) for n in shape) + TUPLE + op_str(code) + TUPLE + REDUCE)


def torch_zip(path, pkl: bytes, storages: dict | None = None):
    """A torch.save-shaped zip holding `pkl` as its data.pkl (members stored, as torch writes them)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        for key, data in (storages or {}).items():
            z.writestr(f"archive/data/{key}", data)
    return path


def clean_file(path):
    torch.save({"w": torch.arange(64, dtype=torch.float32)}, path)
    return path


# ------------------------------------------------- a file cannot change module state
@pytest.mark.parametrize("form", ["dict state", "slot state"])
def test_a_storage_class_build_leaves_a_later_clean_file_decoding_as_float32(tmp_path, form):
    state = (EMPTY_DICT + op_str("dtype") + dtype_op("f8") + SETITEM)
    if form == "slot state":
        state = NONE + state + TUPLE2
    evil = torch_zip(tmp_path / "evil.pt", PROTO + op_global("torch.FloatStorage") + state + BUILD + POP
                     + EMPTY_DICT + STOP)
    with pytest.raises(LegacyPickleError, match="BUILD"):
        load_legacy_pickle(evil)
    w = load_legacy_pickle(clean_file(tmp_path / "clean.pt"))["w"]
    assert w.dtype == np.float32 and w.tolist() == list(range(64))


@pytest.mark.parametrize("name", ALLOWED_GLOBALS)
def test_no_allowed_global_accepts_state(tmp_path, name):
    pkl = PROTO + op_global(name) + EMPTY_DICT + op_str("legacy_name") + op_str("x") + SETITEM + BUILD + STOP
    with pytest.raises(LegacyPickleError, match="BUILD on the global"):
        load_legacy_pickle(torch_zip(tmp_path / "evil.pt", pkl))


def test_dtypes_are_fresh_copies_never_numpy_shared_ones(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(PROTO + dtype_op("f8", copy=False) + STOP)
    with open(path, "rb") as fh:
        loaded = task_files.ArrayOnlyUnpickler(fh, path).load()
    assert loaded == np.dtype("f8") and loaded is not np.dtype("f8")


NUMPY_OBJECTS = [np.arange(5.0), np.arange(6).reshape(2, 3), np.array([True, False]), np.array(["ab", "cde"]),
                 np.array(["x", 1, None], dtype=object), np.arange(4, dtype=">f4"), np.array(3.5), np.zeros((0, 3)),
                 np.asfortranarray(np.arange(6.0).reshape(2, 3)), np.float64(1.5), np.int32(7), np.str_("hi"),
                 np.dtype("<U3"), np.dtype(">i2")]


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_the_restricted_unpickler_reads_numpy_as_pickle_does(tmp_path, protocol):
    data = pickle.dumps(NUMPY_OBJECTS, protocol=protocol)
    ours = load_legacy_pickle(torch_zip(tmp_path / "numpy.pt", data))
    for want, got in zip(pickle.loads(data), ours, strict=True):
        assert type(got) is type(want)
        if isinstance(want, np.dtype):
            assert got.str == want.str
        else:
            assert np.asarray(got).dtype.str == np.asarray(want).dtype.str
            assert np.asarray(got).shape == np.shape(want) and np.asarray(got).tolist() == np.asarray(want).tolist()
            assert np.asarray(got).flags.f_contiguous == np.asarray(want).flags.f_contiguous


# ------------------------------------------------------- sizes bounded by the file
ARRAY_BOMBS = {
    # an array far larger than the file (today: a 1 TB allocation)
    "larger than the file": empty_array_op((10**12,), "u1") + STOP,
    # an object array whose list is shorter than its shape: numpy's own __setstate__ reads past it (a crash)
    "short object list": (empty_array_op((0,), "O") + MARK + op_int(1) + MARK + op_int(3) + TUPLE + dtype_op("O")
                          + FALSE + EMPTY_LIST + op_int(1) + APPEND + TUPLE + BUILD + STOP),
    "a subarray dtype": dtype_op("(1000000000,)f8") + STOP,
}


@pytest.mark.parametrize("bomb", ARRAY_BOMBS)
def test_arrays_and_dtypes_are_bounded_by_the_file(tmp_path, bomb):
    with pytest.raises(LegacyPickleError, match="numpy"):
        load_legacy_pickle(torch_zip(tmp_path / "bomb.pt", PROTO + ARRAY_BOMBS[bomb]))
    batch = tmp_path / "data_batch_1"
    batch.write_bytes(PROTO + ARRAY_BOMBS[bomb])
    with pytest.raises(InputError, match="data_batch_1.*numpy"):
        task_files.read_cifar_batch(batch)


def test_malicious_cifar_batch_is_an_input_error_naming_the_file(tmp_path):
    batch = tmp_path / "data_batch_1"
    batch.write_bytes(PROTO + op_global("os.system") + op_str("true") + TUPLE1 + REDUCE + STOP)
    with pytest.raises(InputError, match=r"data_batch_1: refusing to load the global os\.system"):
        task_files.read_cifar_batch(batch)


# ------------------------------------------------------------ damaged zip members
def _rewrite(src, dst, compression: dict):
    """Copy a zip, writing the members named in `compression` with that zip method."""
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for info in a.infolist():
            method = next((m for suffix, m in compression.items() if info.filename.endswith(suffix)), None)
            b.writestr(info.filename, a.read(info), compress_type=method or zipfile.ZIP_STORED)
    return dst


def _patch(path, member: str, *, flag: int = 0, method: int | None = None, garbage_at: int | None = None):
    """Set a flag bit, the method, or garbage in the data of one member (local and central headers both)."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    local = info.header_offset
    central = next(i for i in range(len(raw)) if raw[i:i + 4] == b"PK\x01\x02"
                   and raw[i + 46:i + 46 + len(member)] == member.encode())
    raw[local + 6] |= flag
    raw[central + 8] |= flag
    if method is not None:
        struct.pack_into("<H", raw, local + 8, method)
        struct.pack_into("<H", raw, central + 10, method)
    if garbage_at is not None:
        start = local + 30 + struct.unpack_from("<H", raw, local + 26)[0] + struct.unpack_from("<H", raw, local + 28)[0]
        raw[start + garbage_at:start + garbage_at + 16] = b"\xff" * 16
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("damage", ["compressed storage", "compressed data.pkl", "encrypted flag",
                                    "unknown compression", "corrupt deflate", "corrupt lzma"])
def test_damaged_or_compressed_zip_members_are_refused(tmp_path, damage):
    clean = clean_file(tmp_path / "clean.pt")
    path = tmp_path / "damaged.pt"
    if damage == "compressed storage":  # torch.save never compresses; a small file could expand to gigabytes
        _rewrite(clean, path, {"/data/0": zipfile.ZIP_DEFLATED})
    elif damage == "compressed data.pkl":
        _rewrite(clean, path, {"data.pkl": zipfile.ZIP_DEFLATED})
    elif damage == "encrypted flag":
        _patch(_rewrite(clean, path, {}), "clean/data.pkl", flag=0x1)
    elif damage == "unknown compression":
        _patch(_rewrite(clean, path, {}), "clean/data.pkl", method=99)
    elif damage == "corrupt deflate":
        _patch(_rewrite(clean, path, {"/data/0": zipfile.ZIP_DEFLATED}), "clean/data/0", garbage_at=0)
    else:
        _patch(_rewrite(clean, path, {"/data/0": zipfile.ZIP_LZMA}), "clean/data/0", garbage_at=9)
    with pytest.raises(LegacyPickleError, match="damaged.pt"):
        load_legacy_pickle(path)


# ------------------------------------------------------- recursion and memory errors
def test_a_deeply_nested_label_is_a_legacy_pickle_error(tmp_path):
    ds = simclr_split([0], [1, 2], np.random.default_rng(0))
    ds.labels_in[0] = "NESTED_PLACEHOLDER"
    path = save_legacy({"trainset": ds}, tmp_path / "src.pt")
    nested = EMPTY_LIST * 100_000 + APPEND * 99_999  # [[[[...]]]], 100000 deep: str() of it recurses
    with zipfile.ZipFile(path) as a, zipfile.ZipFile(tmp_path / "nested.pt", "w") as b:
        for info in a.infolist():
            body = a.read(info)
            if info.filename.endswith("data.pkl"):
                assert body.count(op_str("NESTED_PLACEHOLDER")) == 1
                body = body.replace(op_str("NESTED_PLACEHOLDER"), nested)
            b.writestr(info, body)
    with pytest.raises(LegacyPickleError, match=r"labels_in\[0\] is a list, expected a string"):
        read_zenodo_2021(tmp_path / "nested.pt")


@pytest.mark.parametrize("error", [MemoryError, RecursionError])
def test_memory_and_recursion_errors_become_legacy_pickle_errors(tmp_path, monkeypatch, error):
    def fail(*args, **kwargs):
        raise error()

    monkeypatch.setattr(legacy_pickle._StorageReader, "get", fail)
    with pytest.raises(LegacyPickleError, match="clean.pt"):
        load_legacy_pickle(clean_file(tmp_path / "clean.pt"))


# ------------------------------------------------------------------ archives
def _tar_xz(path, payload: bytes):
    with tarfile.open(path, "w:xz") as tar:
        info = tarfile.TarInfo("mnist/weights.npy")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return path


def test_a_corrupt_tar_xz_is_a_download_error(tmp_path):
    archive = _tar_xz(tmp_path / "mnist.tar.xz", np.random.default_rng(0).bytes(1 << 16))
    raw = bytearray(archive.read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 64] = b"\x00" * 64
    archive.write_bytes(bytes(raw))
    with pytest.raises(lzma.LZMAError):  # what tarfile itself raises
        with tarfile.open(archive, "r:*") as tar:
            tar.getmembers()
    with pytest.raises(DownloadError, match="mnist.tar.xz.*corrupt"):
        io_download.safe_extract_tar(archive, tmp_path / "out")


# ------------------------------------------------------------------ downloads
class FakeResponse(io.BytesIO):
    headers: dict = {}


class FakeServer:
    """Stands in for ``urllib.request.urlopen``: URL -> (body, extra headers); records what was asked."""

    def __init__(self, routes: dict):
        self.routes, self.seen = routes, []

    def __call__(self, request, timeout=None):
        url = getattr(request, "full_url", request)
        self.seen.append(url)
        if url not in self.routes:
            raise urllib.error.URLError("no route (a test server)")
        body, headers = self.routes[url]
        response = FakeResponse(body)
        response.headers = {"Content-Length": str(len(body)), **headers}
        return response


def zenodo_record(file: str, body: bytes) -> bytes:
    return json.dumps({"id": 5645138, "files": [
        {"key": "dataset_01_ablations.pt", "checksum": "md5:" + "0" * 32, "size": 1},
        {"key": file, "checksum": "md5:" + hashlib.md5(body).hexdigest(), "size": len(body)}]}).encode()


@pytest.fixture
def tetris_bytes(tmp_path):
    sets = {"trainset": simclr_split([0, 1], [1, 2], np.random.default_rng(0)),
            "testset": simclr_split([2], [1, 2], np.random.default_rng(1))}
    return save_legacy(sets, tmp_path / "src.pt").read_bytes()


def _serve_zenodo(monkeypatch, published: bytes, served: bytes) -> FakeServer:
    file = "dataset_11_tetris_seed.pt"
    server = FakeServer({ZENODO_RECORD_URL: (zenodo_record(file, published), {}),
                         ZENODO_URL.format(file=file): (served, {})})
    monkeypatch.setattr(urllib.request, "urlopen", server)
    return server


def test_a_zenodo_download_that_differs_from_the_record_md5_is_refused_and_deleted(tmp_path, monkeypatch,
                                                                                    tetris_bytes):
    served = tetris_bytes[:-1] + bytes([tetris_bytes[-1] ^ 1])  # one bit flipped on the way
    _serve_zenodo(monkeypatch, tetris_bytes, served)
    with pytest.raises(ChecksumError, match=r"MD5 .* Zenodo record 5645138 says .*deleted"):
        download("11_tetris_seed", tmp_path / "datasets")
    assert [p.name for p in (tmp_path / "datasets" / "raw").rglob("*")] == []


def test_a_zenodo_download_is_verified_and_reverified_before_reuse(tmp_path, monkeypatch, tetris_bytes):
    server = _serve_zenodo(monkeypatch, tetris_bytes, tetris_bytes)
    file_url = ZENODO_URL.format(file="dataset_11_tetris_seed.pt")
    zoo = download("11_tetris_seed", tmp_path / "datasets")
    assert server.seen == [ZENODO_RECORD_URL, file_url]  # the MD5 is read with the record, at download time
    assert "Zenodo record 5645138" in zoo.info["provenance"]["checksum"] and zoo.num_samples == 6
    raw = tmp_path / "datasets" / "raw" / "dataset_11_tetris_seed.pt"
    assert (raw.parent / (raw.name + ".sha256")).read_text().split()[0] == hashlib.sha256(tetris_bytes).hexdigest()
    download("11_tetris_seed", tmp_path / "datasets", overwrite=True)  # intact: checked, reused, not fetched
    assert server.seen.count(file_url) == 1
    raw.write_bytes(tetris_bytes[:100] + b"\x00" + tetris_bytes[101:])  # damaged on disk
    with pytest.warns(UserWarning, match="deleted and is fetched again"):
        download("11_tetris_seed", tmp_path / "datasets", overwrite=True)
    assert server.seen.count(file_url) == 2 and raw.read_bytes() == tetris_bytes
    server.routes.pop(ZENODO_RECORD_URL)  # offline: the SHA-256 kept at download still vouches for the file
    zoo = download("11_tetris_seed", tmp_path / "datasets", overwrite=True)
    assert "unreachable" in zoo.info["provenance"]["checksum"] and server.seen.count(file_url) == 2


def test_a_hand_placed_zenodo_file_is_checked_against_the_record_and_left_in_place(tmp_path, monkeypatch,
                                                                                   tetris_bytes):
    _serve_zenodo(monkeypatch, tetris_bytes[:-1], tetris_bytes)
    raw = tmp_path / "datasets" / "raw" / "dataset_11_tetris_seed.pt"
    raw.parent.mkdir(parents=True)
    raw.write_bytes(tetris_bytes)
    with pytest.raises(ChecksumError, match="left in place"):
        download("11_tetris_seed", tmp_path / "datasets")
    assert raw.read_bytes() == tetris_bytes


SMALLCNN = "https://storage.googleapis.com/gresearch/smallcnnzoo-dataset/mnist.tar.xz"


@pytest.mark.parametrize("fault", ["short transfer", "server md5", "corrupt archive"])
def test_a_bad_small_cnn_zoo_download_is_refused_and_deleted(tmp_path, monkeypatch, fault):
    rows, meta = unterthiner_models(1)
    src = write_unterthiner(tmp_path / "build" / "mnist", rows, meta)
    with tarfile.open(tmp_path / "mnist.tar.xz", "w:xz") as tar:
        tar.add(src, arcname="mnist")
    body = (tmp_path / "mnist.tar.xz").read_bytes()
    headers = {}
    if fault == "short transfer":
        headers = {"Content-Length": str(len(body) + 10)}
    elif fault == "server md5":
        headers = {"x-goog-hash": "crc32c=AAAAAA==, md5=" + "A" * 22 + "=="}
    else:
        body = body[:len(body) // 2] + b"\x00" * 64 + body[len(body) // 2 + 64:]
    monkeypatch.setattr(urllib.request, "urlopen", FakeServer({SMALLCNN: (body, headers)}))
    match = {"short transfer": "transfer ended", "server md5": "x-goog-hash", "corrupt archive": "corrupt"}[fault]
    with pytest.raises(DownloadError, match=match):
        download("unterthiner_mnist", tmp_path / "datasets")
    assert not any(p.is_file() for p in (tmp_path / "datasets" / "raw").rglob("*"))


def serve_small_cnn_zoo(tmp_path, monkeypatch) -> tuple["FakeServer", list]:
    """A fake storage.googleapis.com serving a one-model ``mnist.tar.xz`` with its MD5 header: (server, rows)."""
    rows, meta = unterthiner_models(1)
    src = write_unterthiner(tmp_path / "build" / "mnist", rows, meta)
    with tarfile.open(tmp_path / "mnist.tar.xz", "w:xz") as tar:
        tar.add(src, arcname="mnist")
    body = (tmp_path / "mnist.tar.xz").read_bytes()
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    server = FakeServer({SMALLCNN: (body, {"x-goog-hash": f"crc32c=AAAAAA==, md5={md5}"})})
    monkeypatch.setattr(urllib.request, "urlopen", server)
    return server, rows


def test_a_small_cnn_zoo_archive_is_checked_against_its_recorded_sha256(tmp_path, monkeypatch):
    server, rows = serve_small_cnn_zoo(tmp_path, monkeypatch)
    download("unterthiner_mnist", tmp_path / "datasets")
    raw = tmp_path / "datasets" / "raw" / "mnist.tar.xz"
    body = (tmp_path / "mnist.tar.xz").read_bytes()
    raw.write_bytes(body + b"\x00")
    with pytest.warns(UserWarning, match="SHA-256 .* was expected; it was deleted and is fetched again"):
        zoo = download("unterthiner_mnist", tmp_path / "datasets", overwrite=True)
    assert len(server.seen) == 2 and raw.read_bytes() == body
    np.testing.assert_array_equal(np.asarray(zoo.weights), rows)


def test_zoo_generate_download_without_a_network_is_one_line(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(io_download, "fetch_url", offline)
    code = main(["zoo", "generate", "--preset", "mnist_seed", "--smoke", "--out", str(tmp_path / "zoo"),
                 "--data-root", str(tmp_path / "data"), "--download", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("weightspace:")]
    assert len(lines) == 1 and "could not download" in lines[0] and "network" in lines[0]
    assert issubclass(DownloadError, WeightspaceError)
