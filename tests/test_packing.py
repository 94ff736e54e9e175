"""Packed ternary layouts: round trips, hand-computed bytes, zero padding, errors and speed."""

import time

import numpy as np
import pytest
from gguf import GGMLQuantizationType, quants

from bitedge.formats.packing import PACKINGS, get_packing, layout_constants
from bitedge.errors import BitedgeError
from conftest import random_ternary

SHAPES = [(1, 1), (1, 128), (7, 3), (31, 129), (32, 2), (33, 130), (45, 383), (64, 256), (96, 512), (200, 96)]


def shapes_for(name):
    return [s for s in SHAPES if name != "tq2_0" or s[1] % 256 == 0]


@pytest.mark.parametrize("name", list(PACKINGS))
def test_round_trip_random(name):
    p = PACKINGS[name]
    rng = np.random.default_rng(1)
    for n, k in shapes_for(name):
        for p_zero in (0.0, 0.4, 1.0):
            t = random_ternary(rng, (n, k), p_zero)
            packed = p.pack(t)
            assert packed.dtype == np.uint8
            assert packed.shape == p.packed_shape(n, k)
            assert packed.nbytes == p.nbytes(n, k)
            back = p.unpack(packed, n, k)
            assert back.dtype == np.int8 and back.shape == (n, k)
            np.testing.assert_array_equal(back, t)


