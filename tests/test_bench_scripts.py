"""The benchmark scripts still run (tiny shapes, one round): a speed number is only as good as the script that
makes it, and nothing else in the suite calls them. Timings are not checked, only that every method got one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("tokens", [1, 3])
def test_bench_kernels_runs_and_reports_every_method(tmp_path, tokens):
    out = tmp_path / "kernels.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_kernels.py"), "--shapes", "64x96,40x128",
                           "--rounds", "1", "--reps", "2", "--tokens", str(tokens), "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert {r["matrix"] for r in rows} == {"64x96", "40x128"}
    for matrix in ("64x96", "40x128"):
        methods = {r["method"].split()[0] for r in rows if r["matrix"] == matrix}
        assert {"i2_s-runtime", "tl1", "tl2"} <= methods, (matrix, methods)
    assert all(r["mean_us"] > 0 for r in rows)
