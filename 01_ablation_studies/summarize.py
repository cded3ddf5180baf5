"""Rebuild ablations/summary.md and summary.csv from the finished grids: python summarize.py [ABLATIONS_DIR]."""

import sys
from pathlib import Path

from weightspace.pipeline.ablation import write_ablation_summary

if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "ablations"
    print(f"summary: {write_ablation_summary(root)}")
