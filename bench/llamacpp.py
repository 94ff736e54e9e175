"""Build llama.cpp's llama-bench (or llama-server) from the source vendored in the llama-cpp-python sdist.

The sdist comes from the package index (`pip download --no-binary :all: llama-cpp-python`), so no other
network access is needed. The build is cached in build/llamacpp/<version>/ and reused.

    python3 bench/llamacpp.py                      # prints the path of llama-bench
    python3 bench/llamacpp.py --tool llama-server  # the same build with the HTTP server (bench/bench_serve.py)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "llamacpp"


def fetch_sdist(version: str | None) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    have = sorted(CACHE.glob("llama_cpp_python-*.tar.gz"))
    if have and not version:
        return have[-1]
    spec = f"llama-cpp-python=={version}" if version else "llama-cpp-python"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", spec, "-d", str(CACHE)],
                   check=True, stdout=subprocess.DEVNULL)
    return sorted(CACHE.glob("llama_cpp_python-*.tar.gz"))[-1]


def build_llama_bench(version: str | None = None, jobs: int = 2, tool: str = "llama-bench") -> Path:
    """Build `tool` (llama-bench, which brings llama-completion too, or llama-server) once; return its path."""
    sdist = fetch_sdist(version)
    name = sdist.name.removesuffix(".tar.gz")
    out = CACHE / name
    exe = out / "bin" / tool
    if exe.exists():
        return exe
    targets = ["llama-server"] if tool == "llama-server" else ["llama-bench", "llama-completion"]
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        src = Path(tmp) / name / "vendor" / "llama.cpp"
        bld = Path(tmp) / "build"
        subprocess.run(["cmake", "-S", str(src), "-B", str(bld), "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON",
                        "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                        f"-DLLAMA_BUILD_SERVER={'ON' if tool == 'llama-server' else 'OFF'}", "-DBUILD_SHARED_LIBS=OFF", "-DGGML_OPENMP=OFF"],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", str(bld), "-j", str(jobs), "--target", *targets],
                       check=True, stdout=subprocess.DEVNULL)
        (out / "bin").mkdir(parents=True, exist_ok=True)
        for built in targets:
            if (bld / "bin" / built).exists():
                shutil.copy2(bld / "bin" / built, out / "bin" / built)
    return exe


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--version", help="llama-cpp-python version (default: newest on the index)")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--tool", choices=("llama-bench", "llama-server"), default="llama-bench")
    a = ap.parse_args()
    print(build_llama_bench(a.version, a.jobs, a.tool))
