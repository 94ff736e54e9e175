"""SSH connections to boards with fabric, host keys checked like OpenSSH does.

Fabric trusts every host key by default (paramiko AutoAddPolicy, fabric#2071); bitedge loads
~/.ssh/known_hosts (plus an optional extra file) and refuses an unknown key unless the user opts in
with --accept-new-host-key, which then records the key (OpenSSH's StrictHostKeyChecking=accept-new).
A changed key is always refused.
"""

from __future__ import annotations

import logging
import shlex
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
from fabric import Config, Connection
from fabric.runners import Remote
from invoke.exceptions import CommandTimedOut, UnexpectedExit

from bitedge.errors import BitedgeError

DEFAULT_CONNECT_TIMEOUT = 15.0
DEFAULT_COMMAND_TIMEOUT = 600.0
DEFAULT_STALL_TIMEOUT = 60.0

# paramiko logs transport failures (banner errors, with tracebacks) through logging; with no handler configured
# Python would print them on stderr. bitedge reports every such failure itself, in one line.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


@dataclass
class HostSpec:
    """Where a board is: an ssh_config alias or user@host:port, plus bitedge's per-board settings."""

    name: str  # label used in results (inventory key, or the alias)
    host: str  # what fabric connects to: alias, hostname or IP
    user: str | None = None
    port: int | None = None
    identity: str | None = None
    target: str | None = None  # board profile id
    remote_dir: str = "~/bitedge"
    extra: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "HostSpec":
        """'pi@raspberrypi.local:2222', 'pi5' (an ssh_config alias), 'host', 'user@[::1]:2222' or '::1'."""
        user = port = None
        text = text.strip()
        rest = text
        if "@" in rest:
            user, rest = rest.rsplit("@", 1)
            if not user:
                raise BitedgeError(f"host {text!r}: empty user name before '@'")
        p = None
        if rest.startswith("["):  # [IPv6] or [IPv6]:port
            addr, close, tail = rest[1:].partition("]")
            if not close or not addr or (tail and not tail.startswith(":")):
                raise BitedgeError(f"host {text!r}: expected [ADDRESS] or [ADDRESS]:PORT")
            rest, p = addr, (tail[1:] if tail else None)
        elif rest.count(":") == 1:
            rest, p = rest.split(":")
        if p is not None:
            if not p.isdigit() or not 0 < int(p) < 65536:
                raise BitedgeError(f"host {text!r}: port {p!r} is not a number from 1 to 65535")
            port = int(p)
        if not rest:
            raise BitedgeError(f"host {text!r}: no host name")
        if any(c.isspace() for c in rest) or (user and any(c.isspace() for c in user)):
            raise BitedgeError(f"host {text!r}: a host name cannot contain spaces")
        return cls(name=text, host=rest, user=user or None, port=port)


class _RecordNewHostKey(paramiko.MissingHostKeyPolicy):
    """accept-new: trust a key never seen before and save it; a changed key still fails (paramiko raises)."""

    def __init__(self, path: Path):
        self.path = path

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class _RejectUnknownHostKey(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client, hostname, key):
        raise BitedgeError(
            f"host key of {hostname} is not in known_hosts; if you trust this board, run again with "
            f"--accept-new-host-key (or add it with: ssh-keyscan -p PORT HOST >> ~/.ssh/known_hosts)"
        )


def _secure(conn: Connection, known_hosts: Path | None, accept_new: bool) -> None:
    client = conn.client
    user_known = Path(known_hosts) if known_hosts else Path("~/.ssh/known_hosts").expanduser()
    if known_hosts is None:
        try:
            client.load_system_host_keys()
        except OSError:
            pass
    elif user_known.exists():
        client.load_host_keys(str(user_known))
    client.set_missing_host_key_policy(_RecordNewHostKey(user_known) if accept_new else _RejectUnknownHostKey())
    if isinstance(conn.gateway, Connection):  # ProxyJump: the jump host is checked the same way
        _secure(conn.gateway, known_hosts, accept_new)


def ssh_config_parse_error(paths, error: Exception) -> str:
    """'ssh_config FILE line N: ...' for the first of paths (fabric reads the user's, then the system's) that
    paramiko cannot parse: the line found by parsing the file one line longer at a time (paramiko says what,
    not where)."""
    for path in paths:
        file = Path(path).expanduser()
        try:
            lines = file.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for n in range(1, len(lines) + 1):
            try:
                paramiko.SSHConfig.from_text("\n".join(lines[:n]))
            except paramiko.ConfigParseError as e:
                line = lines[n - 1].strip()
                what = f"cannot parse {line!r} (a setting is 'Keyword value')" if str(e).startswith("Unparsable") \
                    else f"{e} (in {line!r})"
                return f"ssh_config {path} line {n}: {what}"
    return f"ssh_config {' or '.join(map(str, paths))}: {error}"


