"""Starting a ray instance on this machine whose workers get their fair share of it.

ray starts its worker processes 15 nice steps below the process that started it, so wherever anything else
runs on the machine, the trials and zoo shards, which are the work, wait behind it: a smoke run of
`11_tetris_seed` beside two busy processes took 5 min 48 s for 25 s of CPU. Workers started here run at the
driver's priority; a ``RAY_worker_niceness`` the user set is kept.

A driver that ray joined also stops on SIGTERM (a batch scheduler's time limit, ``scancel``, ``kill``) as on
Ctrl-C: ray's own handler for it dumps a stack trace and aborts (exit status 134), so a run that could resume
looked as if it had crashed. `stop_on_sigterm` hands SIGTERM to whatever handles Ctrl-C at that moment (ray.tune
then saves the run's state, weightspace says how to resume).
"""

from __future__ import annotations

import os
import signal
import threading
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
    stop_on_sigterm()


def stop_on_sigterm() -> None:
    """From now on, SIGTERM in this process does what Ctrl-C (SIGINT) does at the moment it arrives. Call it
    after ``ray.init``, which installs ray's own handler; only the main thread can set one (elsewhere: nothing)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _as_ctrl_c)


def _as_ctrl_c(signum: int, frame: Any) -> None:
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):  # Python's default raises KeyboardInterrupt; ray.tune's stops the run and saves it
        handler(signal.SIGINT, frame)
    else:  # SIGINT ignored or left to the system: stop as the default would
        raise KeyboardInterrupt
