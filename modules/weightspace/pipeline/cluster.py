"""Connecting the command line to a running ray cluster, giving up after a stated time.

An edge helper like `weightspace.cli`: the library never calls ``ray.init``. Without a bound,
``ray.init(address=...)`` on a dead address retries for more than seven minutes
(20 attempts of 5 + 5 + 20 s). A plain TCP connection first answers the common cases
(nothing listening, unknown host, unreachable network) at once; ray's own connection
settings then bound the wait on something that listens but does not answer as ray. A
cluster that refuses this process's token (or its lack of one) looks to ray like one that
does not answer, so that message also says how to pass the token. Where ray was imported before
(`weightspace run` imports ray.tune), its settings are fixed, so a new Python process asks the
cluster first, under the settings, and ray.init follows only when the cluster answered.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from weightspace.errors import ClusterError
from weightspace.io.local_ray import stop_on_sigterm

DEFAULT_TIMEOUT_S = 30


def connect_ray(address: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, **init_kwargs: Any) -> None:
    """Connect this process to the ray cluster at `address` (``host:port``, ``ray://host:port`` or ``auto``).

    Raises:
        ClusterError: nothing answers as a ray cluster at `address` within `timeout_s` seconds.
    """
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return
    if timeout_s <= 0:
        raise ValueError(f"the ray connection timeout (--ray-timeout) must be more than 0 seconds, got {timeout_s}")
    hint = ("start one with `ray start --head` (it prints its address), leave out --ray-address to start "
            "a local one, or raise --ray-timeout if the cluster is slow to answer")
    endpoint = _endpoint(address)
    if endpoint is not None:
        try:
            socket.create_connection(endpoint, timeout=timeout_s).close()
        except OSError as err:  # refused, timed out, unknown host, unreachable network
            reason = f"no answer within {timeout_s:g} s" if isinstance(err, TimeoutError) else err.strerror or str(err)
            raise ClusterError(f"cannot reach a ray cluster at '{address}' ({reason}); {hint}") from None
    auth = ("; if the cluster uses ray's token authentication, give this process "
            "its token: RAY_AUTH_TOKEN=<the output of `ray get-auth-token` on the head> or RAY_AUTH_TOKEN_PATH"
            "=<a file holding it>, with RAY_AUTH_MODE=token") if endpoint is not None else ""
    try:
        if "ray" in sys.modules and endpoint is not None and not address.startswith("ray://"):
            _probe_in_fresh_process(address, timeout_s)  # this process's ray has read its settings already
        with _bounded_ray_connect(timeout_s):
            import ray  # after the settings: ray reads some of them when it is imported

            ray.init(address=address, **init_kwargs)
    except (ConnectionError, TimeoutError) as err:
        raise ClusterError(f"cannot connect to the ray cluster at '{address}' within about {timeout_s:g} s "
                           f"({str(err).splitlines()[0] if str(err) else type(err).__name__}); {hint}{auth}") from None
    stop_on_sigterm()  # as on Ctrl-C: the run stops, is saved and says how to resume


# asks the cluster's GCS for its id, giving up after argv[2] milliseconds
_PROBE = ("import sys\nfrom ray._raylet import InnerGcsClient\n"
          "InnerGcsClient.standalone(sys.argv[1], None, int(sys.argv[2]))\n")
_PROBE_START_S = 15  # beyond the timeout: for the probe's Python to start and import ray's core


def _probe_in_fresh_process(address: str, timeout_s: float) -> None:
    """Ask the GCS at `address` for the cluster id from a new Python process, where ray's connection settings
    still apply (this process's ray read them when it was imported, and would wait about 45 s).

    Raises:
        TimeoutError: no answer as a ray cluster within about `timeout_s` seconds.
    """
    with _bounded_ray_connect(timeout_s):
        env = dict(os.environ)
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, address, str(int(timeout_s * 1000))], env=env,
                              capture_output=True, text=True, timeout=timeout_s + _PROBE_START_S)
    except subprocess.TimeoutExpired:
        raise TimeoutError("no answer as a ray cluster") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no answer as a ray cluster"])[-1]
        if "ModuleNotFoundError" in last or "ImportError" in last:  # another ray: leave the check to ray.init
            return
        raise TimeoutError(last.rpartition("Error: ")[2] or last)


def _endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) of a ``[ray://]host:port`` address; None for ``auto`` and anything without a port."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


@contextmanager
def _bounded_ray_connect(timeout_s: float) -> Iterator[None]:
    """Set ray's connection settings so that one attempt to reach the cluster takes about `timeout_s`.

    Per attempt, ray waits for the GCS channel and its pubsub channel (``gcs_rpc_server_connect_timeout_s``
    each), then for the cluster id (``py_gcs_connect_timeout_s``), then sleeps a second; the attempts are
    ``gcs_server_port_wait_time_s``. Ray reads the first two when it is first imported, so where ray was
    imported before, only the single attempt applies (about 40 s); values set in the environment are kept.
    """
    channel = max(1, int(timeout_s) // 4)
    settings = {"RAY_gcs_rpc_server_connect_timeout_s": channel,
                "RAY_py_gcs_connect_timeout_s": max(1, int(timeout_s) - 2 * channel - 1),
                "RAY_gcs_server_port_wait_time_s": 1}
    added = [key for key in settings if key not in os.environ]
    os.environ.update({key: str(settings[key]) for key in added})
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)
