"""The data files bitedge ships outside its Python modules, found the same way in a checkout and a wheel.

In the repository `targets/` (board profiles) and `kernels/` (C runtime and templates) live at the top level,
as the design has them; `bitedge/_shipped/targets` and `bitedge/_shipped/kernels` are symlinks to them, and
setuptools copies their files into the wheel as package data, so a non-editable install has them too.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS_DIR = (HERE / "targets").resolve()
KERNELS_DIR = (HERE / "kernels").resolve()
RUNTIME_DIR = KERNELS_DIR / "runtime"
TEMPLATES_DIR = KERNELS_DIR / "templates"
