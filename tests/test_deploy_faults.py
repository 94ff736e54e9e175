"""SSH faults on the board side, against a real OpenSSH sshd on loopback: a board that stops answering
(its sshd session SIGSTOPped), a host that accepts TCP but never speaks SSH, a remote folder on a read-only
filesystem, one the user may not write, a full disk (small tmpfs mounts made here as root; skipped with the
reason where they cannot be made), the same destination uploaded twice at once, and a new runtime binary the
board cannot run. Nothing is mocked."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from _sshd import session_pids, signal_all
from bitedge.deploy.remote import deploy
from bitedge.deploy.ssh import HostSpec, run
from bitedge.deploy.upload import upload_file
from bitedge.errors import BitedgeError
from bitedge.model import sha256_file

REPO = Path(__file__).resolve().parents[1]


def payload(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


@contextmanager
def mounted(path: Path, options: str):
    """A tmpfs at path (root only); skips the test with the reason when it cannot be made."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# ---- 1. a board that stops answering -----------------------------------------------------------------------

def test_board_that_stops_mid_upload_is_abandoned_after_the_stall_timeout(sshd, tmp_path):
    local = payload(tmp_path / "big.bin", 64 << 20)
    conn = sshd.connect(stall_timeout=2)
    stopped: list[int] = []
    sent = [0]

    def stop_board(n):
        sent[0] += n
        if sent[0] >= 4 << 20 and not stopped:
            stopped.extend(signal_all(session_pids(sshd), signal.SIGSTOP))

    outcome = {}

    def upload():
        try:
            outcome["result"] = upload_file(conn, local, str(tmp_path / "board" / "big.bin"), progress=stop_board)
        except BitedgeError as e:
            outcome["error"] = str(e)

    worker = threading.Thread(target=upload, daemon=True)
    worker.start()
    try:
        worker.join(60)  # not forever (a bound far above the 2 s, so timing never decides the test)
    finally:
        signal_all(stopped, signal.SIGCONT)
        conn.close()
    assert stopped, "the board was never stopped"
    assert not worker.is_alive(), "the upload hangs on a stopped board"
    msg = outcome.get("error", "")
    assert msg.startswith("board: ") and "stopped answering" in msg and "2 s" in msg and "big.bin" in msg, outcome
    assert "\n" not in msg


def test_board_that_stops_during_a_command_is_abandoned(sshd):
    conn = sshd.connect(stall_timeout=1.5)
    result = {}

    def remote():
        try:
            result["out"] = run(conn, ["sleep", "3"], timeout=120)
        except BitedgeError as e:
            result["err"] = str(e)

    t = threading.Thread(target=remote)
    t.start()
    time.sleep(0.5)
    pids = signal_all(session_pids(sshd), signal.SIGSTOP)
    try:
        t.join(60)
    finally:
        signal_all(pids, signal.SIGCONT)
        conn.close()
    assert not t.is_alive()
    assert "stopped answering" in result.get("err", "") and "sleep" in result["err"]


def test_a_silent_command_on_a_live_board_is_not_a_stall(sshd):
    # the keepalive answers keep a long quiet command alive: 3 s of silence under a 1 s stall timeout
    with sshd.connect(stall_timeout=1) as conn:
        assert run(conn, "sleep 3; echo done").stdout.strip() == "done"


# ---- 5. a host that never speaks SSH -----------------------------------------------------------------------

def test_tcp_without_ssh_is_one_line(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: [accepted.append(listener.accept()) for _ in range(8)], daemon=True).start()
    proc = subprocess.run([sys.executable, "-m", "bitedge.cli", "probe", "--host", f"root@127.0.0.1:{port}",
                           "--connect-timeout", "1", "--known-hosts", str(tmp_path / "kh")],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(tmp_path)})
    listener.close()
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"bitedge: error: root@127.0.0.1:{port}: no SSH server answered on {port} within 1 s"


# ---- 2. read-only, not writable, full ----------------------------------------------------------------------

def test_read_only_remote_folder_is_said_as_such(sshd, tmp_path):
    local = payload(tmp_path / "m.gguf", 10_000)
    with mounted(tmp_path / "ro", "ro,size=1m") as ro, sshd.connect() as conn:
        for dest in (ro / "m.gguf", ro / "sub" / "dir" / "m.gguf"):  # an existing folder and one to create
            with pytest.raises(BitedgeError, match="read-only") as err:
                upload_file(conn, local, str(dest))
            assert "resume" not in str(err.value)


def test_folder_without_write_permission_is_said_as_such(sshd, tmp_path):
    local = payload(tmp_path / "m.gguf", 10_000)
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: an immutable folder refuses even root
        if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
            pytest.skip("root ignores permissions and chattr +i is not available on this filesystem")
    else:
        locked.chmod(0o500)
    try:
        with sshd.connect() as conn:
            with pytest.raises(BitedgeError, match="no permission to write") as err:
                upload_file(conn, local, str(locked / "m.gguf"))
            with pytest.raises(BitedgeError, match="cannot create the folder .*no permission"):
                upload_file(conn, local, str(locked / "sub" / "m.gguf"))
        assert "resume" not in str(err.value)
    finally:
        subprocess.run(["chattr", "-i", str(locked)], capture_output=True) if os.geteuid() == 0 else locked.chmod(0o700)


