#!/usr/bin/env python3
"""Build the peers bitnet.cpp and ik_llama.cpp from their public sources, cached outside git.

Sources (see ../shared/reference/peers.md for why these): a git directory (bare or not) or a plain folder
  bitnet.cpp    github:ygqdan/BitNet-linux (microsoft/BitNet with its llama.cpp submodule content vendored)
  ik_llama.cpp  github:ikawrakow/ik_llama.cpp
Get them with the agent's `fetch` tool (it leaves bare mirrors in /work/.mirror/<owner>+<name>/repo, the
defaults here) or `git clone --bare https://github.com/<owner>/<name>`.

A git source is exported (HEAD, as `git archive` would, skipping absent blobs) into ~/.cache/bitedge/peers/<engine>-<commit>/src, built in
<engine>-<commit>.tmp-<pid>/ and renamed when complete, so a finished folder is always a finished build (and is
reused); a plain folder is keyed by the hash of its path and mtime instead of a commit. Builds are static (the
folder is renamed after linking) and run under `nice -n 19` (the machine is shared).

    python3 bench/peers_build.py --engine ik_llama.cpp -j 2     # prints the bin/ folder
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

CACHE = Path(os.environ.get("BITEDGE_PEERS_CACHE", Path.home() / ".cache" / "bitedge" / "peers"))
MIRRORS = Path("/work/.mirror")
DEFAULT_SRC = {"bitnet.cpp": MIRRORS / "ygqdan+BitNet-linux" / "repo",
               "ik_llama.cpp": MIRRORS / "ikawrakow+ik_llama.cpp" / "repo"}
# the one file missing from bitnet.cpp's vendored llama.cpp: the unchanged upstream helper, as ik_llama.cpp has it
BUILD_INFO_HELPER = "common/cmake/build-info-gen-cpp.cmake"
TOOLS = ("llama-bench", "llama-quantize", "llama-cli")


def configure_args(engine: str) -> list[str]:
    common = ["-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF"]
    if engine == "bitnet.cpp":
        # what its setup_env.py passes on x86 (TL2 needs a per-model codegen), with clang as its README asks;
        # its llama.cpp is a subproject, so common and the examples (llama-bench, llama-quantize) are off by default
        return common + ["-DBITNET_X86_TL2=OFF", "-DCMAKE_C_COMPILER=clang-16", "-DCMAKE_CXX_COMPILER=clang++-16",
                         "-DLLAMA_BUILD_COMMON=ON", "-DLLAMA_BUILD_EXAMPLES=ON", "-DLLAMA_BUILD_SERVER=OFF"]
    if engine == "ik_llama.cpp":
        # GGML_IQK_FA_ALL_QUANTS=OFF only shortens the build (flash-attention kernels for every KV-cache type)
        return common + ["-DGGML_NATIVE=ON", "-DGGML_CUDA=OFF", "-DGGML_IQK_FA_ALL_QUANTS=OFF",
                         "-DLLAMA_BUILD_SERVER=OFF"]
    raise ValueError(f"unknown engine {engine!r} (bitnet.cpp or ik_llama.cpp)")


def is_git(src: Path) -> bool:
    return subprocess.run(["git", "--git-dir" if (src / "HEAD").is_file() else "-C", str(src), "rev-parse", "HEAD"],
                          capture_output=True).returncode == 0


def git_args(src: Path) -> list[str]:
    return ["git", "--git-dir", str(src)] if (src / "HEAD").is_file() and (src / "objects").is_dir() else ["git", "-C", str(src)]


def source_key(src: Path) -> str:
    """The commit of a git source, else a hash of a plain folder's path and newest mtime."""
    if is_git(src):
        return subprocess.run(git_args(src) + ["rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()[:12]
    newest = max((p.stat().st_mtime for p in src.rglob("*") if p.is_file()), default=0)
    return "dir-" + hashlib.sha256(f"{src.resolve()}:{newest}".encode()).hexdigest()[:12]


def export_source(src: Path, dest: Path) -> list[str]:
    """HEAD of a git source (or a copy of a folder) into dest; returns the paths left out because their blobs are
    absent (a `fetch` mirror may lack its largest files: vocab GGUFs, images, a web UI; none is built here)."""
    if not is_git(src):
        shutil.copytree(src, dest, symlinks=True)
        return []
    # not `git archive`: it stops at the first absent blob
    listing = subprocess.run(git_args(src) + ["ls-tree", "-r", "-z", "HEAD"], capture_output=True, check=True).stdout
    entries = []
    for item in listing.split(b"\0"):
        if item:
            meta, path = item.split(b"\t", 1)
            mode, kind, sha = meta.split()
            if kind == b"blob":
                entries.append((mode.decode(), sha.decode(), path.decode()))
    missing = []
    cat = subprocess.Popen(git_args(src) + ["cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    for mode, sha, path in entries:
        cat.stdin.write(sha.encode() + b"\n")
        cat.stdin.flush()
        header = cat.stdout.readline().split()
        if header[-1] == b"missing":
            missing.append(path)
            continue
        data = cat.stdout.read(int(header[2]))
        cat.stdout.read(1)  # the newline after each object
        out = dest / path
        out.parent.mkdir(parents=True, exist_ok=True)
        if mode == "120000":
            out.symlink_to(data.decode())
        else:
            out.write_bytes(data)
            if mode == "100755":
                out.chmod(0o755)
    cat.stdin.close()
    cat.wait()
    return missing


def read_source_file(src: Path, path: str) -> bytes:
    if is_git(src):
        return subprocess.run(git_args(src) + ["show", f"HEAD:{path}"], capture_output=True, check=True).stdout
    return (src / path).read_bytes()


def build_dir(engine: str, src: Path | None = None) -> Path:
    src = Path(src or DEFAULT_SRC[engine])
    return CACHE / f"{engine}-{source_key(src)}"


def built(engine: str, src: Path | None = None) -> Path | None:
    """bin/ of a finished build of this source, or None."""
    src = Path(src or DEFAULT_SRC[engine])
    if not src.exists():
        return None
    bin_dir = build_dir(engine, src) / "bin"
    return bin_dir if all((bin_dir / t).exists() for t in TOOLS[:2]) else None


def build(engine: str, src: Path | None = None, jobs: int = 2, ik_src: Path | None = None, log=sys.stderr) -> Path:
    """Build (or reuse) the engine; returns its bin/ folder with llama-bench, llama-quantize, llama-cli."""
    src = Path(src or DEFAULT_SRC[engine])
    if not src.exists():
        raise SystemExit(f"{engine}: source {src} does not exist (see bench/peers_build.py's docstring)")
    done = built(engine, src)
    if done:
        return done
    final = build_dir(engine, src)
    tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        missing = export_source(src, tmp / "src")
        if missing:
            print(f"{engine}: {len(missing)} files absent from the source, left out: {', '.join(missing)}", file=log)
        if engine == "bitnet.cpp":
            helper = tmp / "src" / "3rdparty" / "llama.cpp" / BUILD_INFO_HELPER
            if not helper.exists():
                helper.parent.mkdir(parents=True, exist_ok=True)
                helper.write_bytes(read_source_file(Path(ik_src or DEFAULT_SRC["ik_llama.cpp"]), BUILD_INFO_HELPER))
        nice = ["nice", "-n", "19"]
        print(f"{engine}: configuring in {tmp}", file=log, flush=True)
        with open(tmp / "build.log", "w") as out:
            subprocess.run(nice + ["cmake", "-S", str(tmp / "src"), "-B", str(tmp / "build")] + configure_args(engine),
                           check=True, stdout=out, stderr=subprocess.STDOUT)
            print(f"{engine}: building {', '.join(TOOLS)} with -j{jobs} (log {tmp / 'build.log'})", file=log, flush=True)
            subprocess.run(nice + ["cmake", "--build", str(tmp / "build"), "-j", str(jobs), "--target", *TOOLS],
                           check=True, stdout=out, stderr=subprocess.STDOUT)
        (tmp / "bin").mkdir()
        for tool in TOOLS:
            shutil.copy2(tmp / "build" / "bin" / tool, tmp / "bin" / tool)
        shutil.rmtree(tmp / "build")  # objects are large; the binaries are static
        os.replace(tmp, final)
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"{engine}: build failed ({e.returncode}); see {tmp / 'build.log'}") from None
    return final / "bin"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", required=True, choices=sorted(DEFAULT_SRC))
    ap.add_argument("--src", type=Path, help="git directory or folder (default: the fetch mirror)")
    ap.add_argument("--ik-src", type=Path, help="ik_llama.cpp source (bitnet.cpp borrows one cmake helper from it)")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    a = ap.parse_args()
    print(build(a.engine, a.src, a.jobs, a.ik_src))


if __name__ == "__main__":
    main()
