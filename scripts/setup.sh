#!/usr/bin/env bash
# Install what bitedge needs on a Debian/Ubuntu machine: cross compilers, qemu-user (to run ARM builds
# here), OpenSSH (deploy tests), clang; then bitedge itself with pip. `--test` adds the test extra.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
extra=""
[ "${1:-}" = "--test" ] && extra="[test]"

SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else SUDO="skip"; fi
fi
if [ "$SUDO" = "skip" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: not root and no sudo (or no apt): install gcc, gcc-aarch64-linux-gnu, qemu-user, openssh-server, clang yourself" >&2
else
    echo "== apt: compilers, qemu-user, OpenSSH, clang" >&2
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends \
        gcc libc6-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user qemu-user-static \
        openssh-server openssh-client clang lld make >/dev/null
    # clang's sanitizer and libFuzzer runtimes (the fuzz tests build with them); the name follows Debian's clang
    clang_major=$(clang --version | sed -n 's/.*version \([0-9]*\).*/\1/p' | head -1)
    $SUDO apt-get install -y -qq --no-install-recommends "libclang-rt-${clang_major}-dev" >/dev/null \
        || echo "setup: no libclang-rt-${clang_major}-dev: the libFuzzer test will be skipped" >&2
    # LLVM 22 (clang-22, llvm-mca-22: Debian bookworm-security) for the static ARM estimates (issue 14); the test
    # extra only. A Debian without the packages skips tests/test_arm_estimate.py's llvm-mca tests.
    if [ -n "$extra" ]; then
        if apt-cache show clang-22 llvm-22 >/dev/null 2>&1; then
            $SUDO apt-get install -y -qq --no-install-recommends clang-22 llvm-22 >/dev/null \
                || echo "setup: clang-22 / llvm-22 did not install: the llvm-mca estimate tests will be skipped" >&2
        else
            echo "setup: no clang-22 / llvm-22 package here: the llvm-mca estimate tests will be skipped" >&2
        fi
    fi
    # a headless browser for the test of bitedge-run serve's chat page (skipped without it)
    $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null \
        || echo "setup: no chromium: the chat page browser test will be skipped" >&2
fi

echo "== pip: bitedge${extra}" >&2
python3 -m pip install -q -e ".${extra}"
