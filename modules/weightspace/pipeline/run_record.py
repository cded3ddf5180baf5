"""What `--resume` trusts: the record an output folder keeps of the ray.tune run it started.

ray.tune restores a run by unpickling files it finds where the run lives (``tuner.pkl``, the
experiment and searcher state, dict checkpoints), and unpickling runs code. That location may be
storage other people and programs write to (``--storage``). So the output folder, which the user
owns, keeps a record (`RECORD_FILE`) of the run it started:

- the run's identity, a random id also written into the run's ``experiment_config.json``: a run
  location is weightspace's to resume or delete only when the two agree;
- the SHA-256 digest of every file at the location that ray may unpickle, taken each time ray
  saves them (`Recorder`, driven by a ray.tune callback and after ``Tuner.fit``).

`verify` refuses a location holding any such file the record does not know, or whose content
differs from every digest recorded for it, and names the file. Files ray never unpickles (result
logs, the run's JSON, the learner's weights-only ``learner.pt``) are not recorded and may change.
The record itself is trusted like the output folder that holds it.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from weightspace.errors import InputError
from weightspace.io.atomic import write_json
from weightspace.pipeline import storage

RECORD_FILE = "tune_record.json"  # in the experiment's output folder
RECORD_FORMAT = "weightspace-tune-record"
CHECKPOINT_FILE = "learner.pt"  # a trial's checkpoint, loaded with torch.load(weights_only=True)
# the fix named when the record cannot be read: weightspace writes it whole, so something else changed it
RECORD_DAMAGED = ("weightspace never writes such a record, so it cannot show which run this output folder started; "
                  "remove the output folder (and its run) yourself, or choose another output folder")
_TRANSIENT = ".tmp"  # ray writes some state under a temporary name first, then renames it
_KEEP = 4  # digests kept per file: storage may still hold an earlier save while a newer one uploads
# written by ray or weightspace and never unpickled
_LOGS = {"result.json", "progress.csv", "params.json", "error.txt", ".validate_storage_marker", storage.CONFIG_FILE}


class UntrustedRunError(InputError):
    """A run location holds files the output folder's record does not vouch for."""


def unpicklable(relative: str) -> bool:
    """Whether ray may unpickle the file at `relative` (a '/'-separated path inside a run location)."""
    parts = relative.split("/")
    if parts[-1] in _LOGS or parts[-1].startswith("events.out.tfevents."):
        return False
    is_checkpoint = len(parts) == 3 and parts[1].startswith("checkpoint_") and parts[2] == CHECKPOINT_FILE
    return not is_checkpoint


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Recorder:
    """The record of one run, kept up to date in ``<output folder>/tune_record.json``."""

    def __init__(self, path: str | os.PathLike, location: str, run_id: str, files: dict[str, list[str]] | None = None):
        self.path, self.location, self.run_id = Path(path), storage.normalize(location), run_id
        self.files: dict[str, list[str]] = files or {}
        self._seen: dict[str, tuple[int, int]] = {}  # local file -> (mtime_ns, size) when last digested

    @classmethod
    def start(cls, path: str | os.PathLike, location: str) -> "Recorder":
        """A new record with a fresh run id, saved at once."""
        recorder = cls(path, location, uuid.uuid4().hex)
        recorder.save()
        return recorder

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Recorder | None":
        """The record at `path`, or None when there is none or it is not a record."""
        data = storage.read_json(path, RECORD_DAMAGED) if Path(path).is_file() else {}
        if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
            return None
        files = data.get("files")
        if not isinstance(files, dict):
            files = {}
        location = str(data.get("location", ""))
        if location and not storage.is_uri(location) and not Path(location).is_absolute():
            location = str(Path(path).resolve().parent / location)  # a run inside the output folder moves with it
        return cls(path, location, str(data.get("run_id", "")),
                   {str(k): [str(d) for d in v] for k, v in files.items() if isinstance(v, list)})

    def save(self) -> None:
        """Write the record, keeping the digests another `Recorder` of the same run saved meanwhile."""
        saved = Recorder.load(self.path)
        if saved is not None and saved.run_id == self.run_id:
            for relative, digests in saved.files.items():
                mine = self.files.setdefault(relative, [])
                mine[:0] = [d for d in digests if d not in mine]
                del mine[:-_KEEP]
        location = self.location
        folder = self.path.resolve().parent
        if not storage.is_uri(location) and folder in Path(location).parents:
            location = Path(location).relative_to(folder).as_posix()
        write_json(self.path, {"format": RECORD_FORMAT, "run_id": self.run_id, "location": location,
                               "files": self.files})

    def _note(self, relative: str, data: bytes) -> bool:
        digests = self.files.setdefault(relative, [])
        digest = _digest(data)
        if digest in digests:
            return False
        digests.append(digest)
        del digests[:-_KEEP]
        return True

    def scan_local(self, folder: str | os.PathLike) -> None:
        """Record the unpicklable files under the local `folder` (ray's staging copy of the run, or the run
        itself) that changed since the last scan; save when anything is new."""
        folder = Path(folder)
        changed = False
        for root, _, names in os.walk(folder):
            for name in names:
                file = Path(root) / name
                relative = file.relative_to(folder).as_posix()
                if not unpicklable(relative) or _TRANSIENT in name:
                    continue
                try:
                    stat = file.stat()
                    key = (stat.st_mtime_ns, stat.st_size)
                    if self._seen.get(str(file)) == key:
                        continue
                    data = file.read_bytes()
                except OSError:  # ray replaced or removed it meanwhile; the next scan sees the new one
                    continue
                self._seen[str(file)] = key
                changed |= self._note(relative, data)
        if changed:
            self.save()

    def scan_file(self, relative: str) -> None:
        """Record the file at `relative` in the run's location, one the driver has just written there."""
        if self._note(relative, storage.read_bytes(storage.join(self.location, relative))):
            self.save()


