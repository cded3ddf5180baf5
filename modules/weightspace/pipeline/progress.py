"""What a pipeline run shows on the console: one progress bar per stage, nothing else unless asked.

`stage` is a bar for a step with no natural count (the baselines, the final probes, the projection,
the report): it reads "running" while the step works and shows the seconds it took when done.
The training iterations have their own bar (`weightspace.pipeline.tune.TrainingProgress`), with the
loss and the validation probe score of each iteration.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from tqdm.auto import tqdm

BAR_FORMAT = "{desc:<16} {bar:10} {elapsed}{postfix}"


@contextmanager
def stage(name: str, *, enabled: bool = True) -> Iterator[tqdm]:
    """A one-step bar named `name` for the block; its postfix may be set to say what the step found."""
    with tqdm(total=1, desc=name, bar_format=BAR_FORMAT, disable=not enabled, leave=True) as bar:
        bar.set_postfix_str("running", refresh=True)
        yield bar
        if "running" in str(bar.postfix):
            bar.set_postfix_str("", refresh=False)
        bar.update(1)
