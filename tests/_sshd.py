"""A real OpenSSH server on loopback for deploy tests: its own host key, user key and known_hosts.

Started per test (or per module) on a free port; nothing here is mocked. Works as root (CI) and as an
ordinary user (sshd then serves only that user).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, kind: str = "ed25519") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
    return path


@dataclass
class SshServer:
    root: Path
    port: int
    user: str
    user_key: Path  # private key the client uses
    host_key: Path
    known_hosts: Path  # a known_hosts file that trusts this server
    ssh_config: Path  # an ssh_config with a Host alias per name in `aliases`
    proc: subprocess.Popen | None = None

    @property
    def host_key_line(self) -> str:
        pub = Path(str(self.host_key) + ".pub").read_text().split()
        return f"[127.0.0.1]:{self.port} {pub[0]} {pub[1]}"

    def start(self) -> "SshServer":
        log = self.root / "sshd.log"
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.root / "sshd_config")],
            stdout=open(log, "ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"sshd did not come up: {log.read_text()}")

    def connect(self, alias: str = "board", **kw):
        """A bitedge SSH connection to this server through its ssh_config alias (known_hosts trusting it)."""
        from bitedge.deploy.ssh import HostSpec, connect

        return connect(HostSpec.parse(alias), ssh_config=self.ssh_config, known_hosts=self.known_hosts, **kw)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def make_sshd(root: Path, aliases: dict[str, int] | None = None) -> SshServer:
    """Create keys and config under root. aliases maps Host alias -> port, 0 for this server's own (default: one
    alias 'board')."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    Path("/run/sshd").mkdir(exist_ok=True) if os.geteuid() == 0 else None
    port = free_port()
    host_key = keygen(root / "ssh_host_ed25519_key")
    user_key = keygen(root / "id_ed25519")
    auth = root / "authorized_keys"
    auth.write_text(Path(str(user_key) + ".pub").read_text())
    os.chmod(auth, 0o600)
    user = getpass.getuser()
    (root / "sshd_config").write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {auth}",
                f"PidFile {root / 'sshd.pid'}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                "StrictModes no",
                "UsePAM no",
                "Subsystem sftp internal-sftp",
                "LogLevel ERROR",
                "MaxStartups 50",
                "MaxSessions 50",
                "",
            ]
        )
    )
    server = SshServer(root, port, user, user_key, host_key, root / "known_hosts", root / "ssh_config")
    server.known_hosts.write_text(server.host_key_line + "\n")
    aliases = aliases or {"board": port}
    server.ssh_config.write_text(
        "".join(
            f"Host {alias}\n  HostName 127.0.0.1\n  Port {p or port}\n  User {user}\n  IdentityFile {user_key}\n"
            for alias, p in aliases.items()
        )
    )
    return server


def write_board_inventory(path: Path, server: SshServer, boards: dict[str, str]) -> Path:
    """A bitedge inventory of loopback boards: each name -> target profile, reached through the 'board' alias with
    its own remote_dir (<path's folder>/remote-<name>), plus 'dead', a port nothing listens on."""
    lines = []
    for name, target in boards.items():
        lines += [f"[hosts.{name}]", 'host = "board"', f'target = "{target}"',
                  f'remote_dir = "{path.parent / f"remote-{name}"}"', ""]
    lines += ["[hosts.dead]", 'host = "127.0.0.1"', f"port = {free_port()}", f'user = "{server.user}"',
              f'identity = "{server.user_key}"', 'target = "x86-64-avx2"', ""]
    path.write_text("\n".join(lines))
    return path


def session_pids(server: SshServer) -> list[int]:
    """Every process under the listening sshd: the per-connection sshd sessions and what they run (sftp, shells)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], list(children.get(server.proc.pid, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def signal_all(pids: list[int], sig: int) -> list[int]:
    """Send sig to each pid still alive; returns those it reached (a short-lived command may have ended)."""
    import os

    reached = []
    for pid in pids:
        try:
            os.kill(pid, sig)
            reached.append(pid)
        except ProcessLookupError:
            pass
    return reached
