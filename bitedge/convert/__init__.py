"""Checkpoint importers (Hugging Face), ternarization and the GGUF writer.

Import the submodules directly (``bitedge.convert.hf.load_hf``); this package imports nothing heavy.
"""
