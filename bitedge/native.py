"""Run the C runtime (`bitedge-run`) from Python and parse its JSON.

The same functions drive a native binary, an aarch64 binary under qemu-user (``runner=["qemu-aarch64",
"-cpu", "cortex-a72"]``) or a remote one (``runner=["ssh", "board"]``): ``runner`` is a command prefix.
A failing run raises BitedgeError carrying the program's own one-line message.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bitedge.errors import BitedgeError
from bitedge.output import last_json


def _join(values) -> str:
    if isinstance(values, (int, np.integer)):
        return str(int(values))
    return ",".join(str(int(v)) for v in values)


def run_program(binary, args: Sequence[str], *, runner: Sequence[str] | None = None, kernels: str | None = None,
                env: dict | None = None, timeout: float = 600.0) -> subprocess.CompletedProcess:
    """Run bitedge-run with args; kernels forces a kernel table (BITEDGE_KERNELS). Never raises on exit status."""
    binary = str(binary)
    if runner is None and not os.path.exists(binary):
        raise BitedgeError(f"bitedge-run binary not found: {binary}")
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    if kernels:
        full_env["BITEDGE_KERNELS"] = kernels
    cmd = [*(runner or ()), binary, *map(str, args)]
    try:
        # generated text may end inside a UTF-8 character: replace, never fail to decode
        return subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace", env=full_env,
                              timeout=timeout)
    except FileNotFoundError as e:
        raise BitedgeError(f"cannot run {cmd[0]}: {e.strerror}") from None
    except subprocess.TimeoutExpired:
        raise BitedgeError(f"bitedge-run did not finish within {timeout:.0f} s: {' '.join(cmd)}") from None


def _check(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        message = lines[-1] if lines else f"exit status {proc.returncode}"
        raise BitedgeError(f"bitedge-run failed (exit {proc.returncode}): {message}")
    return proc


def _json_from(proc: subprocess.CompletedProcess):
    """The JSON document bitedge-run printed last on stdout (generate streams text before it)."""
    data = last_json(proc.stdout)
    if data is None:
        raise BitedgeError(f"bitedge-run printed no JSON: {proc.stdout[-200:]!r}")
    return data


def system_info(stderr: str) -> str | None:
    for line in stderr.splitlines():
        if line.startswith("system_info:"):
            return line.partition(":")[2].strip()
    return None


def run_generate(binary, model, prompt: str | None = None, tokens: Sequence[int] | None = None, n: int = 16,
                 greedy: bool = True, threads: int = 1, runner: Sequence[str] | None = None, *,
                 temp: float = 0.8, top_k: int = 40, top_p: float = 0.95, seed: int = 42, chat: bool = False,
                 ignore_eos: bool = True, ctx: int | None = None, batch: int | None = None,
                 dump_logits: str | os.PathLike | None = None, dump_activations: str | os.PathLike | None = None,
                 kernels: str | None = None, timeout: float = 600.0) -> dict:
    """Generate n tokens; returns bitedge-run's JSON (prompt_tokens, tokens, text, timings, system_info, kernels,
    logits_last) plus "logits" [steps, vocab] float32 when dump_logits is given (the file is kept).
    dump_activations: the runtime records every activation quantization there (read_activations)."""
    if (prompt is None) == (tokens is None):
        raise BitedgeError("run_generate: give exactly one of prompt and tokens")
    args = ["generate", "-m", str(model), "-n", str(n), "-t", str(threads), "--json"]
    args += ["-p", prompt] if prompt is not None else ["--tokens", _join(tokens)]
    if greedy:
        args += ["--temp", "0"]
    else:
        args += ["--temp", str(temp), "--top-k", str(top_k), "--top-p", str(top_p), "--seed", str(seed)]
    if chat:
        args.append("--chat")
    if ignore_eos:
        args.append("--ignore-eos")
    if ctx:
        args += ["-c", str(ctx)]
    if batch:
        args += ["-b", str(batch)]
    if dump_logits is not None:
        args += ["--dump-logits", str(dump_logits)]
    if dump_activations is not None:
        args += ["--dump-activations", str(dump_activations)]
    proc = _check(run_program(binary, args, runner=runner, kernels=kernels, timeout=timeout))
    result = _json_from(proc)
    result["stderr"] = proc.stderr
    if dump_logits is not None and result.get("vocab_size"):
        result["logits"] = read_logits(dump_logits, result["vocab_size"])
    return result


def run_bench(binary, model, n_prompt: int = 128, n_gen: int = 128, threads: Sequence[int] | int = (1,),
              reps: int = 5, runner: Sequence[str] | None = None, *, kernels: str | None = None,
              timeout: float = 1800.0) -> dict:
    """llama-bench style pp/tg measurement: {"rows": [one dict per test and thread count], "system_info": ...}."""
    args = ["bench", "-m", str(model), "-p", str(n_prompt), "-n", str(n_gen), "-t", _join(threads), "-r", str(reps),
            "--json"]
    proc = _check(run_program(binary, args, runner=runner, kernels=kernels, timeout=timeout))
    rows = _json_from(proc)
    if not isinstance(rows, list):
        raise BitedgeError("bitedge-run bench: expected a JSON array of rows")
    return {"rows": rows, "system_info": system_info(proc.stderr), "stderr": proc.stderr}


def run_perplexity(binary, model, text_file, ctx: int | None = None, threads: int = 1,
                   runner: Sequence[str] | None = None, *, kernels: str | None = None, timeout: float = 1800.0) -> dict:
    args = ["perplexity", "-m", str(model), "-f", str(text_file), "-t", str(threads), "--json"]
    if ctx:
        args += ["-c", str(ctx)]
    proc = _check(run_program(binary, args, runner=runner, kernels=kernels, timeout=timeout))
    return _json_from(proc)


def run_info(binary, model, runner: Sequence[str] | None = None, *, kernels: str | None = None,
             timeout: float = 120.0) -> dict:
    proc = _check(run_program(binary, ["info", "-m", str(model), "--json"], runner=runner, kernels=kernels,
                              timeout=timeout))
    return _json_from(proc)


def read_logits(path, vocab_size: int) -> np.ndarray:
    """A --dump-logits file: float32 little-endian, one row of vocab_size per generation step."""
    data = np.fromfile(Path(path), dtype="<f4")
    if vocab_size <= 0 or data.size % vocab_size:
        raise BitedgeError(f"{path}: {data.size} floats is not a whole number of rows of {vocab_size}")
    return data.reshape(-1, vocab_size)


@dataclass(frozen=True)
class ActivationRecord:
    """One activation quantization of the runtime (forward.h, be_dump_activations_header): the rows of nb tokens
    at positions pos0.. entering the linears of one site of one layer."""

    layer: int
    site: int          # index into bitedge.reference.SITES
    pos0: int
    a: np.ndarray      # [nb] float32: 127 / max|x| of each row
    x: np.ndarray      # [nb, k] float32: the rows before quantization
    q: np.ndarray      # [nb, k] int8: the codes the kernels used


ACTIVATION_DUMP_MAGIC = b"BEACTS1\0"


def read_activations(path) -> tuple[int, list[ActivationRecord]]:
    """A --dump-activations file: (n_layers, records in the order the runtime made them)."""
    data = Path(path).read_bytes()
    if len(data) < 16 or data[:8] != ACTIVATION_DUMP_MAGIC:
        raise BitedgeError(f"{path}: not a bitedge-run activation dump")
    n_layers = int(np.frombuffer(data, "<i4", 1, 8)[0])
    records, off = [], 16
    while off < len(data):
        if off + 20 > len(data):
            raise BitedgeError(f"{path}: truncated record header at byte {off}")
        layer, site, pos0, nb, k = (int(v) for v in np.frombuffer(data, "<i4", 5, off))
        off += 20
        size = 4 * nb + 4 * nb * k + nb * k
        if nb <= 0 or k <= 0 or off + size > len(data):
            raise BitedgeError(f"{path}: bad or truncated record (nb {nb}, k {k}) at byte {off - 20}")
        a = np.frombuffer(data, "<f4", nb, off).copy()
        x = np.frombuffer(data, "<f4", nb * k, off + 4 * nb).reshape(nb, k).copy()
        q = np.frombuffer(data, np.int8, nb * k, off + 4 * nb + 4 * nb * k).reshape(nb, k).copy()
        off += size
        records.append(ActivationRecord(layer, site, pos0, a, x, q))
    return n_layers, records
