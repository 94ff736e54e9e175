"""Uploads that a board can trust: checked by sha256, skipped when unchanged, resumed when interrupted.

A file is written to `<name>.partial` next to its destination and renamed into place only after its
sha256 has been checked on the board, so a board never sees a half-written binary or model. If the
connection drops, the partial file stays and the next upload continues from its size (and still checks
the whole file's hash at the end; on a mismatch the partial is discarded and the file sent again).

Before anything is sent the board is asked (one shell command) to create the folder, to create a file in it
and how much space it has (df), so a read-only filesystem, a folder the user may not write and a disk too
small are each said as such, with the numbers; a disk that fills up during the transfer loses the partial
file rather than staying full. Two uploads of the same destination at once (the same board under two names,
boards sharing an NFS home) take turns through a lock folder `<name>.lock` next to it, owned by the holder's
sshd session: a lock whose session is gone is taken over.
"""

from __future__ import annotations

import posixpath
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Connection

from bitedge.deploy.ssh import board_name, guarded, quote_argv, run, stall_timeout_of
from bitedge.errors import BitedgeError
from bitedge.model import sha256_file

CHUNK = 1 << 20


@dataclass
class UploadResult:
    remote_path: str
    sha256: str
    size: int
    action: str  # "skipped" (already there), "uploaded", "resumed"
    bytes_sent: int


_where = board_name
_stall = stall_timeout_of


def remote_home(conn: Connection) -> str:
    with guarded(conn, "finding the home folder"):
        return conn.sftp().normalize(".")


def resolve_remote_dir(conn: Connection, remote_dir: str) -> str:
    if remote_dir == "~":
        return remote_home(conn)
    if remote_dir.startswith("~/"):
        return posixpath.join(remote_home(conn), remote_dir[2:])
    return remote_dir


def _why(err: str) -> str:
    """A shell's error text → what is wrong, in words a user acts on."""
    low = err.lower()
    if "read-only" in low:
        return "the filesystem is read-only"
    if "permission denied" in low or "operation not permitted" in low:
        return "no permission to write there"
    if "no space" in low or "quota" in low:
        return "no space left on the device"
    return err.strip().splitlines()[-1] if err.strip() else "unknown error"


# mkdir -p, a test file, and the space available (df -P: POSIX format, 1024-byte blocks) in one round trip.
_PREPARE = r"""d={d}
if ! err=$(mkdir -p -- "$d" 2>&1); then printf 'mkdir=%s\n' "$err"; exit 0; fi
[ -d "$d" ] || { echo "mkdir=not a directory"; exit 0; }
t="$d/.bitedge-write-test.$$"
if ! err=$( (: > "$t") 2>&1); then printf 'write=%s\n' "$err"; exit 0; fi
rm -f -- "$t"
echo "avail_kb=$(df -Pk -- "$d" 2>/dev/null | awk 'NR==2 {print $4}')"
"""


def prepare_remote_dir(conn: Connection, path: str, lock: str | None = None) -> int | None | tuple[int | None, str]:
    """Create `path` on the board and check that files can be written there; returns the bytes free there (None
    when df does not say). Raises one BitedgeError saying whether the folder is read-only, not writable or full.

    lock: also try to take this lock (see _LOCK) in the same round trip; then returns (free, lock state)."""
    script = _PREPARE.replace("{d}", quote_argv([path]), 1)
    if lock:  # a command substitution is a subshell: its $PPID is still the sshd session
        script += 'echo "lock=$(\n' + _LOCK.replace("{l}", quote_argv([lock]), 1) + ')"\n'
    out = run(conn, script, timeout=_stall(conn) + 60).stdout
    info = dict(line.partition("=")[::2] for line in out.splitlines() if "=" in line)
    if "mkdir" in info:
        raise BitedgeError(f"{_where(conn)}: cannot create the folder {path}: {_why(info['mkdir'])}")
    if "write" in info:
        raise BitedgeError(f"{_where(conn)}: cannot write in {path}: {_why(info['write'])}")
    avail = info.get("avail_kb", "").strip()
    free = int(avail) * 1024 if avail.isdigit() else None
    return (free, info.get("lock", "").strip()) if lock else free


def free_bytes(conn: Connection, path: str) -> int | None:
    q = quote_argv([path])
    out = run(conn, f"df -Pk -- {q} 2>/dev/null | awk 'NR==2 {{print $4}}'", timeout=_stall(conn) + 60,
              check=False).stdout.strip()
    return int(out) * 1024 if out.isdigit() else None


