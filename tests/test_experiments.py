"""Every experiment folder's scripts run end to end with --smoke-test and write their files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = sorted(p for p in ROOT.glob("[0-9][0-9]_*") if p.is_dir() and (p / "compute_baselines.py").exists())


def run(script: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script.name, *args], cwd=script.parent, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_smoke_run_writes_results_and_report(folder, tmp_path):
    out = tmp_path / "out"
    base = run(folder / "compute_baselines.py", "--smoke-test", "--output-dir", str(out), "--no-report")
    assert base.returncode == 0, base.stderr[-3000:]
    baselines = json.loads((out / "baseline_performance.json").read_text())
    assert {"results_im", "results_lq"} <= set(baselines)
    assert {"test_acc_train", "test_acc_val", "test_acc_test"} <= set(baselines["results_im"])

    again = run(folder / "compute_baselines.py", "--smoke-test", "--output-dir", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr  # finished results are kept

    scripts = sorted(folder.glob("simclr_ae_*.py"))
    assert scripts, f"{folder.name} has no simclr_ae_<name>.py"
    rep = run(scripts[0], "--smoke-test", "--output-dir", str(out), "--device", "cpu")
    assert rep.returncode == 0, rep.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert {"test_acc_train", "test_acc_val", "test_acc_test", "rsq_test"} <= set(results)
    assert (out / "embeddings.npy").exists() and (out / "history.csv").exists()
    report = (out / "report.md").read_text()
    assert "test_acc" in report and ".png" in report
    assert json.loads((out / "experiment.json").read_text())["zoo"]["source"].startswith("generated smoke zoo")
