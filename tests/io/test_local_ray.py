"""A local ray instance runs its workers at the driver's priority, not 15 nice steps below it: on a machine
where anything else runs, niced trials wait behind it (a smoke run took 5 min 48 s for 25 s of CPU). A driver
ray joined stops on SIGTERM as on Ctrl-C, not with ray's abort."""

import os
import signal
import subprocess
import sys

import pytest

from weightspace.io.local_ray import WORKER_NICENESS, start_local_ray, stop_on_sigterm


@pytest.mark.parametrize("user_value", [None, "7"])
def test_the_workers_niceness_is_set_only_while_ray_starts_and_a_users_own_is_kept(monkeypatch, user_value):
    import ray

    seen = {}

    def init(**kwargs):
        seen.update(kwargs, niceness=os.environ.get(WORKER_NICENESS))

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.delenv(WORKER_NICENESS, raising=False)
    if user_value is not None:
        monkeypatch.setenv(WORKER_NICENESS, user_value)
    start_local_ray(3, include_dashboard=False)
    assert seen == {"address": "local", "num_cpus": 3, "include_dashboard": False, "niceness": user_value or "0"}
    assert os.environ.get(WORKER_NICENESS) == user_value  # this process's environment as it was


def test_the_environment_is_restored_when_ray_fails_to_start(monkeypatch):
    import ray

    def init(**kwargs):
        raise ConnectionError("raylet did not start")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.delenv(WORKER_NICENESS, raising=False)
    with pytest.raises(ConnectionError):
        start_local_ray(1)
    assert WORKER_NICENESS not in os.environ


@pytest.mark.slow
def test_a_local_rays_workers_run_at_the_drivers_priority():
    script = ("import os, ray\n"
              "from weightspace.io.local_ray import start_local_ray\n"
              "start_local_ray(1, include_dashboard=False, log_to_driver=False)\n"
              "print('nice', os.nice(0), ray.get(ray.remote(lambda: os.nice(0)).remote()))\n"
              "ray.shutdown()\n")
    env = {k: v for k, v in os.environ.items() if k != WORKER_NICENESS}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    driver, worker = done.stdout.split("nice")[-1].split()
    assert worker == driver  # ray's default would be driver + 15


@pytest.fixture
def signal_handlers():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGINT, before[0])
    signal.signal(signal.SIGTERM, before[1])


def test_sigterm_does_what_ctrl_c_does_at_that_moment(signal_handlers):
    seen = []
    stop_on_sigterm()
    signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))  # as ray.tune's, installed later
    os.kill(os.getpid(), signal.SIGTERM)
    assert seen == [signal.SIGINT]
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ignored Ctrl-C: SIGTERM still stops
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)


def test_starting_ray_makes_sigterm_a_ctrl_c(monkeypatch, signal_handlers):
    import ray

    # ray.init installs a handler of its own (here one that ignores it, so that a failure does not end pytest)
    monkeypatch.setattr(ray, "init", lambda **kwargs: signal.signal(signal.SIGTERM, signal.SIG_IGN))
    start_local_ray(1)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
