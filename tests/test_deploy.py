"""Deploy over a real OpenSSH server on loopback (keys and known_hosts made here; nothing mocked)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from _sshd import free_port
from bitedge.deploy.fleet import run_fleet, summary_line
from bitedge.deploy.probe import binary_platform, check_binary_runs_on, probe
from bitedge.deploy.ssh import HostSpec, connect, run
from bitedge.deploy.upload import remote_sha256, upload_file
from bitedge.errors import BitedgeError
from bitedge.model import sha256_file


def payload(path: Path, size: int, seed: int = 0) -> Path:
    path.write_bytes(os.urandom(size) if seed is None else bytes((i * 131 + seed) % 251 for i in range(size)))
    return path


def test_probe_reports_this_machine(sshd):
    with sshd.connect() as conn:
        board = probe(conn)
    assert board.os == "linux" and board.arch == os.uname().machine
    assert board.cores >= 1 and board.mem_mb > 0
    if "avx2" in Path("/proc/cpuinfo").read_text():
        assert "avx2" in board.features


def test_upload_skips_identical_and_replaces_changed_or_corrupt(sshd, tmp_path):
    local = payload(tmp_path / "model.gguf", 300_000, seed=None)
    remote = str(tmp_path / "remote dir" / "model.gguf")  # a space in the path: quoting matters
    with sshd.connect() as conn:
        first = upload_file(conn, local, remote)
        assert first.action == "uploaded" and first.bytes_sent == local.stat().st_size
        assert sha256_file(remote) == sha256_file(local)
        assert upload_file(conn, local, remote).action == "skipped"
        # corrupt the board's copy (same size): it must be detected by hash and replaced
        data = bytearray(Path(remote).read_bytes())
        data[1234] ^= 0xFF
        Path(remote).write_bytes(bytes(data))
        assert upload_file(conn, local, remote).action == "uploaded"
        assert sha256_file(remote) == sha256_file(local)
        # a changed local file is uploaded again
        payload(local, 200_000, seed=7)
        assert upload_file(conn, local, remote).action == "uploaded"
        assert remote_sha256(conn, remote) == sha256_file(local)
    assert not Path(remote + ".partial").exists()


def test_interrupted_upload_leaves_no_partial_file_in_place_and_resumes(sshd, tmp_path):
    local = payload(tmp_path / "big.bin", 8 << 20, seed=None)
    remote = tmp_path / "board" / "big.bin"
    conn = sshd.connect()
    sent = [0]

    def kill_midway(n):
        sent[0] += n
        if sent[0] >= 3 << 20:
            conn.client.get_transport().close()  # the connection dies mid-transfer

    with pytest.raises(BitedgeError, match="interrupted after .* run the same command again to resume"):
        upload_file(conn, local, str(remote), progress=kill_midway)
    conn.close()
    assert not remote.exists(), "a half-written file must never appear at the destination"
    partial = Path(str(remote) + ".partial")
    assert 0 < partial.stat().st_size < local.stat().st_size
    with sshd.connect() as conn2:
        res = upload_file(conn2, local, str(remote))
    assert res.action == "resumed" and res.bytes_sent < local.stat().st_size
    assert sha256_file(remote) == sha256_file(local) and not partial.exists()


def test_resume_from_a_foreign_partial_file_still_ends_correct(sshd, tmp_path):
    local = payload(tmp_path / "f.bin", 100_000, seed=3)
    remote = tmp_path / "b" / "f.bin"
    remote.parent.mkdir()
    Path(str(remote) + ".partial").write_bytes(b"not a prefix of the file" * 100)
    with sshd.connect() as conn:
        res = upload_file(conn, local, str(remote))
    assert res.action == "uploaded" and sha256_file(remote) == sha256_file(local)


def test_unknown_host_key_is_refused_then_accepted_on_request(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    spec = HostSpec.parse("board")
    with pytest.raises(BitedgeError, match="not in known_hosts.*--accept-new-host-key"):
        connect(spec, ssh_config=sshd.ssh_config, known_hosts=empty)
    with connect(spec, ssh_config=sshd.ssh_config, known_hosts=empty, accept_new_host_key=True) as conn:
        assert run(conn, ["echo", "hi"]).stdout.strip() == "hi"
    assert f"[127.0.0.1]:{sshd.port}" in empty.read_text()
    with connect(spec, ssh_config=sshd.ssh_config, known_hosts=empty) as conn:  # now known
        assert run(conn, ["true"]).exited == 0


def test_changed_host_key_is_refused_even_with_accept_new(sshd, tmp_path):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, b64 = Path(str(other) + ".pub").read_text().split()[:2]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {kind} {b64}\n")
    with pytest.raises(BitedgeError, match="HOST KEY CHANGED"):
        connect(HostSpec.parse("board"), ssh_config=sshd.ssh_config, known_hosts=wrong, accept_new_host_key=True)


def test_remote_command_arguments_are_quoted(sshd, tmp_path):
    marker = tmp_path / "pwned"
    with sshd.connect() as conn:
        out = run(conn, ["echo", f"$(touch {marker})", "a;b", "it's"]).stdout
    assert not marker.exists()
    assert out.strip() == f"$(touch {marker}) a;b it's"


def test_command_timeout_and_failure_are_one_line_errors(sshd):
    with sshd.connect() as conn:
        with pytest.raises(BitedgeError, match="timed out after 1 s"):
            run(conn, ["sleep", "5"], timeout=1)
        # invoke's own timeout verdict races its kill thread; repeat so the race shows up if it is not handled
        for _ in range(4):
            with pytest.raises(BitedgeError, match="timed out after 0.3 s"):
                run(conn, ["sleep", "5"], timeout=0.3, check=False)
        with pytest.raises(BitedgeError, match="exit 3"):
            run(conn, "echo oops >&2; exit 3")


def test_wrong_arch_binary_is_refused(sshd, tmp_path):
    src = tmp_path / "hello.c"
    src.write_text("int main(void){return 0;}\n")
    arm = tmp_path / "hello-arm"
    subprocess.run(["aarch64-linux-gnu-gcc", "-static", "-o", str(arm), str(src)], check=True)
    assert binary_platform(arm) == ("linux", "aarch64")
    with sshd.connect() as conn:
        board = probe(conn)
    with pytest.raises(BitedgeError, match="built for linux/aarch64 but the board is linux/x86_64"):
        check_binary_runs_on(arm, board)
    # the same binary is fine on an emulated-ARM board profile whose runner the board has
    check_binary_runs_on(arm, board, runner=["qemu-aarch64", "-cpu", "cortex-a76"])


def test_fleet_one_dead_host_fails_alone(sshd, tmp_path):
    dead_port = free_port()  # nothing listens here
    hosts = [
        HostSpec(name="a", host="board"),
        HostSpec(name="dead", host="127.0.0.1", port=dead_port, user=sshd.user, identity=str(sshd.user_key)),
        HostSpec(name="b", host="board"),
    ]

    def job(spec):
        with connect(spec, ssh_config=sshd.ssh_config, known_hosts=sshd.known_hosts, connect_timeout=5) as conn:
            return run(conn, ["uname", "-m"]).stdout.strip()

    outcomes = run_fleet(hosts, job)
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[0].result == os.uname().machine
    assert "dead" in summary_line(outcomes) and "2/3 hosts succeeded" in summary_line(outcomes)
    assert "cannot connect" in outcomes[1].error or "timed out" in outcomes[1].error


# ------------------------------------------------------------------------------------------------------------
# a runtime-only deploy (no model): the board runs the runtime's CPU check alone (issue #17)


def _deploy_cli(sshd, tmp_path, capsys, *args):
    from _sshd import write_board_inventory
    from bitedge.cli import main

    inventory = write_board_inventory(tmp_path / "boards.toml", sshd, {"x86": "x86-64-avx2"})
    rc = main(["deploy", *args, "--inventory", str(inventory), "--ssh-config", str(sshd.ssh_config),
               "--known-hosts", str(sshd.known_hosts), "--connect-timeout", "5", "--no-progress"])
    return rc, capsys.readouterr()


def test_runtime_only_deploy_runs_the_cpu_check_on_the_board(sshd, tmp_path, capsys):
    if os.uname().machine != "x86_64":
        pytest.skip("the loopback board is this machine: x86-64 here")
    rc, out = _deploy_cli(sshd, tmp_path, capsys, "--host", "x86", "--target", "x86-64-avx2", "--json")
    assert rc == 0, out.err
    import json

    dep = json.loads(out.out)
    assert dep["model"] is None and [u["action"] for u in dep["uploads"]] == ["uploaded"]
    assert dep["check"].startswith("ok: this CPU (") and "runs this build for x86-64-avx2" in dep["check"], dep
    # the installed runtime answers the same check there, with a JSON form
    proc = subprocess.run([dep["binary"], "check", "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and json.loads(proc.stdout)["target"] == "x86-64-avx2", proc.stderr
    rc, out = _deploy_cli(sshd, tmp_path, capsys, "--host", "x86", "--target", "x86-64-avx2")  # again: skipped
    assert rc == 0 and "runs this build" in out.out and "skipped" in out.out, out.err


def test_runtime_only_deploy_of_a_build_the_board_cannot_run_names_what_it_lacks(sshd, tmp_path, capsys):
    """The board here is this machine under qemu-x86_64 -cpu Haswell (the profile's runner): an alderlake build
    (AVX-VNNI) is refused by the CPU check in one line, and nothing is installed."""
    if os.uname().machine != "x86_64" or not subprocess.run(["which", "qemu-x86_64"], capture_output=True).stdout:
        pytest.skip("needs an x86-64 host with qemu-x86_64")
    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "haswell-board.toml").write_text(
        'id = "haswell-board"\nname = "an alderlake build on an emulated Haswell"\nos = "linux"\narch = "x86_64"\n'
        'libc = "glibc"\ncpu_flags = ["-march=alderlake"]\nisa = []\ncores = 2\nmemory_mb = 1024\n'
        'toolchains = ["gcc"]\nrunner = ["qemu-x86_64", "-cpu", "Haswell"]\n\n[kernel]\nmethod = "i2_s"\n'
        'measured = false\n')
    rc, out = _deploy_cli(sshd, tmp_path, capsys, "--host", "x86", "--target", "haswell-board",
                          "--targets-dir", str(targets))
    assert rc != 0
    lines = [ln for ln in out.err.splitlines() if ln.startswith("bitedge: error:")]
    assert len(lines) == 1 and "does not run on the board" in lines[0] and "AVXVNNI" in lines[0], out.err
    assert not (tmp_path / "remote-x86" / "bin" / "bitedge-run").exists()
