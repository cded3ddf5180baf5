"""Where the file-based tasks' data comes from: mirrors and MD5s of the published files, and the hints to place them.

`ensure_files` makes a task's files available in its folder: it says which
files to place where when they are missing, or fetches them (mirrors in order,
MD5 checked before a file is used) with `weightspace.io.download`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from weightspace.io.download import Resource, download_resource, safe_extract_tar, verify_file
from weightspace.zoo import task_files

__all__ = ["KNOWN_MD5", "RESOURCES", "ensure_cifar10", "ensure_files", "manual_hint", "missing_files_error",
           "verify_known"]


def _mirrored(mirrors: tuple[str, ...], files: dict[str, str]) -> tuple[Resource, ...]:
    return tuple(Resource(name, md5, tuple(m + name for m in mirrors)) for name, md5 in files.items())


_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_SVHN_MIRRORS = ("http://ufldl.stanford.edu/housenumbers/",)

#: Files fetched by ``download=True``, per task.
RESOURCES: dict[str, tuple[Resource, ...]] = {
    "mnist": _mirrored(_MNIST_MIRRORS, {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }),
    "fashion_mnist": _mirrored(_FASHION_MIRRORS, {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }),
    "svhn": _mirrored(_SVHN_MIRRORS, {
        "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
        "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
    }),
    "cifar10": (Resource("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                         ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)),),
}

#: Known MD5s of files as read from disk (``verify=True``), per task and file name.
KNOWN_MD5: dict[str, dict[str, str]] = {
    task: {r.filename: r.md5 for r in res} for task, res in RESOURCES.items()
}
KNOWN_MD5["cifar10"].update({
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
})


def verify_known(task: str, paths: list[Path]) -> None:
    """Check files on disk whose MD5 is known for ``task``; warn about the others.

    Raises:
        ChecksumError: on the first mismatching file (which is left in place).
    """
    known = KNOWN_MD5[task]
    for path in paths:
        if path.name in known:
            verify_file(path, known[path.name])
        else:
            warnings.warn(f"no known checksum for {path}; not verified", stacklevel=3)


def manual_hint(task: str, directory: Path) -> str:
    """One sentence telling where to place ``task``'s files by hand."""
    names = ", ".join(r.filename for r in RESOURCES[task])
    return f"To install by hand, place {names} in {directory.resolve()}"


def missing_files_error(task: str, directory: Path, needed: list[str],
                        missing: list[str]) -> FileNotFoundError:
    """The error for a task whose files are absent: what to place where, and how to fetch it."""
    return FileNotFoundError(
        f"task {task!r} needs these files in {directory.resolve()}: {', '.join(needed)} "
        f"(missing: {', '.join(missing)}). Place them there, or pass download=True to load_task "
        f"(or run `weightspace zoo download {task}`) to fetch them.")


def ensure_files(task: str, directory: Path, needed: list[str], missing: list[str], present: list[Path],
                 download: bool, verify: bool) -> None:
    """Make a task's files available in ``directory``.

    Args:
        task: Key of :data:`RESOURCES`.
        directory: The task's directory.
        needed: File names shown in the "missing files" message.
        missing: Names (as in :data:`RESOURCES`) that are not on disk.
        present: Files already on disk (checked when ``verify``).
        download: Fetch the missing files instead of raising.
        verify: Check ``present`` against :data:`KNOWN_MD5`.

    Raises:
        FileNotFoundError: files missing and ``download`` is False.
        DownloadError, ChecksumError: as `download_resource` / `verify_file`.
    """
    if missing and not download:
        raise missing_files_error(task, directory, needed, missing)
    for resource in RESOURCES[task]:
        if resource.filename in missing:
            download_resource(resource, directory, hint=manual_hint(task, directory))
    if verify:
        verify_known(task, present)


def ensure_cifar10(directory: Path, download: bool, verify: bool) -> None:
    """Make CIFAR-10's python batches available in ``directory/cifar-10-batches-py``.

    A missing batch is unpacked from the archive in ``directory`` (fetched first
    when absent and ``download``); the archive is checked against its MD5 before
    it is unpacked.

    Raises:
        FileNotFoundError: batches missing and ``download`` is False.
        DownloadError, ChecksumError: as `download_resource` / `verify_file`.
    """
    batch_dir = directory / task_files.CIFAR_DIR
    missing = [name for name in task_files.CIFAR_FILES if not (batch_dir / name).is_file()]
    if missing and not download:
        raise missing_files_error("cifar10", batch_dir, list(task_files.CIFAR_FILES), missing)
    if not missing:
        if verify:
            verify_known("cifar10", [batch_dir / name for name in task_files.CIFAR_FILES])
        return
    (resource,) = RESOURCES["cifar10"]
    archive = directory / resource.filename
    hint = (f"To install by hand, place {resource.filename} in {directory.resolve()} "
            f"or its extracted {task_files.CIFAR_DIR}/ folder ({', '.join(task_files.CIFAR_FILES)}) there")
    if archive.is_file():
        verify_file(archive, resource.md5)
    else:
        download_resource(resource, directory, hint=hint)
    safe_extract_tar(archive, directory)
