"""`bitedge report`: tables (markdown, CSV) and PNG plots comparing boards, models and kernel methods."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bitedge.errors import BitedgeError
from bitedge.output import replaced_atomically
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

    The baseline is a board (compare boards: the same model file, by sha256, method, threads, test) or a kernel
    method (compare methods: the same board, source model, threads, test). A TL1 and an I2_S file of one model are
    different files: they pair by the source model's sha256 (BenchRow.source_sha256), not by file name.
    """
    if not baseline:
        return [(r, None) for r in rows]
    if any(r.board == baseline for r in rows):
        field, same = "board", ("model_sha256", "method", "threads", "test")
    elif any(r.method == baseline for r in rows):
        field, same = "method", ("board", "source_sha256", "threads", "test")
    else:
        raise BitedgeError(f"baseline {baseline!r} is neither a board nor a method in these results")
    base: dict[tuple, BenchRow] = {}
    for r in rows:  # the newest baseline row when several match (two files of one source, say)
        k = tuple(getattr(r, f) for f in same)
        if getattr(r, field) == baseline and (k not in base or r.time >= base[k].time):
            base[k] = r
    out = []
    for r in rows:
        ref = base.get(tuple(getattr(r, f) for f in same))
        out.append((r, r.avg_ts / ref.avg_ts if ref and ref.avg_ts else None))
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


@dataclass
class Bar:
    method: str
    x: float
    y: float
    err: float
    color: str


@dataclass
class PlotSpec:
    """One plot: bars grouped by board, source model and threads; one series (and colour) per method."""

    filename: str
    title: str
    ylabel: str
    groups: list[str]  # x tick labels, group i centred at x = i
    bars: list[Bar]
    width: float  # of one bar


def _group_label(rs: list[BenchRow]) -> str:
    names = sorted({r.model for r in rs})
    model = names[0] + (f" (+{len(names) - 1})" if len(names) > 1 else "")
    return f"{rs[0].board}\n{model} t{rs[0].threads}"


def plot_specs(rows: list[BenchRow], baseline: str | None = None) -> list[PlotSpec]:
    """What plot() draws, as data: per test, tokens/s (and the speedup over baseline when given). Only bars with a
    value are placed (no empty slots); every method has one colour across all plots."""
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors + colormaps["Dark2"].colors
    methods = sorted({r.method for r in rows})
    color = {m: "#%02x%02x%02x" % tuple(round(255 * c) for c in palette[i % len(palette)]) for i, m in enumerate(methods)}
    by_test: dict[str, list[BenchRow]] = defaultdict(list)
    for r in rows:
        by_test[r.test].append(r)
    specs = []
    for test, rs in sorted(by_test.items()):
        for value in ("tps", "speedup"):
            if value == "speedup" and not baseline:
                continue
            pairs = [(r, sp if value == "speedup" else r.avg_ts) for r, sp in with_speedup(rs, baseline)]
            pairs = [(r, y) for r, y in pairs if y is not None and y > 0]
            groups: dict[tuple, list[tuple[BenchRow, float]]] = defaultdict(list)
            for r, y in pairs:
                groups[(r.board, r.source_sha256, r.threads)].append((r, y))
            keys = sorted(groups, key=lambda k: (k[0], _group_label([r for r, _ in groups[k]]), k[2]))
            width = 0.8 / max([1] + [len({r.method for r, _ in groups[k]}) for k in keys])
            bars = []
            for gi, k in enumerate(keys):
                newest: dict[str, tuple[BenchRow, float]] = {}
                for r, y in groups[k]:
                    if r.method not in newest or r.time >= newest[r.method][0].time:
                        newest[r.method] = (r, y)
                present = sorted(newest)
                for si, m in enumerate(present):
                    r, y = newest[m]
                    x = gi + (si - (len(present) - 1) / 2) * width
                    bars.append(Bar(m, x, y, 0.0 if value == "speedup" else r.stddev_ts, color[m]))
            label = f"speedup vs {baseline}" if value == "speedup" else "tokens/s"
            specs.append(PlotSpec(f"{test}{'_speedup' if value == 'speedup' else ''}.png", f"{test}: {label}", label,
                                  [_group_label([r for r, _ in groups[k]]) for k in keys], bars, width))
    return specs


def draw(spec: PlotSpec):
    """A matplotlib Figure of one PlotSpec: one bar container per method, labelled with the method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = sorted({b.method for b in spec.bars})
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(spec.groups) * max(1, len(series))), 4))
    for method in series:
        bs = [b for b in spec.bars if b.method == method]
        errors = [b.err for b in bs] if any(b.err for b in bs) else None  # speedups have none
        ax.bar([b.x for b in bs], [b.y for b in bs], spec.width, yerr=errors, label=method, color=bs[0].color, capsize=3)
    ax.set_xticks(range(len(spec.groups)), spec.groups, fontsize=8)
    ax.set_ylabel(spec.ylabel)
    ax.set_title(spec.title)
    if series:
        ax.legend(title="method")
    fig.tight_layout()
    return fig


def plot(rows: list[BenchRow], out_dir: str | Path, baseline: str | None = None) -> list[Path]:
    """One PNG per test (pp/tg): grouped bars of tokens/s per board × method; plus a speedup plot if baseline."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in plot_specs(rows, baseline):
        fig = draw(spec)
        path = out_dir / spec.filename
        try:
            with replaced_atomically(path) as tmp:
                fig.savefig(tmp, dpi=110, format="png")
        finally:
            plt.close(fig)
        written.append(path)
    return written
