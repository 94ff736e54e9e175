"""Results store (SQLite), exports, markdown/CSV tables and PNG plots."""

import csv
import io
import json
import sqlite3

import pytest

from bitedge.errors import BitedgeError
from bitedge.results.report import csv_table, latest, markdown_table, plot, with_speedup
from bitedge.results.store import ResultStore, rows_from_bench

BENCH = {
    "kernels": "avx2",
    "energy_j": None,
    "results": [
        {"n_prompt": 128, "n_gen": 0, "n_threads": 1, "avg_ts": 100.0, "stddev_ts": 2.0, "samples_ts": [98, 100, 102], "peak_rss_kb": 2048, "cpu_info": "TestCPU"},
        {"n_prompt": 0, "n_gen": 128, "n_threads": 1, "avg_ts": 20.0, "stddev_ts": 0.5, "samples_ts": [20, 20], "peak_rss_kb": 2048},
    ],
}


def context(board, method="i2_s"):
    return dict(board=board, target="x86-64-avx2", model="m.gguf", model_sha256="ab" * 32, method=method, toolchain="gcc")


def test_rows_from_bench_and_store_roundtrip(tmp_path):
    rows = rows_from_bench(BENCH, cpu="HostCPU", **context("pi5"))
    assert [r.test for r in rows] == ["pp128", "tg128"]
    assert rows[0].cpu == "TestCPU" and rows[1].cpu == "HostCPU"
    assert rows[0].peak_rss_mb == 2.0 and rows[0].reps == 3 and rows[0].run_energy_j is None
    db = tmp_path / "r.db"
    store = ResultStore(db)
    store.add(rows)
    store.add(rows_from_bench({**BENCH, "energy_j": 12.5}, **context("orin")))
    got = store.rows(board="orin")
    assert len(got) == 2 and got[0].run_energy_j == 12.5 and got[0].avg_ts == 100.0
    data = json.loads(store.export("json"))
    assert len(data) == 4 and {d["board"] for d in data} == {"pi5", "orin"}
    parsed = list(csv.DictReader(io.StringIO(store.export("csv"))))
    assert parsed[0]["test"] == "pp128" and float(parsed[1]["avg_ts"]) == 20.0
    assert sqlite3.connect(db).execute("select count(*) from runs").fetchone()[0] == 4


def test_malformed_bench_and_bad_database_are_one_line_errors(tmp_path):
    with pytest.raises(BitedgeError, match="no result rows"):
        rows_from_bench({"results": []}, **context("x"))
    with pytest.raises(BitedgeError, match="malformed"):
        rows_from_bench({"results": [{"n_prompt": 1}]}, **context("x"))
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(BitedgeError, match="not a bitedge results database"):
        ResultStore(bad)


def test_report_tables_speedups_and_plots(tmp_path):
    rows = rows_from_bench(BENCH, **context("pi5")) + rows_from_bench(
        {"results": [{**r, "avg_ts": r["avg_ts"] * 2} for r in BENCH["results"]]}, **context("orin"))
    rows += rows_from_bench({"results": [{**r, "avg_ts": r["avg_ts"] * 1.5} for r in BENCH["results"]]}, **context("pi5", "tl1"))
    rows = latest(rows)
    by_board = {(r.board, r.method, r.test): sp for r, sp in with_speedup(rows, "pi5")}
    assert by_board[("orin", "i2_s", "pp128")] == pytest.approx(2.0)
    assert by_board[("pi5", "tl1", "tg128")] == pytest.approx(1.0)  # tl1 compared to pi5's tl1 row
    by_method = {(r.board, r.method, r.test): sp for r, sp in with_speedup(rows, "i2_s")}
    assert by_method[("pi5", "tl1", "pp128")] == pytest.approx(1.5)
    with pytest.raises(BitedgeError, match="neither a board nor a method"):
        with_speedup(rows, "nonexistent")
    md = markdown_table(rows, "pi5")
    assert "| orin | m.gguf | i2_s | 1 | pp128 | 200.00 ± 2.00 | 2.00x |" in md and "n/a" in md
    assert "orin,m.gguf,i2_s,1,tg128,40.0000" in csv_table(rows)
    pngs = plot(rows, tmp_path / "plots", baseline="pi5")
    assert {p.name for p in pngs} == {"pp128.png", "pp128_speedup.png", "tg128.png", "tg128_speedup.png"}
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
