"""Target profiles, toolchains, cross-compilation and the build cache (`bitedge targets|doctor|build`)."""

from bitedge.builder.compile import BuildResult, build_runtime
from bitedge.targets import Target, get_target, load_targets, suggest_targets
from bitedge.builder.doctor import doctor
from bitedge.builder.toolchains import select_toolchain

__all__ = ["BuildResult", "Target", "build_runtime", "doctor", "get_target", "load_targets", "select_toolchain",
           "suggest_targets"]
