"""Model math: configuration, encoder layers, architectures, the pure forward, LoRA. No file I/O."""
