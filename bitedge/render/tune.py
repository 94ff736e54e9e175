"""The tuning cache: candidate kernel tiles per method, and the winners `bitedge tune` measured (or estimated), in a
JSON file keyed by CPU model, target, method and shape; the next build renders them.

    tiles = tuned_tiles(target, "tl1", shapes)          # -> render_kernels(target, shapes, "tl1", tiles, out)

The measuring itself is in bitedge.builder.tuner (it builds and runs kernel drivers: a layer above this one).
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterable
from pathlib import Path

from bitedge.errors import BitedgeError
from bitedge.targets import Target

CACHE_VERSION = 1
DEFAULT_CANDIDATES = {
    "i2_s": [{}],  # the runtime's hand-written kernels: one candidate, nothing to tile
    "tl1": [{"bm": 32, "bk": 128, "bn": 256}, {"bm": 64, "bk": 128, "bn": 256}, {"bm": 32, "bk": 252, "bn": 256},
            {"bm": 32, "bk": 64, "bn": 128}, {"bm": 32, "bk": 128, "bn": 32}, {"bm": 96, "bk": 128, "bn": 768}],
    "tl2": [{"bm": 32, "bk": 96, "bn": 256}, {"bm": 64, "bk": 96, "bn": 256}, {"bm": 32, "bk": 252, "bn": 256},
            {"bm": 32, "bk": 48, "bn": 128}, {"bm": 32, "bk": 96, "bn": 32}, {"bm": 96, "bk": 96, "bn": 768}],
}


def default_cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bitedge" / "tuning.json"


def cpu_model(target: Target | None = None) -> str:
    """The CPU the measurements run on: this machine's model name, or the emulated CPU of the target's runner."""
    if target is not None and target.runner:
        return f"emulated:{' '.join(target.runner)}"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "CPU part") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cache_key(cpu: str, target: Target, method: str, shape: tuple[int, int]) -> str:
    return f"{cpu}|{target.id}|{method}|{shape[0]}x{shape[1]}"


def load_cache(path: str | os.PathLike | None = None) -> dict:
    path = Path(path) if path is not None else default_cache_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {"version": CACHE_VERSION, "entries": {}}
    except (OSError, ValueError) as e:
        raise BitedgeError(f"{path}: unreadable tuning cache ({e}); delete it to start over") from None
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("entries"), dict):
        raise BitedgeError(f"{path}: not a version {CACHE_VERSION} bitedge tuning cache; delete it to start over")
    return data


def save_cache(data: dict, path: str | os.PathLike | None = None) -> Path:
    from bitedge.render import write_if_changed

    path = Path(path) if path is not None else default_cache_path()
    return write_if_changed(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def tuned_tiles(target: Target, method: str, shapes: Iterable[tuple[int, int]],
                cache_path: str | os.PathLike | None = None, cpu: str | None = None
                ) -> dict[tuple[int, int], dict[str, int]] | None:
    """Tiles per shape from the tuning cache (None when nothing is cached: use the defaults).

    cpu picks the entries measured on that CPU. Without it, this machine's CPU (or the emulated one of the
    target's runner) comes first; a shape it has not tuned takes the newest entry of any CPU for the same
    target profile, which is what a board tuned over SSH left (the build runs here, not on the board); entries
    measured anywhere rank above llvm-mca estimates ("estimated": true, from `bitedge tune --estimate`)."""
    entries = load_cache(cache_path)["entries"]
    here = cpu or cpu_model(target)
    found = {}
    for shape in shapes:
        shape = (int(shape[0]), int(shape[1]))
        entry = entries.get(cache_key(here, target, method, shape))
        if entry is None and cpu is None:
            suffix = cache_key("", target, method, shape)  # "|<target>|<method>|<N>x<K>"
            others = [e for key, e in entries.items() if key.endswith(suffix)]
            # a measured entry (a board's timing) always wins over a static estimate (tune --estimate)
            entry = max(others, key=lambda e: (not e.get("estimated"), str(e.get("measured_at", ""))), default=None)
        if entry:
            found[shape] = dict(entry["tiles"])
    return found or None