def remote_mkdirs(conn: Connection, path: str) -> None:
    prepare_remote_dir(conn, path)


def remote_sha256(conn: Connection, path: str) -> str | None:
    """sha256 of a remote file (sha256sum on Linux, shasum on macOS), None if it does not exist."""
    q = quote_argv([path])
    cmd = f"if [ -f {q} ]; then (sha256sum {q} 2>/dev/null || shasum -a 256 {q}) | cut -d' ' -f1; fi"
    out = run(conn, cmd, timeout=3600).stdout.strip()
    if out and len(out) != 64:
        raise BitedgeError(f"{_where(conn)}: cannot hash {path}: no sha256sum or shasum on the board")
    return out or None


def _remote_size(sftp: paramiko.SFTPClient, path: str) -> int | None:
    try:
        return sftp.stat(path).st_size
    except FileNotFoundError:
        return None


def _remove(sftp: paramiko.SFTPClient, path: str) -> None:
    try:
        sftp.remove(path)
    except (OSError, paramiko.SSHException, EOFError):
        pass


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


# Take `<dest>.lock` (one atomic mkdir) and write its owner into it: this machine's name and the sshd session
# process of this connection ($PPID of the command), which lives exactly as long as the connection. A lock
# whose owner process is gone (an upload interrupted, its connection closed) is stale and removed.
_LOCK = r"""l={l}; me="$(hostname) $PPID"
if mkdir -- "$l" 2>/dev/null; then echo "$me" > "$l/owner"; echo acquired; exit 0; fi
[ -d "$l" ] || { echo retry; exit 0; }
owner=$(cat -- "$l/owner" 2>/dev/null); h=${owner% *}; p=${owner##* }
if [ -n "$owner" ] && [ "$h" = "$(hostname)" ] && ! { [ -d "/proc/$p" ] || kill -0 "$p" 2>/dev/null; }; then
  rm -rf -- "$l"; echo retry; exit 0
fi
echo "held by $owner"
"""


class _Lock:
    """`<dest>.lock` on the board while this upload writes `<dest>.partial` (see _LOCK)."""

    def __init__(self, conn: Connection, sftp: paramiko.SFTPClient, path: str, first: str = "", wait_s: float = 3600):
        self.conn, self.sftp, self.path, self.first, self.wait_s = conn, sftp, path, first, wait_s
        self.waited = False  # another upload held it: what it did must be looked at again

    def __enter__(self) -> "_Lock":
        deadline = time.monotonic() + self.wait_s
        script = _LOCK.replace("{l}", quote_argv([self.path]), 1)
        out = self.first
        while True:
            if out == "acquired":
                return self
            if not out:
                out = run(self.conn, script, timeout=_stall(self.conn) + 60).stdout.strip()
                continue
            self.waited = True
            if out.startswith("held") and time.monotonic() > deadline:
                raise BitedgeError(f"{_where(self.conn)}: another upload to {self.path[:-5]} has held {self.path} for "
                                   f"{self.wait_s:g} s; if no other bitedge is uploading there, remove {self.path}")
            if out.startswith("held"):
                time.sleep(0.3)
            out = ""

    def __exit__(self, *exc) -> None:
        try:  # two sftp requests: cheaper than a remote command
            self.sftp.remove(self.path + "/owner")
            self.sftp.rmdir(self.path)
        except (OSError, paramiko.SSHException, EOFError):
            pass  # connection gone: the lock is stale now and the next upload removes it


@contextmanager
def remote_lock(conn: Connection, path: str):
    """Hold `<path>.lock` on the board (its folder made and checked first) for a check-then-replace of `path` that
    other uploads of the same place must not interleave with. Do not upload to `path` itself meanwhile."""
    folder = posixpath.dirname(path)
    _, state = prepare_remote_dir(conn, folder, lock=path + ".lock")
    with _Lock(conn, conn.sftp(), path + ".lock", first=state) as lock:
        yield lock


