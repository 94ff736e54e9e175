"""`bitedge report`: tables (markdown, CSV) and PNG plots comparing boards, models and kernel methods."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

from bitedge.errors import BitedgeError
from bitedge.results.store import BenchRow

KEY = ("board", "model", "method", "threads", "test")


def latest(rows: list[BenchRow]) -> list[BenchRow]:
    """The newest row per (board, model, method, threads, test): a report compares current numbers."""
    best: dict[tuple, BenchRow] = {}
    for r in rows:
        k = tuple(getattr(r, f) for f in KEY)
        if k not in best or r.time >= best[k].time:
            best[k] = r
    return sorted(best.values(), key=lambda r: tuple(str(getattr(r, f)) for f in KEY))


def with_speedup(rows: list[BenchRow], baseline: str | None) -> list[tuple[BenchRow, float | None]]:
    """Pair each row with its speedup over the baseline for the same test.

    The baseline is a board (compare boards: same model, method, threads, test) or a kernel method
    (compare methods: same board, model, threads, test).
    """
    if not baseline:
        return [(r, None) for r in rows]
    if any(r.board == baseline for r in rows):
        field = "board"
    elif any(r.method == baseline for r in rows):
        field = "method"
    else:
        raise BitedgeError(f"baseline {baseline!r} is neither a board nor a method in these results")
    same = [f for f in KEY if f != field]
    base = {tuple(getattr(r, f) for f in same): r.avg_ts for r in rows if getattr(r, field) == baseline}
    out = []
    for r in rows:
        ref = base.get(tuple(getattr(r, f) for f in same))
        out.append((r, r.avg_ts / ref if ref else None))
    return out


def _fmt_energy(r: BenchRow) -> str:
    return "n/a" if r.run_energy_j is None else f"{r.run_energy_j:.1f}"


def markdown_table(rows: list[BenchRow], baseline: str | None = None) -> str:
    head = ["board", "model", "method", "threads", "test", "t/s", "speedup", "peak RSS MB", "run energy J"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r, sp in with_speedup(rows, baseline):
        lines.append(
            f"| {r.board} | {r.model} | {r.method} | {r.threads} | {r.test} | {r.avg_ts:.2f} ± {r.stddev_ts:.2f} | "
            f"{'' if sp is None else f'{sp:.2f}x'} | {'' if r.peak_rss_mb is None else f'{r.peak_rss_mb:.0f}'} | {_fmt_energy(r)} |"
        )
    return "\n".join(lines) + "\n"


def csv_table(rows: list[BenchRow], baseline: str | None = None) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["board", "model", "method", "threads", "test", "avg_ts", "stddev_ts", "speedup", "peak_rss_mb", "run_energy_j"])
    for r, sp in with_speedup(rows, baseline):
        w.writerow([r.board, r.model, r.method, r.threads, r.test, f"{r.avg_ts:.4f}", f"{r.stddev_ts:.4f}",
                    "" if sp is None else f"{sp:.4f}", "" if r.peak_rss_mb is None else f"{r.peak_rss_mb:.1f}",
                    "" if r.run_energy_j is None else f"{r.run_energy_j:.3f}"])
    return buf.getvalue()


def plot(rows: list[BenchRow], out_dir: str | Path, baseline: str | None = None) -> list[Path]:
    """One PNG per test (pp/tg): grouped bars of tokens/s per board × method; plus a speedup plot if baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_test: dict[str, list[BenchRow]] = defaultdict(list)
    for r in rows:
        by_test[r.test].append(r)
    written = []
    for test, rs in sorted(by_test.items()):
        for value, label, suffix in [("tps", "tokens/s", ""), ("speedup", f"speedup vs {baseline}", "_speedup")]:
            if value == "speedup" and not baseline:
                continue
            pairs = with_speedup(rs, baseline) if value == "speedup" else [(r, None) for r in rs]
            groups = sorted({f"{r.board}\n{r.model} t{r.threads}" for r, _ in pairs})
            series = sorted({r.method for r, _ in pairs})
            fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(groups) * max(1, len(series))), 4))
            width = 0.8 / max(1, len(series))
            for si, method in enumerate(series):
                xs, ys, es = [], [], []
                for gi, g in enumerate(groups):
                    for r, sp in pairs:
                        if f"{r.board}\n{r.model} t{r.threads}" == g and r.method == method:
                            y = sp if value == "speedup" else r.avg_ts
                            if y is None:
                                continue
                            xs.append(gi + si * width)
                            ys.append(y)
                            es.append(0 if value == "speedup" else r.stddev_ts)
                ax.bar(xs, ys, width, yerr=es, label=method, capsize=3)
            ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(groups))], groups, fontsize=8)
            ax.set_ylabel(label)
            ax.set_title(f"{test}: {label}")
            ax.legend(title="method")
            fig.tight_layout()
            path = out_dir / f"{test}{suffix}.png"
            tmp = path.with_suffix(".tmp.png")
            fig.savefig(tmp, dpi=110)
            plt.close(fig)
            tmp.replace(path)
            written.append(path)
    return written
