"""Put the runtime and a model on a board and run them there."""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass, field
from pathlib import Path

from fabric import Connection

from bitedge.board import BoardInfo
from bitedge.deploy.probe import check_binary_runs_on, probe
from bitedge.deploy.ssh import HostSpec, guarded, run
from bitedge.deploy.upload import UploadResult, remote_lock, remote_sha256, resolve_remote_dir, upload_file
from bitedge.errors import BitedgeError
from bitedge.model import sha256_file
from bitedge.output import last_json

# Cumulative energy counters a board may expose (microjoules): Intel/AMD RAPL powercap, hwmon energy sensors.
ENERGY_SCRIPT = r"""
t=0; n=0
for f in /sys/class/powercap/intel-rapl:[0-9]/energy_uj /sys/class/powercap/amd-rapl:[0-9]/energy_uj /sys/class/hwmon/hwmon*/energy[0-9]_input; do
  if [ -r "$f" ]; then v=$(cat "$f" 2>/dev/null) && [ -n "$v" ] && t=$((t + v)) && n=$((n + 1)); fi
done
[ "$n" -gt 0 ] && echo "$t" || echo "n/a"
"""


@dataclass
class Deployment:
    spec: HostSpec
    board: BoardInfo
    remote_dir: str
    binary: str  # remote path of bitedge-run
    model: str | None  # remote path of the model
    runner: list[str] = field(default_factory=list)
    uploads: list[UploadResult] = field(default_factory=list)
    check: str = ""  # what the runtime's start check said on the board (`check`: the CPU; `info -m`: the model)

    def command(self, *args: str) -> list[str]:
        return [*self.runner, self.binary, *args]

    def as_dict(self) -> dict:
        return {
            "host": self.spec.name, "board": self.board.as_dict(), "remote_dir": self.remote_dir,
            "binary": self.binary, "model": self.model, "runner": self.runner,
            "uploads": [u.__dict__ for u in self.uploads], "check": self.check,
        }


def deploy(conn: Connection, spec: HostSpec, binary: str | Path, model: str | Path | None = None, *,
           runner: list[str] | None = None, progress=None, verify: bool = True) -> Deployment:
    """Upload bitedge-run (and a model) into the board's remote_dir, check they arrived whole and run.

    A new bitedge-run goes to bin/bitedge-run.new and replaces bin/bitedge-run only once it has run on the board
    (on the model, when one is deployed): a build the board cannot run leaves the installed one working."""
    board = probe(conn)
    runner = list(runner or [])
    check_binary_runs_on(binary, board, runner)
    remote_dir = resolve_remote_dir(conn, spec.remote_dir)
    remote_model = None
    uploads = []
    if model is not None:
        remote_model = posixpath.join(remote_dir, "models", Path(model).name)
        uploads.append(upload_file(conn, model, remote_model, progress=progress))
    installed = posixpath.join(remote_dir, "bin", "bitedge-run")
    # with a model: load it; without one (a runtime-only deploy): the runtime's CPU check alone
    check = ["info", "-m", remote_model] if remote_model else ["check"]
    digest = sha256_file(binary)
    with remote_lock(conn, installed):  # one check-and-swap at a time (one board under two names in a fleet)
        if remote_sha256(conn, installed) == digest:
            with guarded(conn, "checking bitedge-run"):
                if stat.S_IMODE(conn.sftp().stat(installed).st_mode) != 0o755:
                    conn.sftp().chmod(installed, 0o755)
            up = UploadResult(installed, digest, Path(binary).stat().st_size, "skipped", 0)
        else:
            staged = installed + ".new"
            up = upload_file(conn, binary, staged, mode=0o755, progress=progress, local_sha256=digest)
            result = run(conn, [*runner, staged, *check], timeout=300, check=False)
            if result.exited != 0:
                run(conn, ["rm", "-f", "--", staged], timeout=60, check=False)
                raise BitedgeError(f"{spec.name}: the new bitedge-run does not run on the board ({_last_line(result)}); "
                                   f"the installed one was left in place")
            with guarded(conn, "installing bitedge-run"):
                conn.sftp().posix_rename(staged, installed)
            up = UploadResult(installed, up.sha256, up.size, up.action, up.bytes_sent)
    uploads.insert(0, up)
    dep = Deployment(spec, board, remote_dir, installed, remote_model, runner, uploads)
    if verify:
        result = run(conn, dep.command(*check), timeout=300, check=False)
        if result.exited != 0:
            raise BitedgeError(f"{spec.name}: bitedge-run does not start on the board: {_last_line(result)}")
        lines = (result.stdout or "").strip().splitlines()
        dep.check = lines[0] if lines else ""
    return dep


