#!/usr/bin/env python3
"""The table and the plot of a bench_sizes.py run (JSON in, markdown and PNG out).

    python3 bench/sizes_report.py build/bench/sizes.json [--plot docs/img/sizes-zen3.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def row(m: dict, threads: int, kind: str) -> dict | None:
    return next((r for r in m["rows"] if r["threads"] == threads and r["test"].startswith(kind)), None)


def thread_counts(report: dict) -> list[int]:
    return sorted({r["threads"] for m in report["models"] for r in m["rows"]})


def ts_cell(r: dict | None) -> str:
    return f"{r['mean_ts']:.2f} ± {r['sd_ts']:.2f}" if r else "–"


def roof_cell(r: dict | None) -> str:
    return f"{r['fraction_of_roofline']:.0%} of {r['roofline_ts']:.2f}" if r and "roofline_ts" in r else "–"


def params(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def markdown(report: dict) -> str:
    mach = report["machine"]
    ts = thread_counts(report)
    stream = ", ".join(f"{t} thread{'s' if t > 1 else ''}: {report['stream_read_gbs'][str(t)]:.1f}" for t in ts
                       if str(t) in report.get("stream_read_gbs", {}))
    lines = [f"machine: {mach['cpu']}, {mach['cores']} cores, {mach['mem_total_bytes'] / 2**30:.1f} GiB, "
             f"{mach['date']}; load average {' / '.join(f'{x:.2f}' for x in report['load_avg_start'])} at the start, "
             f"{' / '.join(f'{x:.2f}' for x in report['load_avg_end'])} at the end; STREAM read GB/s ({stream})",
             "",
             "| model | params | file GB | read/token GB | load ms | 1st token s | peak RSS GB (÷ file) | test | "
             + " | ".join(f"{t}t t/s" for t in ts) + " | " + " | ".join(f"{t}t of roofline (t/s)" for t in ts) + " |",
             "|---|---:|---:|---:|---:|---:|---:|---|" + "---:|" * (2 * len(ts))]
    for m in report["models"]:
        rss = m["peak_rss_mb"] * 2**20
        head = (f"| {m['preset']}{'' if m['fits_in_ram'] else ' (beyond RAM)'} | {params(m['n_params'])} | "
                f"{m['file_bytes'] / 1e9:.3f} | {m['bytes_per_token'] / 1e9:.3f} | {m['load_ms']:.0f} | "
                f"{m['first_token_ms'] / 1e3:.2f} | {rss / 1e9:.2f} ({rss / m['file_bytes']:.2f}) |")
        for kind in ("pp", "tg"):
            cells = [row(m, t, kind) for t in ts]
            name = next((c["test"] for c in cells if c), None)
            if name is None:
                continue
            lines.append(f"{head} {name} | " + " | ".join(ts_cell(c) for c in cells) + " | "
                         + " | ".join(roof_cell(c) if kind == "tg" else "" for c in cells) + " |")
            head = "| | | | | | | |"
    for m in report["models"]:
        if not m["fits_in_ram"]:
            lines.append(f"\n{m['preset']}: the file ({m['file_bytes'] / 1e9:.1f} GB) was larger than the memory "
                         f"available ({m['mem_available_bytes'] / 1e9:.1f} GB): mmap read it from disk for every token, "
                         "so its roofline is the disk's, not the memory's")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> str:
    """Three panels: tg tokens/s with the roofline, % of roofline (both against parameters, log x), peak RSS
    against file size. Returns a line saying what was written (or why not)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (pip install matplotlib)"
    models = report["models"]
    fig, (ax_ts, ax_roof, ax_rss) = plt.subplots(1, 3, figsize=(15, 4.6))
    for t, color in zip(thread_counts(report), ("tab:blue", "tab:orange", "tab:green", "tab:red")):
        pts = [(m["n_params"], row(m, t, "tg"), m) for m in models if row(m, t, "tg")]
        if not pts:
            continue
        xs = [p for p, _, _ in pts]
        ax_ts.errorbar(xs, [r["mean_ts"] for _, r, _ in pts], yerr=[r["sd_ts"] for _, r, _ in pts], marker="o",
                       color=color, capsize=2, label=f"tg, {t} thread{'s' if t > 1 else ''}")
        roof = [(p, r["roofline_ts"]) for p, r, _ in pts if "roofline_ts" in r]
        if roof:
            ax_ts.plot(*zip(*roof), linestyle="--", color=color, alpha=0.6, label=f"roofline, {t}t")
            ax_roof.plot([p for p, _ in roof], [100 * r["fraction_of_roofline"] for _, r, _ in pts if "roofline_ts" in r],
                         marker="o", color=color, label=f"{t} thread{'s' if t > 1 else ''}")
        for p, r, m in pts:
            if not m["fits_in_ram"]:
                ax_ts.annotate(f"{m['preset']}: beyond RAM,\nread from disk", (p, r["mean_ts"]), fontsize=7,
                               xytext=(-70, 10), textcoords="offset points")
    for ax in (ax_ts, ax_roof):
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.grid(True, which="both", alpha=0.3)
    ax_ts.set_yscale("log")
    ax_ts.set_title("generation tokens/s (log-log)")
    ax_ts.legend(fontsize=7)
    ax_roof.set_title("% of the read-bandwidth roofline")
    ax_roof.axhline(100, color="k", linewidth=0.8)
    ax_roof.legend(fontsize=7)
    files = [m["file_bytes"] / 1e9 for m in models]
    ax_rss.plot(files, [m["peak_rss_mb"] * 2**20 / 1e9 for m in models], marker="o", label="bitedge-run peak RSS")
    ax_rss.plot(files, files, linestyle="--", color="k", alpha=0.6, label="= file size")
    ax_rss.axhline(report["machine"]["mem_total_bytes"] / 1e9, color="tab:red", linestyle=":", label="RAM")
    for m, f in zip(models, files):
        ax_rss.annotate(m["preset"], (f, m["peak_rss_mb"] * 2**20 / 1e9), fontsize=7, xytext=(3, -9),
                        textcoords="offset points")
    ax_rss.set_xscale("log")
    ax_rss.set_yscale("log")
    ax_rss.set_xlabel("file GB (I2_S, Q8_0 embedding)")
    ax_rss.set_ylabel("GB")
    ax_rss.set_title("peak RSS against file size")
    ax_rss.grid(True, which="both", alpha=0.3)
    ax_rss.legend(fontsize=7)
    span = f"{models[0]['preset']} to {models[-1]['preset']}" if models else ""
    fig.suptitle(f"bitedge-run on bitedge dummy {span}: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
                 f"{report['machine']['date']}; shared: load average {report['load_avg_start'][0]:.1f} at the start, "
                 f"{report['load_avg_end'][0]:.1f} at the end", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"plot: {path}"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="re-print (and re-plot) a saved bench_sizes.py run")
    ap.add_argument("run", type=Path)
    ap.add_argument("--plot", type=Path)
    a = ap.parse_args()
    try:
        report = json.loads(a.run.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"{a.run}: cannot read a bench_sizes.py JSON report: {e}") from None
    print(markdown(report))
    if a.plot:
        print(plot(report, a.plot))