def connect(
    spec: HostSpec,
    *,
    ssh_config: str | Path | None = None,
    known_hosts: str | Path | None = None,
    accept_new_host_key: bool = False,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
) -> Connection:
    """Open a checked connection. ssh_config: a file to read instead of ~/.ssh/config (tests use one).

    stall_timeout: a transfer or remote command during which the board answers nothing (not even an SSH
    keepalive) for this many seconds is abandoned with one BitedgeError naming the board (see guarded)."""
    runners = {"remote": _Remote}
    if ssh_config and not Path(ssh_config).is_file():
        raise BitedgeError(f"--ssh-config {ssh_config}: no such file")
    try:
        config = (Config(runtime_ssh_path=str(ssh_config), overrides={"runners": runners}) if ssh_config
                  else Config(overrides={"load_ssh_configs": True, "runners": runners}))
        if ssh_config:
            config.load_ssh_config()
    except paramiko.ConfigParseError as e:  # a line paramiko cannot parse: name the file and the line
        paths = [ssh_config] if ssh_config else ["~/.ssh/config", "/etc/ssh/ssh_config"]
        raise BitedgeError(ssh_config_parse_error(paths, e)) from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise BitedgeError(f"{ssh_config or '~/.ssh/config'}: cannot read it as an ssh_config: {e}") from None
    kwargs = {}
    if spec.identity:
        kwargs["key_filename"] = [str(Path(spec.identity).expanduser())]
    kwargs["banner_timeout"] = connect_timeout
    kwargs["auth_timeout"] = connect_timeout
    try:
        conn = Connection(
            spec.host, user=spec.user, port=spec.port, config=config,
            connect_timeout=connect_timeout, connect_kwargs=kwargs,
        )
    except (ValueError, TypeError) as e:  # a bad value in ssh_config (Port notaport, ...)
        source = f"--ssh-config {ssh_config}" if ssh_config else "~/.ssh/config"
        raise BitedgeError(f"{spec.name}: bad setting for this host in {source}: {e}") from None
    _secure(conn, Path(known_hosts) if known_hosts else None, accept_new_host_key)
    where = f"{conn.user}@{conn.host}:{conn.port}"
    if spec.name not in (conn.host, where):  # an inventory name or ssh alias: say which board the user named
        where = f"{spec.name} ({where})"
    try:
        conn.open()
    except BitedgeError:
        raise
    except paramiko.BadHostKeyException as e:
        raise BitedgeError(
            f"{where}: HOST KEY CHANGED (got {e.key.get_name()}); refusing to connect. If the board was "
            f"reinstalled, remove its old line from known_hosts"
        ) from None
    except paramiko.AuthenticationException as e:
        raise BitedgeError(f"{where}: authentication failed ({e}); check the user and key (IdentityFile)") from None
    except (socket.timeout, TimeoutError, paramiko.SSHException, OSError, EOFError) as e:
        transport = conn.client.get_transport()
        conn.close()
        if transport is not None and not transport.remote_version:
            # TCP connected but no "SSH-2.0-..." banner came back (a web server, a firewall, a hung sshd)
            raise BitedgeError(f"{spec.name}: no SSH server answered on {conn.port} within {connect_timeout:g} s") from None
        if isinstance(e, (socket.timeout, TimeoutError)):
            raise BitedgeError(f"{where}: connection timed out after {connect_timeout:g} s") from None
        reason = str(e).replace("[Errno None] ", "") or type(e).__name__
        raise BitedgeError(f"{where}: cannot connect: {reason}") from None
    # kept on the paramiko client: attributes set on a fabric Connection become config keys
    conn.client.bitedge_where = spec.name
    conn.client.bitedge_live = _Liveness(conn.client.get_transport(), stall_timeout)
    return conn


def board_name(conn: Connection) -> str:
    """The board as the user named it (inventory name, alias or user@host:port)."""
    return getattr(conn.client, "bitedge_where", None) or conn.host


def stall_timeout_of(conn: Connection) -> float:
    live = getattr(conn.client, "bitedge_live", None)
    return live.stall if live else DEFAULT_STALL_TIMEOUT


