"""Hand-run speed and memory benchmarks (not part of CI); see ``benchmarks/README.md``."""
