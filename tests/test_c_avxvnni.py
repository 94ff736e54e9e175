"""The avx-vnni kernel table (kernels/runtime/kernels_avxvnni.c), as far as this project can check it.

No CPU the project has run on can execute it: Zen 3 has no VNNI, Zen 4 has AVX-512 VNNI (the EVEX vpdpbusd) but
not AVX-VNNI (the VEX one), and qemu's TCG (7.2 here, 10.0 in bookworm-backports) does not implement AVX-VNNI
(SIGILL under -cpu max). The evidence, each part here or in test_c_kernels.py:
- its I2_S source, kernels_vnni_i2s.h, is the avx512-vnni table's too: exact against the naive product where the
  avx512-vnni table runs (Zen 4: test_c_kernels.py's native self-tests), and everywhere with AVX2 through
  kernels/tests/vnni_emulated.c (vpdpbusd done in AVX2, the avx-vnni tile; test_c_kernels.py's self-tests);
- the object gcc and clang make of it holds the VEX vpdpbusd on ymm and no EVEX instruction, zmm or mask register,
  so it cannot SIGILL on an AVX-VNNI CPU without AVX-512 (below);
- selection: never offered on a CPU without AVX-VNNI, and a forced BITEDGE_KERNELS=avx-vnni names what is missing
  (below; test_kernels.c checks the order avx512-vnni > avx-vnni > avx2);
- on a CPU with AVX-VNNI, or under an emulator that has it, the self-test runs the table itself (below, skipped
  with the reason otherwise).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests._c_build import (BASE_FLAGS, REPO, RUNTIME, compile_c, host_has_avx2, host_has_avx_vnni, require_tool,
                             run_binary)
from tests.test_c_kernels import FLAGS, SOURCES, check_selftest, native_tables, parse_selftest

# prefixes that may stand before an EVEX prefix (0x62): segment overrides and the address-size override
_LEGACY_PREFIXES = {"26", "2e", "36", "3e", "64", "65", "67"}


def disassemble(obj: Path) -> list[tuple[list[str], str]]:
    """(encoding bytes, instruction text) per instruction of obj (objdump -d, continuation lines joined)."""
    out = subprocess.run(["objdump", "-d", "-w", str(obj)], capture_output=True, text=True, check=True).stdout
    insns = []
    for line in out.splitlines():
        m = re.match(r"^\s*[0-9a-f]+:\t((?:[0-9a-f]{2} )+)\s*\t?(.*)$", line)
        if m:
            insns.append((m.group(1).split(), m.group(2).strip()))
    return insns


def is_evex(encoding: list[str]) -> bool:
    i = 0
    while i < len(encoding) and encoding[i] in _LEGACY_PREFIXES:
        i += 1
    return i < len(encoding) and encoding[i] == "62"  # 0x62 is BOUND outside 64-bit mode, EVEX in it


def compile_object(cc: str, source: str, out: Path, march: tuple[str, ...]) -> Path:
    cmd = [cc, *BASE_FLAGS, "-O2", *march, f"-I{RUNTIME}", "-c", str(REPO / source), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr.strip(), f"{' '.join(cmd)}\n{proc.stderr}"
    return out


@pytest.mark.parametrize("march", [(), ("-march=x86-64-v3",)], ids=["default", "x86-64-v3"])
@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_avx_vnni_object_is_vex_only(tmp_path, cc, march):
    """The avx-vnni table as the product compiles it (default flags, and the x86-64-avx2 profile's): its
    vpdpbusd are all VEX-encoded on ymm, and nothing in the object needs AVX-512 (no EVEX prefix, zmm, ymm16-31
    or mask register), so an AVX-VNNI CPU without AVX-512 (Alder Lake) decodes all of it."""
    require_tool(cc)
    require_tool("objdump")
    insns = disassemble(compile_object(cc, "kernels/runtime/kernels_avxvnni.c", tmp_path / "avxvnni.o", march))
    dots = [(enc, text) for enc, text in insns if "vpdpbusd" in text]
    assert len(dots) >= 8, "the I2_S kernels lost their vpdpbusd"
    for enc, text in dots:
        assert text.startswith("{vex} vpdpbusd") and "%ymm" in text and enc[0] in ("c4", "c5"), text
    evex = [text for enc, text in insns if is_evex(enc)]
    assert not evex, f"EVEX instructions in the avx-vnni table: {evex[:5]}"
    wide = [text for _, text in insns if re.search(r"%zmm|%[xy]mm(1[6-9]|2[0-9]|3[01])\b|%k[0-7]\b", text)]
    assert not wide, f"AVX-512 registers in the avx-vnni table: {wide[:5]}"


def test_avx512_vnni_object_is_evex(tmp_path):
    """The same check on the avx512-vnni instantiation of the shared source finds its EVEX vpdpbusd: the test
    above can tell the encodings apart."""
    require_tool("gcc")
    require_tool("objdump")
    insns = disassemble(compile_object("gcc", "kernels/runtime/kernels_avx512vnni.c", tmp_path / "vnni512.o", ()))
    dots = [(enc, text) for enc, text in insns if "vpdpbusd" in text]
    assert dots and all(is_evex(enc) and not text.startswith("{vex}") for enc, text in dots)


def test_avx_vnni_not_offered_without_it(tmp_path):
    """On a CPU without AVX-VNNI (Zen 3, Zen 4) the build holds the table but never lists or selects it."""
    if host_has_avx_vnni():
        pytest.skip("this CPU has AVX-VNNI: the table is offered, as test_c_kernels.py's self-tests check")
    require_tool("gcc")
    exe = compile_c(SOURCES, tmp_path / "test_kernels", flags=FLAGS, opt="-O2")
    info = parse_selftest(run_binary(exe).stdout)
    assert "avx-vnni" not in info["tables"].split() and info["selected"] != "avx-vnni"
    assert "AVX_VNNI = 0" in info["system_info"]


# A VEX vpdpbusd: (2 * -3) * 4 + 5 per lane. Prints -19 where AVX-VNNI runs; SIGILL where not.
AVX_VNNI_PROBE = r"""
#include <immintrin.h>
#include <stdio.h>
__attribute__((target("avxvnni,avx2"))) static int probe(void) {
    const __m256i r = _mm256_dpbusd_avx_epi32(_mm256_set1_epi32(5), _mm256_set1_epi8(2), _mm256_set1_epi8(-3));
    return _mm256_extract_epi32(r, 7);
}
int main(void) { printf("%d\n", probe()); return 0; }
"""


def avx_vnni_runner(tmp_path: Path) -> list[str] | None:
    """[] when this CPU runs AVX-VNNI, an emulator's argv prefix when one here does, else None."""
    if host_has_avx_vnni():
        return []
    src = tmp_path / "probe.c"
    src.write_text(AVX_VNNI_PROBE)
    probe = compile_c([src], tmp_path / "probe", flags=("-Wno-unused-function",), opt="-O2")
    for qemu in ("qemu-x86_64", "qemu-x86_64-static"):
        if shutil.which(qemu):
            proc = subprocess.run([qemu, "-cpu", "max", str(probe)], capture_output=True, text=True, timeout=60)
            if proc.returncode == 0 and proc.stdout.strip() == "-19":
                return [qemu, "-cpu", "max"]
    return None


def test_avx_vnni_table_runs_exact(tmp_path):
    """The table itself, exact against the naive product (the whole self-test), on an AVX-VNNI CPU or under an
    emulator that implements AVX-VNNI. None here: Zen 3, and qemu TCG 7.2 / 10.0 raise SIGILL on the probe."""
    if not host_has_avx2():
        pytest.skip("needs an x86 CPU with AVX2")
    require_tool("gcc")
    runner = avx_vnni_runner(tmp_path)
    if runner is None:
        pytest.skip("no AVX-VNNI here: the CPU lacks it and no emulator on PATH implements it (qemu TCG 7.2 and "
                    "10.0 do not; Intel SDE is not installable here)")
    exe = compile_c(SOURCES, tmp_path / "test_kernels", flags=FLAGS, opt="-O2")
    proc = subprocess.run([*runner, str(exe)], capture_output=True, text=True, timeout=1200)
    info = parse_selftest(proc.stdout)
    assert "avx-vnni" in info.get("tables", "").split(), proc.stdout[-2000:]
    if not runner:
        check_selftest(proc, native_tables())
    else:
        assert proc.returncode == 0 and "checks passed" in proc.stdout, proc.stdout[-3000:]
