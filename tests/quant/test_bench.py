"""The int8 benchmark script: --help, target checks and the chart (no model run: fast)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_int8.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_int8", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_help():
    res = subprocess.run([sys.executable, str(BENCH), "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "--quick" in res.stdout and "--checkpoint" in res.stdout


def test_targets_and_plot(tmp_path):
    bench = _load()
    row = {"name": "m", "mode": "static", "accepted": True, "size_ratio": 0.29, "latency_ratio": 0.7,
           "wer_delta": 0.5, "int8_mac_share": 0.98}
    assert bench._misses(row) == ["latency 0.700x > 0.6x", "WER delta +0.50 > +0.3"]
    bench._plot([row, {**row, "mode": "dynamic", "accepted": False}], tmp_path / "x.png")
    assert (tmp_path / "x.png").stat().st_size > 1000