class _Liveness:
    """Is the board still answering? A thread sends an SSH keepalive (a global request the server must answer,
    as OpenSSH's ServerAliveInterval does) every stall/4 s and notes each answer; a second thread, while a guarded
    operation runs, closes the connection once neither an answer nor progress came for `stall` seconds. Closing
    it makes the blocked read or write in the operation fail; guarded() then reports the stall."""

    def __init__(self, transport: paramiko.Transport, stall: float):
        self.transport, self.stall = transport, float(stall)
        self.last = time.monotonic()
        self.ops: list[str] = []
        self.fired: str | None = None
        self.lock = threading.Lock()
        for target in (self._ping, self._watch):
            threading.Thread(target=target, daemon=True, name=f"bitedge-{target.__name__[1:]}").start()

    def _ping(self) -> None:
        interval = max(0.1, min(5.0, self.stall / 4))
        while self.transport.is_active():
            try:
                self.transport.global_request("keepalive@openssh.com", wait=True)
            except Exception:  # the connection went away: nothing left to watch
                return
            if not self.transport.is_active():
                return
            self.tick()
            time.sleep(interval)

    def _watch(self) -> None:
        while self.transport.is_active():
            time.sleep(min(0.2, self.stall / 4))
            with self.lock:
                stalled = self.ops and time.monotonic() - self.last > self.stall
                if stalled:
                    self.fired = self.ops[-1]
            if stalled:
                self.transport.close()
                return

    def tick(self, *_) -> None:
        """Progress (an answer from the board, or bytes moved)."""
        self.last = time.monotonic()

    def begin(self, what: str) -> None:
        with self.lock:
            self.ops.append(what)
            self.last = max(self.last, time.monotonic())

    def end(self) -> None:
        with self.lock:
            self.ops.pop()


@contextmanager
def guarded(conn: Connection, what: str):
    """Run a transfer or remote command under the connection's stall watch; yields tick(n) to note progress.

    If the board stops answering for the stall timeout, the connection is closed and this raises one
    BitedgeError naming the board and what was going on, whatever the interrupted call raised."""
    live: _Liveness | None = getattr(conn.client, "bitedge_live", None)
    if live is None:
        yield lambda *_: None
        return

    def stalled() -> BitedgeError:
        return BitedgeError(f"{board_name(conn)}: the board stopped answering during "
                            f"{live.fired}: no progress for {live.stall:g} s (stall timeout); gave up")

    if live.fired:
        raise stalled()
    live.begin(what)
    try:
        yield live.tick
    except Exception:
        if live.fired:
            raise stalled() from None
        raise
    finally:
        live.end()
    if live.fired:
        raise stalled()


class _Remote(Remote):
    """fabric's runner, except that its timeout kill (a timer thread closing the channel) does not crash when the
    connection is already gone: the command is over either way, and run() reports the timeout."""

    def kill(self):
        try:
            super().kill()
        except (EOFError, OSError, paramiko.SSHException):
            pass


def quote_argv(argv: list[str]) -> str:
    """A shell command line from argv, every word quoted: no injection through file names."""
    return " ".join(shlex.quote(str(a)) for a in argv)


def run(conn: Connection, argv: list[str] | str, *, timeout: float = DEFAULT_COMMAND_TIMEOUT, check: bool = True,
        stream: bool = False, env: dict | None = None):
    """Run a command remotely with a timeout. argv lists are quoted; a str is used as a trusted shell snippet."""
    cmd = argv if isinstance(argv, str) else quote_argv(argv)
    if env:
        cmd = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in env.items()) + " " + cmd
    timed_out = BitedgeError(f"{conn.host}: command timed out after {timeout:g} s: {cmd[:120]}")
    started = time.monotonic()

    def killed_by_timer(result) -> bool:
        # invoke calls a run "timed out" only once its timer thread has finished; while that thread is
        # still inside kill() (closing the channel) the run surfaces as exit -1 instead. Exit -1 means
        # the channel closed without an exit status, so after the deadline it is the timeout.
        return result.exited == -1 and time.monotonic() - started >= timeout

    try:
        first = next((line.strip() for line in cmd.splitlines() if line.strip()), cmd)
        with guarded(conn, f"the command {first[:60]}{' …' if len(first) > 60 or first != cmd.strip() else ''}"):
            result = conn.run(cmd, hide=not stream, warn=not check, timeout=timeout, in_stream=False)
    except CommandTimedOut:
        raise timed_out from None
    except UnexpectedExit as e:
        if killed_by_timer(e.result):
            raise timed_out from None
        err = (e.result.stderr or e.result.stdout or "").strip().splitlines()
        raise BitedgeError(
            f"{conn.host}: command failed with exit {e.result.exited}: {cmd[:120]}" + (f": {err[-1]}" if err else "")
        ) from None
    except (paramiko.SSHException, OSError, EOFError) as e:
        raise BitedgeError(f"{conn.host}: connection lost while running a command: {e or type(e).__name__}") from None
    if killed_by_timer(result):
        raise timed_out
    return result
