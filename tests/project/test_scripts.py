"""Every script under bench/ and research/ imports and answers ``--help`` (no data, no work at import time).

Each runs in a subprocess (a torch import apiece: about a minute for the set on 2 cores), hence slow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p.relative_to(ROOT).as_posix() for folder in ("bench", "research") for p in (ROOT / folder).glob("*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_script_help(script: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"{script} --help exited {done.returncode}:\n{done.stderr[-2000:]}"
    assert "usage" in done.stdout, f"{script} --help printed no usage:\n{done.stdout[-2000:]}"


def test_scripts_found() -> None:
    assert len(SCRIPTS) > 10 and "research/transfer_probe.py" in SCRIPTS
