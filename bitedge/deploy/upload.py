"""Uploads that a board can trust: checked by sha256, skipped when unchanged, resumed when interrupted.

A file is written to `<name>.partial` next to its destination and renamed into place only after its
sha256 has been checked on the board, so a board never sees a half-written binary or model. If the
connection drops, the partial file stays and the next upload continues from its size (and still checks
the whole file's hash at the end; on a mismatch the partial is discarded and the file sent again).
"""

from __future__ import annotations

import posixpath
import stat
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Connection

from bitedge.deploy.ssh import quote_argv, run
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


def remote_home(conn: Connection) -> str:
    return conn.sftp().normalize(".")


def resolve_remote_dir(conn: Connection, remote_dir: str) -> str:
    if remote_dir == "~":
        return remote_home(conn)
    if remote_dir.startswith("~/"):
        return posixpath.join(remote_home(conn), remote_dir[2:])
    return remote_dir


def remote_mkdirs(conn: Connection, path: str) -> None:
    sftp = conn.sftp()
    parts = []
    p = path
    while p not in ("", "/"):
        try:
            if stat.S_ISDIR(sftp.stat(p).st_mode):
                break
            raise BitedgeError(f"{conn.host}: {p} exists and is not a directory")
        except FileNotFoundError:
            parts.append(p)
            p = posixpath.dirname(p)
    for d in reversed(parts):
        sftp.mkdir(d)


def remote_sha256(conn: Connection, path: str) -> str | None:
    """sha256 of a remote file (sha256sum on Linux, shasum on macOS), None if it does not exist."""
    q = quote_argv([path])
    cmd = f"if [ -f {q} ]; then (sha256sum {q} 2>/dev/null || shasum -a 256 {q}) | cut -d' ' -f1; fi"
    out = run(conn, cmd, timeout=3600).stdout.strip()
    if out and len(out) != 64:
        raise BitedgeError(f"{conn.host}: cannot hash {path}: no sha256sum or shasum on the board")
    return out or None


def _remote_size(sftp: paramiko.SFTPClient, path: str) -> int | None:
    try:
        return sftp.stat(path).st_size
    except FileNotFoundError:
        return None


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
    sftp = conn.sftp()
    remote_mkdirs(conn, posixpath.dirname(remote_path))

    if _remote_size(sftp, remote_path) == size and remote_sha256(conn, remote_path) == digest:
        if mode is not None:
            sftp.chmod(remote_path, mode)
        return UploadResult(remote_path, digest, size, "skipped", 0)

    partial = remote_path + ".partial"
    offset = _remote_size(sftp, partial) or 0
    if offset > size:
        offset = 0
    action = "resumed" if offset else "uploaded"
    sent = _send(conn, sftp, local, partial, offset, size, progress)
    if remote_sha256(conn, partial) != digest:
        sftp.remove(partial)
        if offset == 0:
            raise BitedgeError(f"{conn.host}: {remote_path}: sha256 mismatch after upload (transfer corrupted)")
        # the kept partial was not a prefix of this file: send it whole once
        sent += _send(conn, sftp, local, partial, 0, size, progress)
        if remote_sha256(conn, partial) != digest:
            sftp.remove(partial)
            raise BitedgeError(f"{conn.host}: {remote_path}: sha256 mismatch after upload (transfer corrupted)")
        action = "uploaded"
    if mode is not None:
        sftp.chmod(partial, mode)
    sftp.posix_rename(partial, remote_path)
    return UploadResult(remote_path, digest, size, action, sent)


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
                if progress:
                    progress(len(block))
            dst.truncate(size)
    except (paramiko.SSHException, OSError, EOFError) as e:
        raise BitedgeError(
            f"{conn.host}: upload of {local.name} interrupted after {offset + sent} of {size} bytes "
            f"({e or type(e).__name__}); run the same command again to resume"
        ) from None
    return sent
