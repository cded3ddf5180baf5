"""Starting a ray instance on this machine whose workers get their fair share of it.

ray starts its worker processes 15 nice steps below the process that started it, so wherever anything else
runs on the machine, the trials and zoo shards, which are the work, wait behind it: a smoke run of
`11_tetris_seed` beside two busy processes took 5 min 48 s for 25 s of CPU. Workers started here run at the
driver's priority; a ``RAY_worker_niceness`` the user set is kept.
"""

from __future__ import annotations

import os
from typing import Any

WORKER_NICENESS = "RAY_worker_niceness"  # ray's setting: the nice increment of its worker processes


def start_local_ray(num_cpus: int, **init_kwargs: Any) -> None:
    """``ray.init`` a new instance here (never a cluster that `ray start` left running) with `num_cpus` CPUs,
    its workers at this process's priority."""
    import ray  # lazy: `import weightspace` must not load ray

    user_set = WORKER_NICENESS in os.environ
    if not user_set:
        os.environ[WORKER_NICENESS] = "0"  # read by the raylet that ray.init starts, and by nothing after
    try:
        ray.init(address="local", num_cpus=num_cpus, **init_kwargs)
    finally:
        if not user_set:
            del os.environ[WORKER_NICENESS]