def _last_line(result) -> str:
    lines = (result.stderr or result.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit {result.exited}"


def read_energy_uj(conn: Connection) -> int | None:
    out = run(conn, ENERGY_SCRIPT, timeout=30, check=False).stdout.strip()
    return int(out) if out.isdigit() else None


def run_json(conn: Connection, dep: Deployment, args: list[str], *, timeout: float, stream: bool = False):
    """Run bitedge-run with --json remotely and parse the last JSON document on stdout."""
    result = run(conn, dep.command(*args, "--json"), timeout=timeout, stream=stream)
    data = last_json(result.stdout)
    if data is None:
        raise BitedgeError(f"{dep.spec.name}: bitedge-run printed no JSON result: {result.stdout.strip()[-200:]!r}")
    return data


def remote_generate(conn: Connection, dep: Deployment, *, prompt: str, n: int, threads: int = 1,
                    timeout: float = 600, extra: list[str] = ()) -> dict:
    if not dep.model:
        raise BitedgeError("no model deployed")
    return run_json(conn, dep, ["generate", "-m", dep.model, "-p", prompt, "-n", str(n), "-t", str(threads), *extra],
                    timeout=timeout)


def remote_bench(conn: Connection, dep: Deployment, *, n_prompt: int = 128, n_gen: int = 128, threads: str = "1",
                 reps: int = 5, timeout: float = 3600) -> dict:
    """Run `bitedge-run bench` remotely: {"rows": [...llama-bench style rows], "energy_j": J or None}.

    Energy is the board's cumulative counters read before and after the whole run, where it has them."""
    if not dep.model:
        raise BitedgeError("no model deployed")
    e0 = read_energy_uj(conn)
    rows = run_json(conn, dep, ["bench", "-m", dep.model, "-p", str(n_prompt), "-n", str(n_gen), "-t", threads,
                                "-r", str(reps)], timeout=timeout)
    e1 = read_energy_uj(conn)
    if not isinstance(rows, list):
        raise BitedgeError(f"{dep.spec.name}: bitedge-run bench: expected a JSON array of rows")
    energy = (e1 - e0) / 1e6 if e0 is not None and e1 is not None and e1 >= e0 else None
    return {"rows": rows, "energy_j": energy}


class BoardTimer:
    """Runs kernel drivers on a board over SSH for bitedge.builder.tuner: files are uploaded (sha256-checked, kept
    when unchanged) into <remote_dir>/tune, commands run under the profile's runner when it has one, and the
    cache entries are keyed by the board's CPU. close() removes the folder."""

    def __init__(self, conn: Connection, spec: HostSpec, target, board: BoardInfo | None = None, progress=None):
        from bitedge.render.tune import cpu_model  # the tuner's CPU naming (lazily: deploy alone needs no jinja2)

        self.conn, self.spec = conn, spec
        self.board = board or probe(conn)
        self.prefix = list(target.runner or [])
        self.emulated = bool(self.prefix)
        if not self.prefix and (target.os, target.arch) != (self.board.os, self.board.arch):
            raise BitedgeError(f"{spec.name} is {self.board.os}/{self.board.arch} but profile {target.id} builds for "
                               f"{target.os}/{target.arch}: pick the board's profile (bitedge probe --host {spec.name} suggests one)")
        # under the profile's runner the board's CPU is the emulated one, named as a local run under it is
        self.cpu = (cpu_model(target) if self.emulated
                    else self.board.cpu or self.board.board or f"{self.board.os}/{self.board.arch}")
        self.where = spec.name + (f" under {self.prefix[0]}" if self.prefix else "")
        self.dir = posixpath.join(resolve_remote_dir(conn, spec.remote_dir), "tune")
        self.progress = progress

    def stage(self, path: str | Path, name: str) -> str:
        """Upload a local file; returns its path on the board. Executables are checked against the board first."""
        executable = os.access(path, os.X_OK)
        if executable:
            check_binary_runs_on(path, self.board, self.prefix)
        remote = posixpath.join(self.dir, name)
        upload_file(self.conn, path, remote, mode=0o755 if executable else 0o644, progress=self.progress)
        return remote

    def run(self, argv: list[str], timeout: float) -> str:
        return run(self.conn, [*self.prefix, *argv], timeout=timeout).stdout

    def close(self) -> None:
        run(self.conn, ["rm", "-rf", self.dir], timeout=60, check=False)


__all__ = ["BoardTimer", "Deployment", "deploy", "remote_generate", "remote_bench", "read_energy_uj"]