def run_id_at(location: str) -> str | None:
    """The run id written into the run's ``experiment_config.json`` at `location`, or None."""
    try:
        data = storage.read_json(storage.join(location, storage.CONFIG_FILE))
    except (OSError, ValueError):
        return None
    return data.get("run_id") if isinstance(data, dict) else None


def owns(record: Recorder | None, location: str) -> bool:
    """Whether `record` is the record of the run at `location` (same place, same run id)."""
    return (record is not None and bool(record.run_id) and record.location == storage.normalize(location)
            and run_id_at(location) == record.run_id)


def verify(record: Recorder | None, location: str) -> None:
    """Refuse to resume the run at `location` unless `record` vouches for every file ray may unpickle there.

    Raises:
        UntrustedRunError: no record, a record of another run, or a file that is unknown or changed (named).
    """
    location = storage.normalize(location)
    if record is None:
        raise UntrustedRunError(f"'{location}' holds a ray.tune run, but the output folder keeps no record "
                                f"({RECORD_FILE}) of starting it, so weightspace cannot show it wrote that run and "
                                "will not resume it (resuming unpickles its files, which can run code). Start over "
                                "with another --storage or output folder")
    if not owns(record, location):
        raise UntrustedRunError(f"'{location}' is not the run recorded in '{record.path}' (its run id differs); "
                                "weightspace resumes only the run an output folder started. Choose the output folder "
                                "that started it, or start over elsewhere")
    for relative in storage.list_files(location):
        if not unpicklable(relative):
            continue
        digest = _digest(storage.read_bytes(storage.join(location, relative)))
        if digest not in record.files.get(relative, ()):
            what = "changed since weightspace saved it" if relative in record.files else "not written by this run"
            raise UntrustedRunError(f"refusing to resume: '{storage.join(location, relative)}' is {what} "
                                    f"(its SHA-256 is not in '{record.path}'), and resuming would unpickle it, "
                                    "which can run code. Remove the file if you did not put it there, or start over "
                                    "with --overwrite")


def check_latest_checkpoints(location: str) -> None:
    """Refuse to resume a run whose trials' latest ``learner.pt`` (the checkpoint a resumed trial loads) is not
    a checkpoint weightspace wrote: here, before ray hands it to a trial, whose failure would repeat on every
    resume. Such files are not in the record (`unpicklable`): loading them runs no code.

    Raises:
        CheckpointError: the file named, with what to do.
    """
    from weightspace.representation.checkpoint import read_checkpoint  # torch: only where a run is resumed

    latest: dict[str, str] = {}
    for relative in storage.list_files(location):
        parts = relative.split("/")
        if len(parts) == 3 and parts[1].startswith("checkpoint_") and parts[2] == CHECKPOINT_FILE:
            latest[parts[0]] = max(latest.get(parts[0], relative), relative)
    for relative in latest.values():
        file = storage.join(location, relative)
        read_checkpoint(storage.read_bytes(file), name=file)