@pytest.mark.parametrize("name", list(PACKINGS))
def test_all_values_everywhere(name):
    """Every 2- and 3-weight combination appears at every row position of a tile."""
    p = PACKINGS[name]
    combos = np.array(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij")).reshape(3, -1).T  # 27 x 3
    k = 256 if name == "tq2_0" else 81
    t = np.zeros((64, k), dtype=np.int8)
    for r in range(64):
        row = np.roll(combos, r, axis=0).reshape(-1)
        t[r] = row[:k] if k <= row.size else np.resize(row, k)
    np.testing.assert_array_equal(p.unpack(p.pack(t), 64, k), t)


def test_bits_per_weight():
    assert PACKINGS["i2_s"].bits_per_weight(6912, 2560) == 2.0
    assert PACKINGS["tl1"].bits_per_weight(6912, 2560) == 2.0
    assert abs(PACKINGS["tl2"].bits_per_weight(6912, 2559) - 20 * 8 / 32 / 3) < 1e-9  # 1.667
    assert PACKINGS["tq2_0"].bits_per_weight(6912, 2560) == 66 * 8 / 256
    assert PACKINGS["i2_s"].packed_shape(3, 129) == (3, 64)  # padded to 256 columns
    assert PACKINGS["tl1"].packed_shape(33, 5) == (2, 3 * 16)
    assert PACKINGS["tl2"].packed_shape(33, 5) == (2, 2 * 20)


# ---------------------------------------------------------------------------------------------- known answers


def test_i2s_known_bytes():
    t = np.zeros((1, 128), dtype=np.int8)
    t[0, 0], t[0, 32], t[0, 96] = 1, -1, 1  # codes 2, 0, (col 64: 1), 2
    t[0, 1] = -1  # byte 1: codes 0,1,1,1
    packed = PACKINGS["i2_s"].pack(t)
    assert packed[0, 0] == 0b10_00_01_10 == 0x86
    assert packed[0, 1] == 0b00_01_01_01 == 0x15
    assert (packed[0, 2:] == 0x55).all()  # all-zero weights: code 01 in every field


def test_tl1_known_bytes():
    t = np.zeros((32, 4), dtype=np.int8)
    t[0, :2] = (1, -1)  # index 3*2 + 0 = 6
    t[16, :2] = (-1, 1)  # index 0 + 2 = 2
    t[1, :2] = (0, 1)  # index 3 + 2 = 5
    t[31, 2:] = (-1, -1)  # pair 1, index 0, high nibble of byte 15
    packed = PACKINGS["tl1"].pack(t)
    assert packed.shape == (1, 32)
    assert packed[0, 0] == 0x26  # row 0 low nibble 6, row 16 high nibble 2
    assert packed[0, 1] == 0x45  # row 1 low 5, row 17 high 4 (zero pair)
    assert (packed[0, 2:16] == 0x44).all()
    assert (packed[0, 16:31] == 0x44).all()  # pair 1 of rows 0..30 are zeros
    assert packed[0, 31] == 0x04  # row 15 low nibble 4, row 31 high nibble 0


def test_tl2_known_bytes():
    t = np.zeros((32, 3), dtype=np.int8)
    t[0] = (1, 1, 1)  # v 26 -> sign 1, index 0
    t[16] = (-1, 0, 1)  # v 5 -> sign 0, index 5
    t[1] = (0, 0, -1)  # v 12 -> index 12
    t[31] = (0, 1, 0)  # v 16 -> sign 1, index 10
    packed = PACKINGS["tl2"].pack(t)
    assert packed.shape == (1, 20)
    assert packed[0, 0] == 0x50
    assert packed[0, 1] == 0xDC  # row 1: 12, row 17: 13 (zero triple)
    assert (packed[0, 2:15] == 0xDD).all()
    assert packed[0, 15] == 0xAD  # row 15: 13, row 31: 10
    assert list(packed[0, 16:20]) == [0x01, 0x00, 0x00, 0x80]  # LE uint32 with bits 0 and 31


def test_tq2_known_bytes_match_llama_layout():
    t = np.zeros((1, 256), dtype=np.int8)
    t[0, 0], t[0, 32], t[0, 128] = 1, -1, 1
    packed = PACKINGS["tq2_0"].pack(t, scale=0.5)
    assert packed.shape == (1, 66)
    assert packed[0, 0] == 0b01_01_00_10  # values 0, 32, 64, 96 at bits 1-0, 3-2, 5-4, 7-6
    assert packed[0, 32] == 0b01_01_01_10  # value 128 starts the second 128-group
    assert (np.delete(packed[0, :64], [0, 32]) == 0x55).all()
    assert packed[0, 64:].view(np.float16)[0] == np.float16(0.5)
    deq = quants.dequantize(packed, GGMLQuantizationType.TQ2_0)  # llama.cpp's own reading of the bytes
    np.testing.assert_array_equal(deq, t.astype(np.float32) * 0.5)
    assert PACKINGS["tq2_0"].scale(packed, 1, 256) == 0.5


# ---------------------------------------------------------------------------------------------- padding


@pytest.mark.parametrize("name,n,k", [("i2_s", 3, 5), ("tl1", 5, 7), ("tl2", 7, 8)])
def test_padding_is_zero_weights(name, n, k):
    p = PACKINGS[name]
    t = np.ones((n, k), dtype=np.int8)
    packed = p.pack(t)
    rows, cols = {"i2_s": (n, -(-k // 128) * 128), "tl1": (32, k + k % 2), "tl2": (32, -(-k // 3) * 3)}[name]
    # unpacking the whole padded area must give the matrix followed by zeros
    full = p.unpack(packed, rows, cols)
    expected = np.zeros((rows, cols), dtype=np.int8)
    expected[:n, :k] = 1
    np.testing.assert_array_equal(full, expected)


def test_padding_bytes():
    assert (PACKINGS["i2_s"].pack(np.ones((1, 1), np.int8))[0, 1:] == 0x55).all()
    tl1 = PACKINGS["tl1"].pack(np.ones((1, 2), np.int8))  # rows 1..31 padded
    assert tl1[0, 0] == 0x48 and (tl1[0, 1:] == 0x44).all()  # row 0 index 8, row 16 index 4
    tl2 = PACKINGS["tl2"].pack(np.ones((1, 3), np.int8))
    assert tl2[0, 0] == 0xD0 and (tl2[0, 1:16] == 0xDD).all()  # row 0: (1,1,1) = -(0 index), sign set
    assert list(tl2[0, 16:]) == [1, 0, 0, 0]


# ---------------------------------------------------------------------------------------------- errors


def test_tq2_refuses_unaligned_rows():
    with pytest.raises(BitedgeError, match=r"blk\.0\.ffn_down\.weight.*\(2048, 5460\)"):
        PACKINGS["tq2_0"].pack(np.zeros((2048, 5460), np.int8), "blk.0.ffn_down.weight")


@pytest.mark.parametrize("name", list(PACKINGS))
def test_rejects_non_ternary_and_bad_sizes(name):
    p = PACKINGS[name]
    bad = np.zeros((32, 256), np.int8)
    bad[3, 4] = 2
    with pytest.raises(BitedgeError, match="must be in"):
        p.pack(bad, "w")
    with pytest.raises(BitedgeError, match="bytes"):
        p.unpack(np.zeros(7, np.uint8), 32, 256, "w")


def test_rejects_invalid_codes():
    with pytest.raises(BitedgeError, match="code 3"):
        PACKINGS["i2_s"].unpack(np.full((1, 32), 0xFF, np.uint8), 1, 128)
    with pytest.raises(BitedgeError, match="index above 8"):
        PACKINGS["tl1"].unpack(np.full((1, 16), 0x99, np.uint8), 32, 2)
    with pytest.raises(BitedgeError, match="index above 13"):
        PACKINGS["tl2"].unpack(np.full((1, 20), 0xEE, np.uint8), 32, 3)
    with pytest.raises(BitedgeError, match="unknown weight packing"):
        get_packing("q4_0")


# ---------------------------------------------------------------------------------------------- speed + C constants


@pytest.mark.parametrize("name", list(PACKINGS))
def test_pack_2b_ffn_matrix_fast(name):
    t = np.random.default_rng(0).integers(-1, 2, size=(6912, 2560), dtype=np.int8)
    p = PACKINGS[name]
    start = time.perf_counter()
    packed = p.pack(t)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"{name} packed 6912x2560 in {elapsed:.2f} s"
    np.testing.assert_array_equal(p.unpack(packed, 6912, 2560), t)


def test_layout_constants_agree_with_packers():
    c = layout_constants()
    assert PACKINGS["i2_s"].nbytes(1, c["I2S_BLOCK_K"]) == c["I2S_BLOCK_BYTES"]
    assert PACKINGS["tl1"].nbytes(c["TL1_TILE_ROWS"], c["TL1_GROUP_K"]) == c["TL1_GROUP_BYTES"]
    assert PACKINGS["tl2"].nbytes(c["TL2_TILE_ROWS"], c["TL2_GROUP_K"]) == c["TL2_GROUP_BYTES"]
    assert c["TL2_INDEX_BYTES"] + c["TL2_SIGN_BYTES"] == c["TL2_GROUP_BYTES"]
    assert PACKINGS["tq2_0"].nbytes(1, c["TQ2_0_BLOCK_K"]) == c["TQ2_0_BLOCK_BYTES"]
    assert all(isinstance(v, int) and v > 0 for v in c.values())
