"""`bitedge serve`: run `bitedge-run serve` here (in the foreground) or on a board over SSH (detached).

On a board the server runs from the deployment folder: `serve.pid` holds "PID PORT", `serve.log` its output.
It is started with nohup and its input and output redirected, so it outlives the SSH session; a second start
finds it through the pid file and reports it instead of starting another. Health is checked through the SSH
connection itself (a direct-tcpip channel to the board's 127.0.0.1:PORT), so the server can stay bound to the
board's loopback; `forward` tunnels a local port to it over the same connection (fabric's forward_local).
"""

from __future__ import annotations

import json
import posixpath
import shlex
import subprocess
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from fabric import Connection

from bitedge.deploy.ssh import quote_argv, run
from bitedge.errors import BitedgeError

PID_FILE = "serve.pid"
LOG_FILE = "serve.log"


@dataclass
class RemoteServer:
    host: str
    pid: int
    port: int
    log: str
    started: bool  # False: it was already running

    def as_dict(self) -> dict:
        return asdict(self)


def server_args(model: str, *, listen: str, port: int, threads: int, slots: int, ctx: int | None,
                decode_batch: int | None = None) -> list[str]:
    args = ["serve", "-m", model, "--host", listen, "--port", str(port), "-t", str(threads), "--slots", str(slots)]
    return args + (["-c", str(ctx)] if ctx else []) + (["--decode-batch", str(decode_batch)] if decode_batch else [])


def run_local(command: list[str], api_key: str | None) -> int:
    """The server in the foreground until it exits or Ctrl-C; the key goes through the environment (not argv)."""
    import os

    env = dict(os.environ, **({"BITEDGE_API_KEY": api_key} if api_key else {}))
    proc = subprocess.Popen(command, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(30)
        raise


# ----------------------------------------------------------------------------------------------------------
# on a board


def _status_script(folder: str) -> str:
    pid_file = shlex.quote(posixpath.join(folder, PID_FILE))
    return (f"if [ -f {pid_file} ] && kill -0 \"$(cut -d' ' -f1 {pid_file})\" 2>/dev/null; "
            f"then cat {pid_file}; else echo none; fi")


def remote_status(conn: Connection, folder: str) -> tuple[int, int] | None:
    """(pid, port) of the server started from folder, if it is still running."""
    out = run(conn, _status_script(folder), timeout=60).stdout.strip()
    parts = out.split()
    return (int(parts[0]), int(parts[1])) if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit() else None


def http_over_ssh(conn: Connection, port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """GET http://127.0.0.1:PORT/path on the board through the SSH connection; (status, body)."""
    transport = conn.client.get_transport()
    channel = transport.open_channel("direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0), timeout=timeout)
    try:
        channel.settimeout(timeout)
        channel.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = b""
        while len(data) < 1 << 20:
            chunk = channel.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        channel.close()
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ")[1]), body
    except (IndexError, ValueError):
        raise BitedgeError(f"{conn.host}: not an HTTP answer on port {port}: {data[:80]!r}") from None


def _log_tail(conn: Connection, log: str) -> str:
    lines = run(conn, ["tail", "-n", "5", log], timeout=60, check=False).stdout.strip().splitlines()
    return lines[-1] if lines else "(empty log)"


def wait_healthy(conn: Connection, folder: str, port: int, timeout: float) -> dict:
    """Poll /health until it answers 200 (bounded by timeout); an exited server is an error with its last log line."""
    log = posixpath.join(folder, LOG_FILE)
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, body = http_over_ssh(conn, port, "/health")
            if status == 200:
                return json.loads(body)
        except BitedgeError:
            raise
        except Exception:  # not listening yet (the model is still loading): the channel is refused
            pass
        if remote_status(conn, folder) is None:
            raise BitedgeError(f"{conn.host}: the server exited: {_log_tail(conn, log)}")
        if time.monotonic() > deadline:
            raise BitedgeError(f"{conn.host}: the server did not answer /health within {timeout:g} s "
                               f"(log: {log}: {_log_tail(conn, log)})")
        time.sleep(0.5)


def start_remote(conn: Connection, folder: str, command: list[str], port: int, *, api_key: str | None = None,
                 timeout: float = 300.0) -> RemoteServer:
    """Start command detached in folder unless a server from there is running; wait until /health answers."""
    log = posixpath.join(folder, LOG_FILE)
    running = remote_status(conn, folder)
    if running:
        wait_healthy(conn, folder, running[1], timeout)
        return RemoteServer(conn.host, running[0], running[1], log, started=False)
    env = f"BITEDGE_API_KEY={shlex.quote(api_key)} " if api_key else ""
    pid_file = shlex.quote(posixpath.join(folder, PID_FILE))
    # `cd || exit` on its own: in `cd && cmd &` the whole list would go to a background subshell, whose pid is
    # not the server's and which keeps the SSH channel open
    script = (f"cd {shlex.quote(folder)} || exit 1; {env}nohup {quote_argv(command)} > {shlex.quote(log)} 2>&1 "
              f"< /dev/null & echo \"$! {int(port)}\" > {pid_file}")
    run(conn, script, timeout=60)
    pid, port = remote_status(conn, folder) or (0, port)
    if not pid:
        raise BitedgeError(f"{conn.host}: the server exited at once: {_log_tail(conn, log)}")
    wait_healthy(conn, folder, port, timeout)
    return RemoteServer(conn.host, pid, port, log, started=True)


def stop_remote(conn: Connection, folder: str, timeout: float = 30.0) -> int | None:
    """Stop the server started from folder (SIGTERM, then SIGKILL after timeout); its pid, or None if none ran."""
    running = remote_status(conn, folder)
    pid_file = posixpath.join(folder, PID_FILE)
    if running:
        pid = running[0]
        run(conn, ["kill", str(pid)], timeout=60, check=False)
        deadline = time.monotonic() + timeout
        while remote_status(conn, folder) and time.monotonic() < deadline:
            time.sleep(0.3)
        if remote_status(conn, folder):
            run(conn, ["kill", "-9", str(pid)], timeout=60, check=False)
    run(conn, ["rm", "-f", pid_file], timeout=60, check=False)
    return running[0] if running else None


@contextmanager
def forward(conn: Connection, local_port: int, remote_port: int):
    """127.0.0.1:local_port here -> 127.0.0.1:remote_port on the board, over the SSH connection."""
    with conn.forward_local(local_port=local_port, remote_port=remote_port, remote_host="127.0.0.1",
                            local_host="127.0.0.1"):
        yield f"http://127.0.0.1:{local_port}"