def test_disk_too_small_is_refused_before_sending_with_the_numbers(sshd, tmp_path):
    local = payload(tmp_path / "m.gguf", 3 << 20)
    with mounted(tmp_path / "small", "size=2m") as small, sshd.connect() as conn:
        (small / "m.gguf.partial").write_bytes(b"x" * 500_000)  # an old partial, not a prefix
        with pytest.raises(BitedgeError, match=r"not enough space in .*small: 1\.[0-9] MB free, m.gguf needs 2\.6 MB more \(of 3\.1 MB\)"):
            upload_file(conn, local, str(small / "m.gguf"))
        assert sorted(p.name for p in small.iterdir()) == [], "nothing may be left on the full disk"


def test_disk_that_fills_up_during_the_upload_keeps_no_partial(sshd, tmp_path):
    local = payload(tmp_path / "m.gguf", 6 << 20)
    with mounted(tmp_path / "filling", "size=8m") as disk, sshd.connect() as conn:
        filler = disk / "other-writer"

        def fill(n):  # someone else takes the space while we send
            if not filler.exists():
                filler.write_bytes(b"\0" * (5 << 20))

        with pytest.raises(BitedgeError, match="disk filled up during the upload of m.gguf.*partial file was removed"):
            upload_file(conn, local, str(disk / "m.gguf"), progress=fill)
        assert sorted(p.name for p in disk.iterdir()) == ["other-writer"]


# ---- 4. two names for one board ----------------------------------------------------------------------------

def test_two_uploads_of_one_destination_at_once_take_turns(sshd, tmp_path):
    local = payload(tmp_path / "m.gguf", 12 << 20)
    dest = tmp_path / "shared" / "m.gguf"
    results, errors = [], []

    def one():
        try:
            with sshd.connect() as conn:
                results.append(upload_file(conn, local, str(dest)))
        except Exception as e:  # noqa: BLE001 - the test reports whatever went wrong
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sorted(r.action for r in results) == ["skipped", "skipped", "uploaded"]
    assert sha256_file(dest) == sha256_file(local)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["m.gguf"]


def test_a_lock_left_by_a_dead_connection_is_taken_over(sshd, tmp_path):
    local = payload(tmp_path / "m.gguf", 100_000)
    dest = tmp_path / "b" / "m.gguf"
    dest.parent.mkdir()
    lock = Path(str(dest) + ".lock")
    lock.mkdir()
    (lock / "owner").write_text(f"{socket.gethostname()} 999999999\n")  # no such process
    with sshd.connect() as conn:
        assert upload_file(conn, local, str(dest)).action == "uploaded"
    assert not lock.exists()


# ---- 3. a runtime the board cannot run stays out -----------------------------------------------------------

def _program(tmp_path: Path, name: str, code: int) -> Path:
    src = tmp_path / f"{name}.c"
    src.write_text(f'#include <stdio.h>\nint main(void){{fputs("{name}\\n", stderr); return {code};}}\n')
    out = tmp_path / name
    subprocess.run(["cc", "-static", "-O1", "-o", str(out), str(src)], check=True)
    return out


def test_a_new_runtime_that_does_not_run_leaves_the_old_one_in_place(sshd, tmp_path):
    good = _program(tmp_path, "good", 0)
    bad = _program(tmp_path, "illegal-instruction", 3)  # as a dotprod build exits on a board without dotprod
    spec = HostSpec(name="board", host="board", remote_dir=str(tmp_path / "remote"))
    installed = tmp_path / "remote" / "bin" / "bitedge-run"
    with sshd.connect() as conn:
        deploy(conn, spec, good)
        assert sha256_file(installed) == sha256_file(good)
        with pytest.raises(BitedgeError, match="new bitedge-run does not run on the board.*illegal-instruction.*"
                                               "installed one was left in place"):
            deploy(conn, spec, bad)
        assert sha256_file(installed) == sha256_file(good)
        assert sorted(p.name for p in installed.parent.iterdir()) == ["bitedge-run"]
        deploy(conn, spec, good)  # and the good one is still "deployed" (skipped, verified)


# ---- host names --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, user, host, port", [
    ("pi@raspberrypi.local:2222", "pi", "raspberrypi.local", 2222),
    ("user@[::1]:2299", "user", "::1", 2299),
    ("[fe80::1]", None, "fe80::1", None),
    ("::1", None, "::1", None),
    (" board ", None, "board", None),
])
def test_host_spec_parsing(text, user, host, port):
    spec = HostSpec.parse(text)
    assert (spec.user, spec.host, spec.port) == (user, host, port)


@pytest.mark.parametrize("text", ["", "user@", "@host", "h:99999", "[::1", "[::1]x", "a b"])
def test_host_spec_errors_are_one_line(text):
    with pytest.raises(BitedgeError):
        HostSpec.parse(text)
