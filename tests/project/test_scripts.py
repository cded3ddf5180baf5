"""Every script under bench/ and research/ imports and answers ``--help`` (no data, no work at import time).

The scripts run one after the other in one fresh interpreter (`_HELP_ALL`), as ``python SCRIPT --help`` would run
each: the script's folder first on sys.path, ``__name__ == "__main__"``. One torch import serves them all: 15 s
for the set beside two busy processes, where a subprocess apiece took 200 s. Slow all the same (a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p.relative_to(ROOT).as_posix() for folder in ("bench", "research") for p in (ROOT / folder).glob("*.py"))

_HELP_ALL = """
import contextlib, io, json, runpy, sys, traceback
from pathlib import Path
answers = {}
for script in sys.argv[1:]:
    sys.argv, sys.path[0] = [script, "--help"], str(Path(script).resolve().parent)
    out, err, code = io.StringIO(), io.StringIO(), None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as stop:
            code = stop.code or 0
        except BaseException:
            code = "raised"
            traceback.print_exc(file=err)
    answers[script] = {"code": code, "stdout": out.getvalue()[:2000], "stderr": err.getvalue()[-2000:]}
print(json.dumps(answers))
"""


@pytest.fixture(scope="module")
def help_answers() -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _HELP_ALL, *SCRIPTS], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_script_help(script: str, help_answers: dict) -> None:
    answer = help_answers[script]
    assert answer["code"] == 0, f"{script} --help ended with {answer['code']}:\n{answer['stderr']}"
    assert "usage" in answer["stdout"], f"{script} --help printed no usage:\n{answer['stdout']}"


def test_scripts_found() -> None:
    assert len(SCRIPTS) > 10 and "research/transfer_probe.py" in SCRIPTS
