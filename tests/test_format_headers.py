"""The C runtime and Python agree on bitedge's file format: the GGUF keys (bitedge.formats.gguf_keys) and each
packing's byte size (bitedge.formats.packing) reach C only through the headers rendered from Python
(bitedge_gguf_keys.h, bitedge_layouts.h), so a key or size changed in Python is what the compiled C sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from _c_build import RUNTIME, compile_c, require_tool, run_binary
from bitedge.formats import gguf_keys
from bitedge.formats.packing import PACKINGS
from bitedge.formats.packing.tl1 import TL1
from bitedge.render import render_layouts_header

SIZES = [(n, k) for n in (1, 31, 32, 33, 96, 200, 2560) for k in (1, 2, 3, 96, 128, 200, 256, 2560, 6912)]

# prints every packing's name and packed bytes over SIZES, then a few keys, as the runtime's model loader sees them
PROGRAM = r"""
#include <inttypes.h>
#include <stdio.h>

#include "bitedge_gguf_keys.h"
#include "bitedge_layouts.h"

static const int64_t sizes[][2] = {%s};

int main(void) {
    for (int p = 0; p < BE_N_PACKINGS; p++)
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
            printf("%%s %%" PRId64 " %%" PRId64 " %%" PRId64 "\n", be_packing_name(p), sizes[i][0], sizes[i][1],
                   be_packed_nbytes(p, sizes[i][0], sizes[i][1]));
    printf("key %%s\nkey %%s\nkey %%s\nkey %%s\n", BE_KEY_VOCAB_SIZE, BE_KEY_WEIGHT_PACKING, BE_KEY_TOKENS, BE_GGUF_ARCH);
    return 0;
}
""" % ", ".join(f"{{{n}, {k}}}" for n, k in SIZES)


def c_view(tmp_path: Path) -> tuple[dict, list[str]]:
    """Render the headers into tmp_path / "gen", compile PROGRAM against them only, run it."""
    require_tool("gcc")
    gen = tmp_path / "gen"
    gen.mkdir()
    render_layouts_header(gen)
    src = tmp_path / "agree.c"
    src.write_text(PROGRAM)
    exe = compile_c([src], tmp_path / "agree", include_dirs=(gen,))
    sizes, keys = {}, []
    for line in run_binary(exe, []).stdout.splitlines():
        a, *rest = line.split()
        if a == "key":
            keys.append(rest[0])
        else:
            sizes[a, int(rest[0]), int(rest[1])] = int(rest[2])
    return sizes, keys


def python_nbytes(packing, n: int, k: int) -> int:
    try:
        return packing.nbytes(n, k)
    except Exception:  # tq2_0 refuses K not a multiple of 256; C says -1
        return -1


def test_c_packed_sizes_and_keys_are_python_s(tmp_path):
    sizes, keys = c_view(tmp_path)
    assert {name for name, _, _ in sizes} == set(PACKINGS)
    for (name, n, k), nbytes in sizes.items():
        assert nbytes == python_nbytes(PACKINGS[name], n, k), (name, n, k)
    assert keys == [gguf_keys.VOCAB_SIZE, gguf_keys.WEIGHT_PACKING, gguf_keys.TOKENS, gguf_keys.ARCH]


def test_a_key_or_size_changed_in_python_is_what_c_compiles(tmp_path, monkeypatch):
    monkeypatch.setattr(gguf_keys, "VOCAB_SIZE", "bitnet.n_vocab")
    monkeypatch.setattr(TL1, "group_bytes", 17)
    sizes, keys = c_view(tmp_path)
    assert keys[0] == "bitnet.n_vocab"
    assert sizes["tl1", 32, 2] == 17 and sizes["tl1", 33, 3] == 2 * 2 * 17
    assert sizes["i2_s", 1, 128] == 32  # the others unchanged


def test_the_runtime_sources_hold_no_key_literals():
    """model*.c name bitedge's keys only through bitedge_gguf_keys.h (a literal would escape the Python source)."""
    for path in sorted(RUNTIME.glob("model*.c")):
        text = path.read_text()
        for key in (gguf_keys.VOCAB_SIZE, gguf_keys.WEIGHT_PACKING, gguf_keys.TOKENS, gguf_keys.FORMAT_VERSION_KEY):
            assert f'"{key}' not in text, f"{path.name} spells {key} itself"


@pytest.mark.parametrize("name", sorted(PACKINGS))
def test_geometry_gives_each_packing_s_nbytes(name):
    p = PACKINGS[name]
    for n, k in SIZES:
        g = p.geometry_nbytes(n, k)
        assert (-1 if g is None else g) == python_nbytes(p, n, k)
