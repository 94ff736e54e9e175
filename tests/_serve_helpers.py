"""Helpers for the bitedge-run serve tests: start a real server on 127.0.0.1 (a port the kernel picks), speak raw
HTTP to it, read server-sent events. Every wait is bounded in count and time."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

from _c_build import SANITIZER_ENV, sanitizer_report

LISTEN = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


def write_dummy(path: Path, *, seed: int = 3, context_length: int | None = None) -> Path:
    """The dummy 'test' preset (byte-level tokenizer, 2 layers) as an I2_S GGUF; optionally a longer context."""
    from bitedge.convert import dummy, gguf_writer

    source = dummy.dummy_source("test", seed=seed)
    if context_length:
        source = replace(source, config=replace(source.config, context_length=context_length))
    gguf_writer.write_gguf(source, path, packing="i2_s", embed_type="f32")
    return path


def write_kjv(path: Path) -> Path:
    """The bundled tiny model (bitedge/data/tiny-kjv: English text, a real EOS) as an I2_S GGUF."""
    from bitedge.convert.gguf_writer import write_gguf
    from bitedge.convert.sources import open_source
    from bitedge.demo import BUNDLED

    write_gguf(open_source(str(BUNDLED)), path, packing="i2_s", force=True)
    return path


class Server:
    """`bitedge-run serve -m MODEL ARGS --port 0` as a context manager; .url is http://127.0.0.1:PORT."""

    def __init__(self, binary: Path, model: Path, *args: str, start_timeout: float = 60.0, runner: list[str] = (),
                 env: dict | None = None):
        self.extra_env = env or {}
        self.cmd = [*runner, str(binary), "serve", "-m", str(model), "--host", "127.0.0.1", "--port", "0", *map(str, args)]
        self.start_timeout = start_timeout
        self.stderr_lines: list[str] = []
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Server":
        import os

        env = dict(os.environ, **SANITIZER_ENV, **self.extra_env)
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, errors="replace", env=env)
        port = threading.Event()
        self.port = 0

        def pump():  # keeps reading stderr so the server never blocks on a full pipe
            for line in self.proc.stderr:
                self.stderr_lines.append(line)
                m = LISTEN.search(line)
                if m:
                    self.port = int(m.group(1))
                    port.set()
            port.set()

        self.reader = threading.Thread(target=pump, daemon=True)
        self.reader.start()
        port.wait(self.start_timeout)
        if not self.port:
            self.stop()
            raise AssertionError(f"server did not start: {self.stderr}")
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if hasattr(self, "reader"):
            self.reader.join(10)

    def __exit__(self, *exc) -> None:
        alive = self.proc.poll() is None
        self.stop()
        assert alive, f"the server died (exit {self.proc.returncode}): {self.stderr[-3000:]}"
        report = sanitizer_report(subprocess.CompletedProcess(self.cmd, 0, "", self.stderr))
        assert report is None, f"sanitizer: {report}\n{self.stderr[-3000:]}"

    def connect(self, timeout: float = 60.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def raw(self, data: bytes, timeout: float = 60.0) -> tuple[int, dict, bytes]:
        """Send bytes, read the whole answer (the server closes every connection); (status, headers, body)."""
        with self.connect(timeout) as s:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer and close before reading all of a too-large request
            return parse_response(read_all(s))

    def request(self, method: str, path: str, body=None, headers: dict | None = None,
                content_type: str = "application/json") -> tuple[int, dict, bytes]:
        data = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if body is not None:
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(data)}\r\n"
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
        return self.raw(head.encode() + b"\r\n" + data)

    def health(self) -> dict:
        status, _, body = self.request("GET", "/health")
        assert status == 200, body
        return json.loads(body)

    def wait_health(self, pred, tries: int = 300, pause: float = 0.1) -> dict:
        for _ in range(tries):
            h = self.health()
            if pred(h):
                return h
            time.sleep(pause)
        raise AssertionError(f"health never reached the expected state: {h}")


def read_all(s: socket.socket, limit: int = 64 << 20) -> bytes:
    chunks, n = [], 0
    while n < limit:
        try:
            b = s.recv(65536)
        except ConnectionResetError:
            break
        if not b:
            break
        chunks.append(b)
        n += len(b)
    return b"".join(chunks)


def parse_response(data: bytes) -> tuple[int, dict, bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), data[:200]
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body


def sse_events(body: bytes) -> list:
    """The data of each event; the last must be [DONE]."""
    events = [e for e in body.decode().split("\n\n") if e.strip()]
    assert all(e.startswith("data: ") for e in events), events[:3]
    assert events[-1] == "data: [DONE]", events[-3:]
    return [json.loads(e[6:]) for e in events[:-1]]


def start_stream(server: Server, body: dict, rcvbuf: int = 4096) -> socket.socket:
    """A streaming request on a socket with a small receive buffer; returns once the first event has arrived
    (the request holds a slot from then on, and a client that stops reading keeps holding it)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(60)
    s.connect(("127.0.0.1", server.port))
    data = json.dumps(dict(body, stream=True)).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    got = b""
    while b"data: " not in got:
        b = s.recv(1024)
        assert b, got
        got += b
    assert got.startswith(b"HTTP/1.1 200"), got[:200]
    return s
