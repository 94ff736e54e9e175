"""Every benchmark run goes into one SQLite database (default ~/.local/share/bitedge/results.db)."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from bitedge import __version__
from bitedge.errors import BitedgeError

DEFAULT_DB = Path(os.environ.get("BITEDGE_RESULTS", "~/.local/share/bitedge/results.db")).expanduser()


@dataclass
class BenchRow:
    """One test (pp or tg at one thread count) of one benchmark run on one board."""

    board: str  # host label
    cpu: str
    target: str
    model: str
    model_sha256: str  # of the GGUF file
    method: str  # kernel method: i2_s, tl1, tl2
    threads: int
    test: str  # "pp128", "tg128"
    n_prompt: int
    n_gen: int
    avg_ts: float
    stddev_ts: float
    reps: int = 0
    peak_rss_mb: float | None = None
    # energy of the whole `bitedge-run bench` invocation (all its tests), from the board's cumulative counters;
    # None = the board exposes no energy counter ("n/a"), never invented
    run_energy_j: float | None = None
    toolchain: str = ""
    kernels: str = ""
    bitedge_version: str = __version__
    time: float = 0.0
    run_id: str = ""
    # the source model's identity, the same for every packing converted from it (the weights' sha256 the converter
    # recorded, else the file's own): `report --baseline METHOD` pairs rows by it, not by file name
    source_sha256: str = ""


COLUMNS = [f.name for f in fields(BenchRow)]
_TYPES = {"threads": "INTEGER", "n_prompt": "INTEGER", "n_gen": "INTEGER", "reps": "INTEGER",
          "avg_ts": "REAL", "stddev_ts": "REAL", "peak_rss_mb": "REAL", "run_energy_j": "REAL", "time": "REAL"}


class ResultStore:
    """create=False (commands that only read): a path with no database is an error naming it, never a new empty
    database. An older bitedge's database gains the new columns (source_sha256 filled from model_sha256)."""

    def __init__(self, path: str | Path = DEFAULT_DB, create: bool = True):
        self.path = Path(path)
        if self.path.is_dir():
            raise BitedgeError(f"{self.path}: is a folder, not a results database")
        if not create and not self.path.exists():
            raise BitedgeError(f"{self.path}: no results database there (check --db / $BITEDGE_RESULTS; "
                               f"bitedge bench creates one)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BitedgeError(f"{self.path}: cannot create its folder: {e.strerror or e}") from None
        try:
            self.db = sqlite3.connect(self.path)
            if not create and not self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone():
                self.db.close()
                raise BitedgeError(f"{self.path}: not a bitedge results database (no table runs in it)")
            cols = ", ".join(f"{c} {_TYPES.get(c, 'TEXT')}" for c in COLUMNS)
            self.db.execute(f"CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, {cols})")
            self.db.commit()
            have = {row[1] for row in self.db.execute("PRAGMA table_info(runs)")}
            missing = [c for c in COLUMNS if c not in have]
            if missing and {"board", "model", "test", "avg_ts"} <= have:  # an older bitedge's: add the new columns
                with self.db:
                    for c in missing:
                        self.db.execute(f"ALTER TABLE runs ADD COLUMN {c} {_TYPES.get(c, 'TEXT')}")
                    if "source_sha256" in missing:  # rows from before it: each file is its own source
                        self.db.execute("UPDATE runs SET source_sha256 = model_sha256 WHERE source_sha256 IS NULL")
                missing = []
        except sqlite3.DatabaseError as e:
            raise BitedgeError(f"{self.path}: not a bitedge results database, or one this bitedge cannot upgrade "
                               f"({e})") from None
        if missing:
            raise BitedgeError(f"{self.path}: a database of another schema: its table runs lacks "
                               f"{', '.join(missing[:5])}{' …' if len(missing) > 5 else ''} (not a bitedge results database?)")

    def add(self, rows: list[BenchRow]) -> None:
        now = time.time()
        with self.db:
            for r in rows:
                if not r.time:
                    r.time = now
                self.db.execute(
                    f"INSERT INTO runs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                    [getattr(r, c) for c in COLUMNS],
                )

    def rows(self, **where) -> list[BenchRow]:
        sql = f"SELECT {', '.join(COLUMNS)} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(f"{k} = ?" for k in where)
        cur = self.db.execute(sql + " ORDER BY time, id", list(where.values()))
        return [BenchRow(*r) for r in cur.fetchall()]

    def export(self, fmt: str) -> str:
        rows = [asdict(r) for r in self.rows()]
        if fmt == "json":
            return json.dumps(rows, indent=2) + "\n"
        if fmt == "csv":
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(rows)
            return buf.getvalue()
        raise BitedgeError(f"unknown export format {fmt!r} (csv, json)")

    def close(self) -> None:
        self.db.close()


def rows_from_bench(result: dict, **context) -> list[BenchRow]:
    """BenchRows from `bitedge-run bench --json` output (llama-bench style rows) plus context fields."""
    tests = (result.get("rows") or result.get("results")) if isinstance(result, dict) else result
    if not isinstance(tests, list) or not tests:
        raise BitedgeError("benchmark output has no result rows")
    ctx = dict(context)
    ctx_cpu = ctx.pop("cpu", "")
    ctx["source_sha256"] = ctx.get("source_sha256") or ctx.get("model_sha256", "")
    energy = result.get("energy_j") if isinstance(result, dict) else None
    default_kernels = result.get("kernels", "") if isinstance(result, dict) else ""
    out = []
    for t in tests:
        try:
            n_prompt, n_gen = int(t.get("n_prompt", 0)), int(t.get("n_gen", 0))
            test = f"pp{n_prompt}" if n_prompt else f"tg{n_gen}"
            rss = t.get("peak_rss_mb")
            if rss is None and t.get("peak_rss_kb") is not None:
                rss = t["peak_rss_kb"] / 1024
            out.append(BenchRow(
                threads=int(t["n_threads"]), test=test, n_prompt=n_prompt, n_gen=n_gen,
                avg_ts=float(t["avg_ts"]), stddev_ts=float(t.get("stddev_ts", 0.0)),
                reps=len(t.get("samples_ts", [])) or int(t.get("reps", 0)),
                peak_rss_mb=rss, kernels=str(t.get("kernels") or default_kernels),
                cpu=str(t.get("cpu_info") or ctx_cpu), run_energy_j=energy, **ctx,
            ))
        except (KeyError, TypeError, ValueError) as e:
            raise BitedgeError(f"benchmark output row is malformed ({e}): {t!r}"[:300]) from None
    return out
