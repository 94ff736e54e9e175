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


def test_bench_runtime_compares_kernel_tables(tmp_path):
    """bench_runtime.py --kernels: every table gets pp and tg rows at every thread count, ratios against the first."""
    from tests._c_build import host_has_avx2

    if not host_has_avx2():
        pytest.skip("needs an x86 CPU with AVX2 (the script builds the x86-64-avx2 runtime)")
    out = tmp_path / "tables.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_runtime.py"), "--kernels", "scalar,avx2",
                           "--presets", "test", "-p", "8", "-n", "4", "-r", "1", "--rounds", "2", "--threads", "1,2",
                           "--models-dir", str(tmp_path / "models"), "-o", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["models"][0]["rows"]
    assert {(r["engine"], r["threads"], r["test"]) for r in rows} == {
        (f"bitedge i2_s {k}", t, test) for k in ("scalar", "avx2") for t in (1, 2) for test in ("pp8", "tg4")}
    assert all(r["n_samples"] == 2 and r["mean_ts"] > 0 for r in rows)
    assert all("speedup_vs_baseline" in r for r in rows if r["engine"].endswith("avx2"))
    assert "vs scalar" in proc.stdout
