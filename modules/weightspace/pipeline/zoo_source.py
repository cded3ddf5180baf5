"""Where an experiment's zoo comes from: a converted or generated zoo in the data folder, a preset generated
there, or a tiny smoke zoo; and, when none can be had offline, what the user can do instead."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from weightspace.io.atomic import record_written
from weightspace.io.download import DownloadError
from weightspace.zoo.generate import generate
from weightspace.zoo.presets import get_preset, list_presets
from weightspace.zoo.store import Zoo
from weightspace.zoo.tasks import missing_task_files, synthetic_options

if TYPE_CHECKING:
    from weightspace.pipeline.experiment import Experiment


def find_zoo(experiment: Experiment, datasets: str | os.PathLike, *, smoke: bool = False, download: bool = False,
             scratch: str | os.PathLike | None = None) -> tuple[Zoo, str]:
    """The zoo an experiment runs on, and a sentence saying where it came from.

    Order: a converted 2021 Zenodo dataset ``datasets/<zenodo>``, other converted external
    zoos ``datasets/<external>``, a weightspace zoo ``datasets/<preset>``, else the preset
    is generated into ``datasets/<preset>`` (task data such as MNIST downloaded first when
    `download`). Smoke runs generate a tiny zoo in `scratch`, never download, and train on
    the ``synthetic`` task instead when the preset's task files are not in `datasets`.
    """

    datasets = Path(datasets)
    if smoke:
        spec = get_preset(experiment.preset, smoke=True)
        # enough models for a few batches per split, trained in few populations (shards) to keep it seconds
        spec = replace(spec, seeds=1, samples=30, shard_size=32) if spec.sample else \
            replace(spec, seeds=4 if spec.grid else 30, shard_size=32)
        stand_in = ""
        if missing_task_files(spec.task, datasets):
            options = synthetic_options(spec.task, n_train=128, n_test=64, **spec.task_options)
            stand_in = (f" on synthetic {options['shape'][1]}x{options['shape'][2]} images: {spec.task} files not "
                        f"found in '{datasets / spec.task}'")
            spec = replace(spec, task="synthetic", task_options=options)
        out = Path(scratch or datasets) / spec.name
        zoo = generate(spec, out, progress=False, data_root=datasets)
        if scratch is not None:
            record_written(scratch)  # the scratch folder is the output folder's, as its manifest says
        return zoo, f"generated smoke zoo '{out}' ({len(spec.models())} models){stand_in}"
    for name, kind in ((experiment.zenodo, "converted 2021 Zenodo dataset"),
                       *((name, "converted external zoo") for name in experiment.external),
                       (experiment.preset, "weightspace zoo")):
        if name and (datasets / name / "zoo.json").is_file():
            return Zoo.load(datasets / name), f"{kind} '{datasets / name}'"
    spec = get_preset(experiment.preset)
    missing = missing_task_files(spec.task, datasets)
    if missing and not download:
        raise FileNotFoundError(f"no zoo for {experiment.name}, and generating one from preset {spec.name} needs "
                                f"the {spec.task} files {[f.name for f in missing]} in '{missing[0].parent}'. Place "
                                "them there and rerun, or rerun with --download where there is a network. "
                                + _offline_alternatives(experiment, datasets))
    models = len(spec.models())
    print(f"no zoo for {experiment.name} yet: generating preset {spec.name} ({models} models x {spec.epochs} "
          f"epochs of {spec.architecture} on {spec.task})", file=sys.stderr)
    try:
        zoo = generate(spec, datasets / spec.name, download=download, data_root=datasets)
    except DownloadError as err:
        raise FileNotFoundError(f"{err} " + _offline_alternatives(experiment, datasets)) from err
    return zoo, f"generated from preset {spec.name} into '{datasets / spec.name}'"


def _offline_alternatives(experiment: Experiment, datasets: Path) -> str:
    """What a user without a network can do instead: the zoo folders to place, the presets that need no files."""

    zoos = [f"'{datasets / name}' (`weightspace zoo download {name}`)"
            for name in (experiment.zenodo, *experiment.external) if name]
    zoos.append(f"'{datasets / experiment.preset}' (`weightspace zoo generate --preset {experiment.preset} --download`)")
    offline = [p for p in list_presets() if not missing_task_files(get_preset(p).task, datasets)]
    return (f"Offline: place a zoo made where there is a network at {' or '.join(zoos)}; or run --smoke-test "
            f"(synthetic images); or use a preset whose data is here: {', '.join(offline)}.")