def upload_file(conn: Connection, local: str | Path, remote_path: str, *, mode: int | None = None,
                progress=None, local_sha256: str | None = None) -> UploadResult:
    """Put `local` at `remote_path` (absolute) unless an identical file is already there.

    progress: optional callable(bytes_sent_now) for a progress bar.
    """
    local = Path(local)
    if not local.is_file():
        raise BitedgeError(f"{local}: no such file to upload")
    size = local.stat().st_size
    digest = local_sha256 or sha256_file(local)
    with guarded(conn, f"the upload of {local.name}") as tick:
        sftp = conn.sftp()
        if _same(conn, sftp, remote_path, size, digest, mode):
            return UploadResult(remote_path, digest, size, "skipped", 0)
        folder = posixpath.dirname(remote_path)
        free, state = prepare_remote_dir(conn, folder, lock=remote_path + ".lock")
        with _Lock(conn, sftp, remote_path + ".lock", first=state) as lock:
            if lock.waited:
                if _same(conn, sftp, remote_path, size, digest, mode):  # the other upload put it there
                    return UploadResult(remote_path, digest, size, "skipped", 0)
                free = free_bytes(conn, folder)
            partial = remote_path + ".partial"
            offset = _remote_size(sftp, partial) or 0
            if offset > size:
                offset = 0
            if free is not None and size - offset > free:
                _remove(sftp, partial)  # never leave a useless partial filling the disk
                raise BitedgeError(
                    f"{_where(conn)}: not enough space in {folder}: {_mb(free)} free, {local.name} needs "
                    f"{_mb(size - offset)}" + (f" more (of {_mb(size)})" if offset else "")
                    + "; free some space on the board or choose another remote_dir")

            def moved(n: int) -> None:
                tick()
                if progress:
                    progress(n)

            action = "resumed" if offset else "uploaded"
            sent = _send(conn, sftp, local, partial, offset, size, moved)
            if remote_sha256(conn, partial) != digest:
                _remove(sftp, partial)
                if offset == 0:
                    raise BitedgeError(f"{_where(conn)}: {remote_path}: sha256 mismatch after upload (transfer corrupted)")
                # the kept partial was not a prefix of this file: send it whole once
                sent += _send(conn, sftp, local, partial, 0, size, moved)
                if remote_sha256(conn, partial) != digest:
                    _remove(sftp, partial)
                    raise BitedgeError(f"{_where(conn)}: {remote_path}: sha256 mismatch after upload (transfer corrupted)")
                action = "uploaded"
            if mode is not None:
                sftp.chmod(partial, mode)
            try:
                sftp.posix_rename(partial, remote_path)
            except OSError as e:
                raise BitedgeError(f"{_where(conn)}: cannot move {partial} into place: {e}") from None
            return UploadResult(remote_path, digest, size, action, sent)


def _same(conn, sftp, remote_path: str, size: int, digest: str, mode: int | None) -> bool:
    if _remote_size(sftp, remote_path) != size or remote_sha256(conn, remote_path) != digest:
        return False
    if mode is not None and stat.S_IMODE(sftp.stat(remote_path).st_mode) != mode:
        try:
            sftp.chmod(remote_path, mode)
        except OSError as e:
            raise BitedgeError(f"{_where(conn)}: cannot chmod {remote_path}: {e}") from None
    return True


def _send(conn, sftp, local: Path, partial: str, offset: int, size: int, progress) -> int:
    sent = 0
    try:
        with open(local, "rb") as src, sftp.open(partial, "r+" if offset else "w") as dst:
            dst.set_pipelined(True)
            src.seek(offset)
            dst.seek(offset)
            while block := src.read(CHUNK):
                dst.write(block)
                sent += len(block)
                progress(len(block))
            dst.truncate(size)
    except (paramiko.SSHException, EOFError, OSError) as e:
        reason = str(e) or type(e).__name__
        transport = conn.client.get_transport()
        if isinstance(e, OSError) and transport is not None and transport.is_active():
            # the board refused a write (the connection is fine): say why, and drop the partial if the disk is full
            folder = posixpath.dirname(partial)
            free = free_bytes(conn, folder)
            if free is not None and free < max(CHUNK, size - offset - sent):
                _remove(sftp, partial)
                raise BitedgeError(
                    f"{_where(conn)}: the disk filled up during the upload of {local.name}: {_mb(free)} free in "
                    f"{folder} after {_mb(offset + sent)} of {_mb(size)}; the partial file was removed. Free some "
                    f"space on the board or choose another remote_dir") from None
            _remove(sftp, partial)
            raise BitedgeError(f"{_where(conn)}: the board refused to write {partial}: {_why(reason)}") from None
        raise BitedgeError(
            f"{_where(conn)}: upload of {local.name} interrupted after {offset + sent} of {size} bytes "
            f"({reason}); run the same command again to resume"
        ) from None
    return sent
