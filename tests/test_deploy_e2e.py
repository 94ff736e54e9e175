"""Deploy the real runtime over a real loopback sshd: as an x86 board and as an emulated ARM board
(a profile whose runner is qemu-aarch64), then generate and benchmark remotely, and run a fleet with a
dead host. The only thing not real here is the board itself (none is reachable from CI)."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest

from _runtime_helpers import generate_checked
from _sshd import make_sshd, session_pids, signal_all
from bitedge.cli import main
from bitedge.convert.dummy import dummy_source
from bitedge.convert.gguf_writer import write_gguf
from bitedge.gguf_read import read_model
from bitedge.reference import Reference
from bitedge.results.store import ResultStore


LAB_BOARDS = {"x86": "x86-64-avx2", "arm": "rpi5-qemu"}  # the lab fixture (conftest.py)


def lab_model(root: Path) -> Path:
    model = root / "tiny.gguf"
    write_gguf(dummy_source("test", seed=3), model, packing="i2_s", embed_type="f16")
    return model


def run_json(capsys, args) -> dict:
    rc = main(args)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return json.loads(captured.out)


def checked_tokens(deployed: dict, model: Path, prompt_tokens: list[int], n: int, workdir: Path) -> list[int]:
    """The deployed binary's greedy tokens, run here (the loopback board's files are local) under the exact lossless
    check against the reference: the remote run must give the same tokens (same binary, same bits)."""
    tokens, *_ = generate_checked(deployed["binary"], model, Reference(read_model(model)), prompt_tokens, workdir,
                                  "deployed", n=n, runner=deployed.get("runner") or None)
    return tokens


@pytest.mark.parametrize("board", ["x86", "arm"])
def test_deploy_then_generate_remotely_matches_the_reference(lab, capsys, board, tmp_path):
    first = run_json(capsys, ["deploy", str(lab.model), "--host", board, *lab.ssh_args(), "--json"])
    assert [u["action"] for u in first["uploads"]] in (["uploaded", "uploaded"], ["skipped", "skipped"])
    assert Path(first["binary"]).is_file() and Path(first["model"]).read_bytes() == lab.model.read_bytes()
    again = run_json(capsys, ["deploy", str(lab.model), "--host", board, *lab.ssh_args(), "--json"])
    assert [u["action"] for u in again["uploads"]] == ["skipped", "skipped"]
    if board == "arm":
        assert again["runner"][:1] == ["qemu-aarch64"]
    out = run_json(capsys, ["generate", str(lab.model), "--host", board, "-p", "hello board", "-n", "10",
                            "--ignore-eos", *lab.ssh_args(), "--json"])
    assert out["tokens"] == checked_tokens(again, lab.model, out["prompt_tokens"], 10, tmp_path)


def test_fleet_bench_stores_results_and_the_dead_host_fails_alone(lab, capsys):
    db = lab.root / "results.db"
    rc = main(["bench", str(lab.model), "--hosts", "x86,dead,arm", "--n-prompt", "8", "-n", "4", "-r", "2",
               "--db", str(db), *lab.ssh_args(), "--json"])
    captured = capsys.readouterr()
    assert rc == 1, captured.err  # some boards failed: not a success
    out = json.loads(captured.out)
    assert set(out["failed"]) == {"dead"}
    rows = ResultStore(db).rows()
    assert {r.board for r in rows} == {"x86", "arm"}
    assert {r.test for r in rows} == {"pp8", "tg4"}
    assert all(r.avg_ts > 0 and r.method == "i2_s" and len(r.model_sha256) == 64 for r in rows)
    assert "dead" in captured.err and "2/3 hosts succeeded" in captured.err


def test_wrong_architecture_is_refused_before_upload(lab, capsys, tmp_path):
    # a real-ARM profile (no runner) on an x86 board: the aarch64 binary must not be uploaded
    inv = tmp_path / "inv.toml"
    inv.write_text(f'[hosts.fake-pi]\nhost = "board"\ntarget = "rpi5"\nremote_dir = "{tmp_path / "r"}"\n')
    rc = main(["deploy", str(lab.model), "--host", "fake-pi", "--inventory", str(inv),
               "--ssh-config", str(lab.server.ssh_config), "--known-hosts", str(lab.server.known_hosts)])
    err = capsys.readouterr().err
    assert rc == 2 and "built for linux/aarch64 but the board is linux/x86_64" in err
    assert not (tmp_path / "r").exists()


def test_fleet_goes_on_without_a_board_that_hangs(lab, capsys, tmp_path):
    """A second board whose sshd session is stopped (SIGSTOP) once it runs a command: the fleet finishes without it,
    the hung board is named with the stall, and the exit status is not 0."""
    hung = make_sshd(tmp_path / "hung-sshd", aliases={"hungboard": 0}).start()
    try:
        config = tmp_path / "ssh_config"
        config.write_text(lab.server.ssh_config.read_text()
                          + hung.ssh_config.read_text())
        known = tmp_path / "known_hosts"
        known.write_text(lab.server.known_hosts.read_text() + hung.known_hosts.read_text())
        inv = tmp_path / "boards.toml"
        inv.write_text(lab.inventory.read_text() + f'[hosts.hung]\nhost = "hungboard"\ntarget = "x86-64-avx2"\n'
                       f'remote_dir = "{tmp_path / "remote-hung"}"\n')
        stopped: list[int] = []
        done = threading.Event()

        def stop_when_busy():  # the session is authenticated and runs something: stop all of it
            while not done.is_set():
                pids = session_pids(hung)
                if len(pids) >= 3:
                    stopped.extend(signal_all(pids, signal.SIGSTOP))
                    return
                time.sleep(0.01)

        watcher = threading.Thread(target=stop_when_busy, daemon=True)
        watcher.start()
        try:
            rc = main(["bench", str(lab.model), "--hosts", "x86, hung", "--n-prompt", "8", "-n", "4", "-r", "1",
                       "--db", str(tmp_path / "r.db"), "--inventory", str(inv), "--ssh-config", str(config),
                       "--known-hosts", str(known), "--connect-timeout", "5", "--stall-timeout", "2", "--json"])
        finally:
            done.set()
            signal_all(stopped, signal.SIGCONT)
        captured = capsys.readouterr()
        assert stopped, "the hung board was never stopped"
        assert rc == 1, captured.err
        out = json.loads(captured.out)
        assert set(out["failed"]) == {"hung"} and "stopped answering" in out["failed"]["hung"]
        assert {r["board"] for r in out["rows"]} == {"x86"}
        assert "1/2 hosts succeeded" in captured.err and "Traceback" not in captured.err
    finally:
        hung.stop()


def test_fleet_with_a_host_that_never_speaks_ssh(lab, capsys, tmp_path):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]

    def accept_and_stay_silent():
        try:
            for _ in range(8):
                listener.accept()
        except OSError:  # the test closed the listener: done
            pass

    threading.Thread(target=accept_and_stay_silent, daemon=True).start()
    try:
        rc = main(["bench", str(lab.model), "--hosts", f"x86,{lab.server.user}@127.0.0.1:{port}", "--n-prompt", "8",
                   "-n", "4", "-r", "1", "--target", "x86-64-avx2", "--db", str(tmp_path / "r.db"), *lab.ssh_args()[:6],
                   "--connect-timeout", "1"])
    finally:
        listener.close()
    captured = capsys.readouterr()
    assert rc == 1, captured.err
    assert f"no SSH server answered on {port} within 1 s" in captured.err
    assert "Traceback" not in captured.err and "paramiko" not in captured.err and "No existing session" not in captured.err


def test_one_board_under_two_names_in_a_fleet(lab, capsys, tmp_path):
    """Both names deploy into one folder at once: the uploads take turns (a lock on the board), both succeed."""
    inv = tmp_path / "boards.toml"
    inv.write_text("".join(f'[hosts.{name}]\nhost = "board"\ntarget = "x86-64-avx2"\nremote_dir = "{tmp_path / "shared"}"\n'
                           for name in ("one", "two")))
    rc = main(["bench", str(lab.model), "--hosts", "one,two", "--n-prompt", "8", "-n", "4", "-r", "1",
               "--db", str(tmp_path / "r.db"), "--inventory", str(inv), "--ssh-config", str(lab.server.ssh_config),
               "--known-hosts", str(lab.server.known_hosts), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert {r["board"] for r in json.loads(captured.out)["rows"]} == {"one", "two"}
    left = sorted(p.name for p in (tmp_path / "shared").rglob("*"))
    assert left == ["bin", "bitedge-run", "models", lab.model.name], left
