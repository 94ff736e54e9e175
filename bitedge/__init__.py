"""bitedge: ternary (BitNet b1.58) LLMs from a workstation to ARM and x86 edge boards."""

__version__ = "0.1.0"
