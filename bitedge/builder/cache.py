"""The build cache: a key over every input of a build, and a content-addressed store of finished binaries.

key = sha256 of (the builder's version, every source and header's sha256, the rendered kernel sources, the
target profile's content, the toolchain's id, command and version, the compile and link flags). A build whose
key is in the store is a copy, not a compile. Store layout: <root>/<key[:2]>/<key>/{bitedge-run, manifest.json};
an entry is written under a temporary name and renamed when complete, and checked by sha256 when read.
Builds into one folder take turns (build_lock: a thread lock and an flock on <root>/locks/<hash>.lock), so the
second of two concurrent builds of one target is a cache hit, never a race on the folder's files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from bitedge.output import replaced_atomically

try:
    import fcntl
except ImportError:  # not POSIX: builds of one process are still serialised by the thread lock
    fcntl = None

CACHE_DIR_ENV = "BITEDGE_BUILD_CACHE"


def default_cache_dir() -> Path:
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "bitedge" / "builds"


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_key(parts: dict) -> str:
    """sha256 of the canonical JSON of everything that decides a build's output."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def copy_atomic(src: Path, dst: Path) -> None:
    """Copy src to dst through a temporary name in dst's folder (keeps the mode bits)."""
    with replaced_atomically(dst) as tmp:
        shutil.copy2(src, tmp)


# one lock per build folder for the threads of this process (a fleet's boards on one profile build in threads)
_folder_locks: dict[str, threading.Lock] = {}
_folder_locks_guard = threading.Lock()


class BuildCache:
    """Finished binaries by cache key."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    @contextmanager
    def build_lock(self, folder: Path, waiting: Callable[[], None] = lambda: None) -> Iterator[None]:
        """Hold the build folder for one build at a time: a thread lock for this process and an flock on
        <root>/locks/<folder's hash>.lock for other processes (in the cache, not in the folder: the folder holds
        only the build's own files). waiting() is called once if another build holds it."""
        name = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:32]
        with _folder_locks_guard:
            thread_lock = _folder_locks.setdefault(name, threading.Lock())
        if not thread_lock.acquire(blocking=False):
            waiting()
            thread_lock.acquire()
        fd = None
        try:
            try:
                (self.root / "locks").mkdir(parents=True, exist_ok=True)
                fd = os.open(self.root / "locks" / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                fd = None  # a cache folder we cannot write: other processes are not kept out, this one's threads are
            if fd is not None and fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    waiting()
                    fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            if fd is not None:
                os.close(fd)  # releases the flock
            thread_lock.release()

    def entry(self, key: str) -> Path:
        return self.root / key[:2] / key

    def get(self, key: str, binary_name: str) -> tuple[Path, dict] | None:
        """(binary, manifest) stored under key, or None if absent or damaged."""
        entry = self.entry(key)
        binary, manifest_path = entry / binary_name, entry / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text())
            if manifest.get("cache_key") != key or file_sha256(binary) != manifest["output"]["sha256"]:
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return binary, manifest

    def put(self, key: str, binary: Path, manifest: Path) -> None:
        """Store a finished build; a failure to write the cache never fails the build."""
        entry = self.entry(key)
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{key[:8]}-"))
        except OSError:
            return
        try:
            shutil.copy2(binary, tmp / binary.name)
            shutil.copy2(manifest, tmp / "manifest.json")
            if entry.exists():
                shutil.rmtree(entry)
            os.replace(tmp, entry)
        except OSError:
            pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
