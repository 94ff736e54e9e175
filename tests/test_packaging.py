"""A wheel carries the data bitedge needs outside its modules: board profiles, the C runtime, the kernel
templates and the demo model (checked by hand with a real non-editable install; here, that the package-data
globs in pyproject.toml cover every such file, so adding one cannot silently leave it out of the wheel)."""

import fnmatch
import tomllib
from pathlib import Path

import bitedge
from bitedge._shipped import RUNTIME_DIR, TARGETS_DIR, TEMPLATES_DIR

PKG = Path(bitedge.__file__).resolve().parent
REPO = PKG.parent


def test_shipped_folders_are_the_top_level_ones():
    assert TARGETS_DIR == (REPO / "targets").resolve()
    assert RUNTIME_DIR == (REPO / "kernels" / "runtime").resolve()
    assert TEMPLATES_DIR == (REPO / "kernels" / "templates").resolve()


def test_package_data_globs_cover_every_shipped_file():
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["bitedge"]
    shipped = {
        "_shipped/targets": TARGETS_DIR, "_shipped/kernels/runtime": RUNTIME_DIR,
        "_shipped/kernels/templates": TEMPLATES_DIR, "data/tiny-kjv": PKG / "data" / "tiny-kjv",
    }
    for prefix, folder in shipped.items():
        files = [f for f in folder.iterdir() if f.is_file() and f.suffix not in (".o",) and f.name != "bitedge-run"]
        assert files, prefix
        for f in files:
            rel = f"{prefix}/{f.name}"
            assert any(fnmatch.fnmatch(rel, g) for g in globs), f"{rel} is not in the wheel's package data"
