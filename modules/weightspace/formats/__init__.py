"""External zoo formats, each converted once into the weightspace zoo format.

- ``zenodo2021``: the 2021 dataset pickles (`convert_zenodo_2021`), read by a
  restricted unpickler that never runs code from the file;
- ``unterthiner``: the Small CNN Zoo npy/csv files (`convert_unterthiner`),
  TensorFlow layout converted to torch, streamed;
- ``raytune``: ray.tune experiment folders (`convert_raytune`, `export_raytune`);
- ``checkpoints``: a folder of ``.pt`` / ``.safetensors`` state dicts listed in a CSV
  (`convert_checkpoints`, `export_checkpoints`), loaded tensors-only;
- `download` (`published_zoos`): fetch the published zoos' files and convert them.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from weightspace.formats.checkpoints import convert_checkpoints, export_checkpoints, import_checkpoints
from weightspace.formats.legacy_pickle import LegacyPickleError, load_legacy_pickle
from weightspace.formats.published_zoos import DownloadError, download, list_downloads
from weightspace.formats.raytune_dirs import convert_raytune, export_raytune, import_raytune
from weightspace.formats.unterthiner import convert_unterthiner, tf_to_torch, torch_to_tf
from weightspace.formats.zenodo_2021 import convert_zenodo_2021, read_zenodo_2021
from weightspace.io.outputs import check_apart, output_errors, output_lock
from weightspace.zoo.store import Zoo

CONVERTERS: dict[str, Callable[..., Zoo]] = {
    "zenodo2021": convert_zenodo_2021,
    "unterthiner": convert_unterthiner,
    "raytune": convert_raytune,
    "checkpoints": convert_checkpoints,
}


def convert(source_format: str, src: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False,
            **kwargs: Any) -> Zoo:
    """Convert an external zoo at `src` in `source_format` (one of `CONVERTERS`) into a zoo at `out`.

    Raises:
        ValueError: unknown format (the valid ones are listed), or a bad source.
        FileExistsError: `out` exists and `overwrite` is False.
        OutputError: `out` is not a zoo (nor an empty folder), lies inside or contains what is read, another run
            holds its lock, or it cannot be written.
    """
    if source_format not in CONVERTERS:
        raise ValueError(f"unknown zoo format {source_format!r}; choose one of {sorted(CONVERTERS)}")
    check_apart(out, "source", src)
    for option in ("csv", "index_dict", "inputs"):  # files the conversion reads besides the source
        check_apart(out, option.replace("_", " ") + " file", kwargs.get(option))
    with output_errors(out), output_lock(out):  # one conversion into `out` at a time, reading included
        return CONVERTERS[source_format](src, out, overwrite=overwrite, **kwargs)


__all__ = [
    "CONVERTERS", "DownloadError", "LegacyPickleError", "convert", "convert_checkpoints", "convert_raytune",
    "convert_unterthiner", "convert_zenodo_2021", "download", "export_checkpoints", "export_raytune",
    "import_checkpoints", "import_raytune", "list_downloads", "load_legacy_pickle",
    "read_zenodo_2021", "tf_to_torch", "torch_to_tf",
]
