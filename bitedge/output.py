"""Output helpers shared by every CLI command: one --json printer, progress bars on stderr."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager

import numpy as np


def _default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "__fspath__"):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def last_json(text: str):
    """The JSON document a program printed last on stdout (text may stream before it); None if there is none."""
    starts = [i + 1 for i in (text.rfind("\n{"), text.rfind("\n[")) if i >= 0]
    candidates = ([text.lstrip()] if text.lstrip()[:1] in ("{", "[") else []) + [text[i:] for i in sorted(starts)]
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            continue
    return None


@contextmanager
def replaced_atomically(path, *, hidden: bool = True):
    """The one temp-file-and-rename: yields a temporary path in path's folder to write; on a clean exit it is
    renamed onto path, on any exception removed (path is never half-written). The temporary name carries the pid
    and thread, so two writers of one file never share it; hidden=False leaves it visible (`<name>.partial-<pid>`,
    a long GGUF conversion a user may watch)."""
    import os
    import threading
    from pathlib import Path

    target = Path(path)
    if hidden:
        tmp = target.with_name(f".{target.name}.partial-{os.getpid()}-{threading.get_ident()}")
    else:
        tmp = target.with_name(f"{target.name}.partial-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path, text: str) -> None:
    """Write a file under a temporary name in its folder and rename it into place: never half-written."""
    from pathlib import Path

    from bitedge.errors import BitedgeError

    target = Path(path)
    if target.is_dir():
        raise BitedgeError(f"{target}: is a folder, not a file to write")
    if not target.parent.is_dir():
        raise BitedgeError(f"{target}: cannot write it: the folder {target.parent} does not exist")
    try:
        with replaced_atomically(target) as tmp:
            tmp.write_text(text)
    except OSError as e:
        raise BitedgeError(f"{target}: cannot write it: {e.strerror or e}") from None


def print_json(data) -> None:
    """The one way commands print --json: indented, stable key order as given, newline-terminated."""
    sys.stdout.write(json.dumps(data, indent=2, default=_default) + "\n")


@contextmanager
def progress(description: str, total: float | None, unit: str = "", enabled: bool = True):
    """A rich progress bar on stderr; yields advance(n). Disabled (a no-op) when not enabled."""
    if not enabled:
        yield lambda n=1: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [TextColumn("{task.description}"), BarColumn()]
    if unit == "bytes":
        columns.append(DownloadColumn())
    else:
        columns.append(TextColumn("{task.completed:.0f}/{task.total:.0f}" if total else "{task.completed:.0f}"))
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
