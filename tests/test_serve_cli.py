"""`bitedge serve`: on this machine in the foreground, and on boards over SSH (the loopback sshd board, native x86
and emulated ARM under qemu): deploy, start detached, health, a chat through --forward with the openai client, a
second start that reports the running server, stop."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from _sshd import free_port
from _serve_helpers import write_kjv
from bitedge.cli import main

REPO = Path(__file__).resolve().parents[1]
openai = pytest.importorskip("openai")


LAB_BOARDS = {"x86": "x86-64-avx2", "arm": "rpi5-qemu"}  # the lab fixture (conftest.py)


def lab_model(root: Path) -> Path:
    return write_kjv(root / "kjv.gguf")


def run_json(capsys, args) -> dict:
    rc = main(args)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return json.loads(captured.out)


class Cli:
    """`python -m bitedge.cli ARGS` in the background; waits for a line matching pattern on stdout or stderr."""

    def __init__(self, args, cwd: Path):
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "bitedge.cli", *map(str, args)], cwd=cwd, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()

    def wait_for(self, pattern: str, timeout: float = 300) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                m = re.search(pattern, line)
                if m:
                    return m
            if self.proc.poll() is not None and not self.reader.is_alive():
                break
            time.sleep(0.2)
        raise AssertionError(f"no line matching {pattern!r}: {''.join(self.lines)[-3000:]}")

    def interrupt(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.reader.join(10)
        return self.proc.returncode


def test_serve_here_in_the_foreground(lab, tmp_path):
    cli = Cli(["serve", lab.model, "--port", "0", "--slots", "2", "--decode-batch", "1"], cwd=tmp_path)
    try:
        port = int(cli.wait_for(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        got = c.completions.create(model="x", prompt="In the beginning", max_tokens=4, temperature=0)
        assert got.usage.completion_tokens >= 1
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            assert json.load(r)["decode_batch"] == 1  # --decode-batch reached the server
    finally:
        assert cli.interrupt() in (130, 0, -signal.SIGINT), "".join(cli.lines)[-2000:]


def test_serve_options_without_a_board_are_refused(lab, capsys):
    assert main(["serve", "--stop"]) == 2
    assert "add --host BOARD" in capsys.readouterr().err
    assert main(["serve", "--host", "x86", *lab.ssh_args()]) == 2
    assert "which model?" in capsys.readouterr().err


@pytest.mark.parametrize("board", ["x86", pytest.param("arm", marks=pytest.mark.qemu)])
def test_serve_on_a_board_start_forward_chat_again_stop(lab, capsys, tmp_path, board):
    port, local = free_port(), free_port()
    args = ["serve", str(lab.model), "--host", board, "--port", str(port), "--slots", "2", "--api-key", "board-key",
            *lab.ssh_args()]
    try:
        first = run_json(capsys, [*args, "--json"])
        assert first["started"] and first["port"] == port and first["pid"] > 0
        again = run_json(capsys, [*args, "--json"])  # reports the running server instead of starting another
        assert (again["started"], again["pid"], again["port"]) == (False, first["pid"], port)
        # the key reached the server through its environment, not its command line
        assert b"board-key" not in Path(f"/proc/{first['pid']}/cmdline").read_bytes()

        cli = Cli([*args, "--forward", str(local)], cwd=tmp_path)
        try:
            cli.wait_for(rf"forwarding http://127\.0\.0\.1:{local} ")
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=f"http://127.0.0.1:{local}/v1", api_key="x", max_retries=0).models.list()
            c = openai.OpenAI(base_url=f"http://127.0.0.1:{local}/v1", api_key="board-key", max_retries=0, timeout=300)
            reply = c.chat.completions.create(model="x", messages=[{"role": "user", "content": "Who made the heaven?"}],
                                              max_tokens=6, temperature=0)
            assert reply.usage.completion_tokens >= 1 and reply.choices[0].finish_reason in ("stop", "length")
            streamed = c.chat.completions.create(model="x", messages=[{"role": "user", "content": "Who made the heaven?"}],
                                                 max_tokens=6, temperature=0, stream=True)
            text = "".join(ch.choices[0].delta.content or "" for ch in streamed if ch.choices)
            assert text == reply.choices[0].message.content
            assert any("already running" in line for line in cli.lines)
        finally:
            cli.interrupt()
        log = Path(first["log"]).read_text()
        assert "listening on http://127.0.0.1:" in log and "chatcmpl" in log
    finally:
        stopped = run_json(capsys, ["serve", "--host", board, "--stop", *lab.ssh_args(), "--json"])
    assert stopped["stopped"] == first["pid"]
    assert run_json(capsys, ["serve", "--host", board, "--stop", *lab.ssh_args(), "--json"])["stopped"] is None
    # the loopback board is this machine: the process is gone, and nothing listens on the port any more
    with pytest.raises(OSError):
        os.kill(first["pid"], 0)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
