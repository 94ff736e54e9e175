"""bench_peers.py's results: mean ± sd per cell, bitedge against the best peer, the roofline, markdown and a plot.

Samples come in as {(preset, engine, threads, test): [tokens/s, ...]} (every sample of every round); the report is
plain JSON so that the table can be re-made from a saved run (`python3 bench/peers_report.py run.json`).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

BITEDGE = "bitedge"  # engine labels starting with this are bitedge's; every other engine is a peer


def summarize(samples: dict[tuple, list[float]], files: dict[tuple, int], rss: dict[tuple, float],
              stream_gbs: dict[int, float], presets: list[str], engines: list[str]) -> list[dict]:
    """One entry per preset: rows (engine, threads, test, mean, sd, n, roofline) and ratios of bitedge to the best
    peer per (threads, test). Generation's roofline: read bandwidth / the engine's file size (every weight is read
    once per token; the tied embedding doubles as the output matrix)."""
    models = []
    for preset in presets:
        rows = []
        for (p, engine, threads, test), ts in sorted(samples.items(), key=lambda kv: (kv[0][2], kv[0][3], engines.index(kv[0][1]))):
            if p != preset:
                continue
            row = {"engine": engine, "threads": threads, "test": test, "mean_ts": statistics.mean(ts),
                   "sd_ts": statistics.stdev(ts) if len(ts) > 1 else 0.0, "n_samples": len(ts)}
            size = files.get((preset, engine))
            if test.startswith("tg") and size and stream_gbs.get(threads):
                row["roofline_ts"] = stream_gbs[threads] * 1e9 / size
                row["fraction_of_roofline"] = row["mean_ts"] / row["roofline_ts"]
            rows.append(row)
        ratios = []
        for threads, test in sorted({(r["threads"], r["test"]) for r in rows}):
            cell = [r for r in rows if r["threads"] == threads and r["test"] == test]
            ours = [r for r in cell if r["engine"].startswith(BITEDGE)]
            peers = [r for r in cell if not r["engine"].startswith(BITEDGE)]
            if ours and peers:
                best = max(peers, key=lambda r: r["mean_ts"])
                ratios.append({"threads": threads, "test": test, "best_peer": best["engine"],
                               "ratio": ours[0]["mean_ts"] / best["mean_ts"]})
        models.append({"preset": preset, "rows": rows, "ratios": ratios,
                       "file_bytes": {e: files[(preset, e)] for e in engines if (preset, e) in files},
                       "peak_rss_mb": {e: rss[(preset, e)] for e in engines if (preset, e) in rss}})
    return models


def cell(rows: list[dict], engine: str, threads: int) -> str:
    parts = []
    for kind in ("pp", "tg"):
        r = [x for x in rows if x["engine"] == engine and x["threads"] == threads and x["test"].startswith(kind)]
        parts.append(f"{r[0]['mean_ts']:.1f} ± {r[0]['sd_ts']:.1f}" if r else "–")
    return " / ".join(parts)


def markdown(report: dict) -> str:
    engines = report["engines"]
    m0 = report["machine"]
    stream = ", ".join(f"{v:.1f} GB/s at {t} thread(s)" for t, v in report["stream_read_gbs"].items())
    out = [f"{m0['cpu']}, {m0['cores']} cores, {m0['date']}; STREAM read {stream}; {report['method']}", "",
           "pp / tg tokens/s, mean ± sd:", "",
           "| shape, threads | " + " | ".join(engines) + " | bitedge / best peer, pp · tg |",
           "|---|" + "---|" * len(engines) + "---|"]
    for m in report["models"]:
        for threads in sorted({r["threads"] for r in m["rows"]}):
            ratio = []
            for kind in ("pp", "tg"):
                r = [x for x in m["ratios"] if x["threads"] == threads and x["test"].startswith(kind)]
                ratio.append(f"{r[0]['ratio']:.2f}× ({r[0]['best_peer']})" if r else "–")
            out.append(f"| {m['preset']}, {threads} | " + " | ".join(cell(m["rows"], e, threads) for e in engines)
                       + f" | {' · '.join(ratio)} |")
    out += ["", "Generation against the read-bandwidth roofline (STREAM read GB/s / file bytes), and memory:", "",
            "| shape, threads | " + " | ".join(engines) + " |", "|---|" + "---|" * len(engines)]
    for m in report["models"]:
        for threads in sorted({r["threads"] for r in m["rows"]}):
            cells = []
            for e in engines:
                r = [x for x in m["rows"] if x["engine"] == e and x["threads"] == threads and "fraction_of_roofline" in x]
                cells.append(f"{r[0]['fraction_of_roofline']:.0%} of {r[0]['roofline_ts']:.1f}" if r else "–")
            out.append(f"| {m['preset']}, {threads} | " + " | ".join(cells) + " |")
        out.append(f"| {m['preset']} file MB / peak RSS MB | " + " | ".join(
            f"{m['file_bytes'][e] / 1e6:.0f} / {m['peak_rss_mb'][e]:.0f}" if e in m["file_bytes"] and e in m["peak_rss_mb"]
            else "–" for e in engines) + " |")
    checks = [(m["preset"], label, result) for m in report["models"] for label, result in m.get("checks", {}).items()]
    if checks:
        out += ["", "Same weights:"] + [f"- {p} {label}: {result}" for p, label, result in checks]
    return "\n".join(out)


def plot(report: dict, path: Path) -> str:
    """Grouped bars (pp left, tg right) per shape x threads, one bar per engine with its sd; the roofline as a
    tick over each tg group. Returns a line saying what was written (or why not)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (pip install matplotlib)"
    engines = report["engines"]
    groups = [(m, t) for m in report["models"] for t in sorted({r["threads"] for r in m["rows"]})]
    fig, axes = plt.subplots(1, 2, figsize=(6 + 1.6 * len(groups), 4.5))
    width = 0.8 / len(engines)
    for ax, kind in zip(axes, ("pp", "tg")):
        for i, e in enumerate(engines):
            xs, ys, sds = [], [], []
            for g, (m, t) in enumerate(groups):
                r = [x for x in m["rows"] if x["engine"] == e and x["threads"] == t and x["test"].startswith(kind)]
                if r:
                    xs.append(g + (i - (len(engines) - 1) / 2) * width)
                    ys.append(r[0]["mean_ts"])
                    sds.append(r[0]["sd_ts"])
            ax.bar(xs, ys, width, yerr=sds, label=e, capsize=2)
        if kind == "tg":
            for g, (m, t) in enumerate(groups):
                roof = [x["roofline_ts"] for x in m["rows"] if x["threads"] == t and x["engine"].startswith(BITEDGE)
                        and "roofline_ts" in x]
                if roof:
                    ax.hlines(roof[0], g - 0.45, g + 0.45, colors="k", linestyles="dashed",
                              label="roofline (bitedge file)" if g == 0 else None)
        ax.set_xticks(range(len(groups)), [f"{m['preset']}, {t}t" for m, t in groups])
        ax.set_title(f"{kind}{report['n_prompt'] if kind == 'pp' else report['n_gen']} tokens/s")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"{report['machine']['cpu']}, {report['machine']['date']}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot: {path}"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python3 bench/peers_report.py RUN.json   (re-prints a saved bench_peers.py run)")
    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
