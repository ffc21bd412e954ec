"""Checkpoint I/O: Hugging Face folders, safetensors, the weights-only .bin reader, adapter folders."""
