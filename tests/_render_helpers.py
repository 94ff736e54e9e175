"""Helpers for the rendered-kernel tests: render + compile the kernel driver, make random packed matrices with
extreme activations, run the driver and compute the integer reference from the packer's own unpack.

    exe = build_driver(tmp_path, "x86-64-avx2", ["tl1", "tl2"], shapes=[(37, 71)])
    want, got = run_check(exe, "tl1", "avx2", 37, 71, rng, tmp_path)
    packed, q = random_batch("tl1", 37, 71, 5, rng)                       # several tokens: the TL gemm
    got = run_batch(exe, "gemm", "tl1", "avx2", 37, packed, q, tmp_path)  # == batch_reference(...)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bitedge.targets import get_target
from bitedge.formats.packing import get_packing
from bitedge.render import c_sources, render_driver, render_kernels
from tests._c_build import compile_c, run_binary

# qemu CPUs of the aarch64 profiles: the driver's ISA name and the -mcpu it is compiled with
ARM_VARIANTS = {
    "neon": ("rpi4-qemu", "cortex-a72", ["-mcpu=cortex-a72"]),
    "neon-dotprod": ("rpi5-qemu", "cortex-a76", ["-mcpu=cortex-a76"]),
}


def build_driver(out: Path, target: str, methods, shapes=(), tiles=None, flags=(), arch: str = "native") -> Path:
    """Render methods for target into out/src and compile them with the driver into out/driver."""
    src = Path(out) / "src"
    paths = []
    for method in methods:
        paths += render_kernels(get_target(target), shapes, method, tiles, src)
    paths.append(render_driver(methods, src))
    return compile_c(sorted(set(c_sources(paths))), Path(out) / "driver", target=arch, include_dirs=[src],
                     flags=list(flags), opt="-O2")


def random_case(method: str, n: int, k: int, rng: np.random.Generator, extreme: str = "random"):
    """(T [n, k] int8, packed bytes, q [kp] int8). extreme: "random", "min" (q = -128 and T = -1 on the first
    rows: the largest |sum| the layout can produce), "max" (q = +127 and T = +1 on the first rows)."""
    packing = get_packing(method)
    t = rng.integers(-1, 2, size=(n, k), dtype=np.int8)
    kp = packing.padded_k(k) if method == "i2_s" else packing.padded(n, k)[1]
    q = np.zeros(kp, dtype=np.int8)
    q[:k] = rng.integers(-128, 128, size=k, dtype=np.int16).astype(np.int8)
    if extreme != "random":
        q[:k] = -128 if extreme == "min" else 127
        t[: min(n, 3)] = -1 if extreme == "min" else 1
        q[: min(k, 2)] = [127, -128][: min(k, 2)]  # both ends of int8 within the same vector
    return t, packing.pack(t), q


def reference(method: str, packed: np.ndarray, n: int, k: int, q: np.ndarray) -> np.ndarray:
    """acc[n] = sum_k T[n][k] * q[k] with T unpacked from the very bytes the C code reads."""
    t = get_packing(method).unpack(packed, n, k)
    return t.astype(np.int64) @ q[:k].astype(np.int64)


def run_check(exe: Path, method: str, isa: str, n: int, k: int, rng: np.random.Generator, work: Path,
              extreme: str = "random", splits=(), arch: str = "native", qemu_cpu: str = "cortex-a72"):
    """Run the driver's check mode on a random case; returns (reference, kernel result) as int64 arrays."""
    _, packed, q = random_case(method, n, k, rng, extreme)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    wf, qf, af = work / "w.bin", work / "q.bin", work / "acc.bin"
    wf.write_bytes(packed.tobytes())
    qf.write_bytes(q.tobytes())
    args = ["check", method, isa, wf, qf, n, len(q), af]
    if splits:
        args.append(",".join(map(str, splits)))
    proc = run_binary(exe, args, target=arch, qemu_cpu=qemu_cpu)
    assert proc.returncode == 0, f"driver failed ({proc.returncode}): {proc.stderr}"
    got = np.fromfile(af, dtype=np.int32).astype(np.int64)
    return reference(method, packed, n, k, q), got


def random_batch(method: str, n: int, k: int, nb: int, rng: np.random.Generator, extreme: str = "random"):
    """(packed bytes, q [nb, kp] int8): one matrix and nb activation rows. Token 0 is random_case's (extremes
    included); with an extreme every other token repeats it, so blocks of tokens all reach the largest sums."""
    _, packed, q0 = random_case(method, n, k, rng, extreme)
    q = np.zeros((nb, len(q0)), dtype=np.int8)
    for b in range(nb):
        repeat = b == 0 or (extreme != "random" and b % 2 == 0)
        q[b, :k] = q0[:k] if repeat else rng.integers(-128, 128, size=k, dtype=np.int16).astype(np.int8)
    return packed, q


def run_batch(exe: Path, mode: str, method: str, isa: str, n: int, packed: np.ndarray, q: np.ndarray, work: Path,
              splits=(), arch: str = "native", qemu_cpu: str = "cortex-a72") -> np.ndarray:
    """The driver's gemm (mode "gemm") or gemv-per-token (mode "tokens") on nb = len(q) tokens: int64 acc [nb, n]."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    wf, qf, af = work / "w.bin", work / "q.bin", work / f"acc-{mode}.bin"
    wf.write_bytes(packed.tobytes())
    qf.write_bytes(np.ascontiguousarray(q).tobytes())
    args = [mode, method, isa, wf, qf, n, q.shape[1], af, q.shape[0]]
    if splits:
        args.append(",".join(map(str, splits)))
    proc = run_binary(exe, args, target=arch, qemu_cpu=qemu_cpu)
    assert proc.returncode == 0, f"driver {mode} failed ({proc.returncode}): {proc.stderr}"
    return np.fromfile(af, dtype=np.int32).astype(np.int64).reshape(q.shape[0], n)


def batch_reference(method: str, packed: np.ndarray, n: int, k: int, q: np.ndarray) -> np.ndarray:
    """acc[b, r] = sum_k T[r][k] * q[b][k], T unpacked from the bytes the C code reads."""
    t = get_packing(method).unpack(packed, n, k)
    return q[:, :k].astype(np.int64) @ t.astype(np.int64).T
