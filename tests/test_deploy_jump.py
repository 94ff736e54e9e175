"""A board behind a jump host (ssh_config ProxyJump), both real sshd servers on loopback: the jump host's key is
checked too, never trusted silently."""

from __future__ import annotations

from pathlib import Path

import pytest

from _sshd import make_sshd
from bitedge.deploy.ssh import HostSpec, connect, run
from bitedge.errors import BitedgeError


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory):
    root = tmp_path_factory.mktemp("jump")
    jump = make_sshd(root / "jump").start()
    board = make_sshd(root / "board").start()
    # the board trusts the same user key as the jump host (one key pair for the user, as in real life)
    (board.root / "authorized_keys").write_text((jump.root / "authorized_keys").read_text())
    config = root / "ssh_config"
    config.write_text(
        f"Host jumpbox\n  HostName 127.0.0.1\n  Port {jump.port}\n  User {jump.user}\n  IdentityFile {jump.user_key}\n"
        f"Host hidden-board\n  HostName 127.0.0.1\n  Port {board.port}\n  User {board.user}\n"
        f"  IdentityFile {jump.user_key}\n  ProxyJump jumpbox\n"
    )
    both = root / "known_hosts"
    both.write_text(jump.host_key_line + "\n" + board.host_key_line + "\n")
    only_board = root / "known_hosts_board_only"
    only_board.write_text(board.host_key_line + "\n")
    yield {"config": config, "both": both, "only_board": only_board, "jump": jump, "board": board}
    jump.stop()
    board.stop()


def test_board_behind_a_jump_host(two_hosts):
    with connect(HostSpec.parse("hidden-board"), ssh_config=two_hosts["config"], known_hosts=two_hosts["both"]) as conn:
        assert run(conn, ["echo", "through the jump host"]).stdout.strip() == "through the jump host"
        assert conn.gateway is not None  # fabric really went through ProxyJump


def test_unknown_jump_host_key_is_refused(two_hosts):
    with pytest.raises(BitedgeError, match=rf"host key of \[127.0.0.1\]:{two_hosts['jump'].port} is not in known_hosts"):
        connect(HostSpec.parse("hidden-board"), ssh_config=two_hosts["config"], known_hosts=two_hosts["only_board"])
    assert Path(two_hosts["only_board"]).read_text().count("\n") == 1  # nothing was recorded
