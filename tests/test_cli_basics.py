"""The CLI's contract: one-line errors with exit status 2, never a traceback."""

import subprocess
import sys


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "bitedge.cli", *args], capture_output=True, text=True, timeout=120)


def test_version_and_help():
    r = run_cli("--version")
    assert r.returncode == 0 and "bitedge" in r.stdout
    r = run_cli("--help")
    assert r.returncode == 0 and "Usage" in r.stdout


def test_unknown_command_is_a_usage_error_without_traceback():
    r = run_cli("no-such-command")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
