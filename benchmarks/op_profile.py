"""Where a forward pass's time goes, per kind of operation, from XLA's own CPU profile.

For each ``--precisions`` path it jits the classifier's forward (``Classifier`` of the
default model or ``--model``) on one ``[--rows, --length]`` batch of real texts, runs
it ``--iterations`` times under ``jax.profiler.trace`` (XLA's CPU runtime records one
event per executed HLO instruction: each fusion, dot or copy), and sums the events'
durations per HLO instruction.  The optimized HLO of the same executable says what
each instruction computes; :func:`categorize` sorts them into matmuls (dense layers
vs the two attention products), softmax, layer norm, GELU, int8 quantization,
dtype converts, padding/mask, copies/transposes and the rest.  The table (ms per
forward and share) is printed and written to ``--json``; with ``--dump DIR`` the
LLVM IR and assembly of the program are dumped there too (``XLA_FLAGS``), so
that which instructions a dot lowered to can be read (``grep vpdpbusd`` for VNNI,
``tdpbssd`` for AMX int8, ``vdpbf16ps`` for AVX512-BF16, ``tdpbf16ps`` for AMX bf16).

    python -m benchmarks.op_profile --texts ../shared/data/davidson/val.csv --json out/bench/ops.json
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time
from typing import Any, Sequence

from benchmarks import harness

CATEGORIES = (
    "dense matmuls",
    "attention matmuls",
    "softmax",
    "layer norm",
    "GELU",
    "int8 quantize",
    "converts",
    "mask/padding",
    "copy/transpose",
    "other",
)
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\S+)\s+(\w[\w\-]*)\(")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")


def parse_hlo(text: str) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]], set[str]]:
    """Every instruction (name -> opcode, shape, called computation, its line), each computation's
    opcodes (what a fusion holds), and the computations holding a batched dot (the attention products)."""
    instructions: dict[str, dict[str, Any]] = {}
    bodies: dict[str, list[str]] = collections.defaultdict(list)
    batched: set[str] = set()
    current = None
    for line in text.splitlines():
        header = re.match(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
        if header and "=" not in line.split("{")[0]:
            current = header.group(1)
            continue
        match = _INSTRUCTION.match(line)
        if not match or current is None:
            continue
        name, shape, opcode = match.groups()
        called = _CALLS.search(line)
        bodies[current].append(opcode)
        instructions[name] = {"opcode": opcode, "shape": shape, "calls": called.group(1) if called else None, "line": line}
        if opcode == "dot" and "lhs_batch_dims" in line:
            batched.add(current)
    return instructions, bodies, batched


def categorize(instruction: dict[str, Any], bodies: dict[str, list[str]], batched: set[str]) -> str:
    """The kind of work one HLO instruction does, from its opcode and, for a fusion, what it fuses."""
    opcode, line = instruction["opcode"], instruction["line"]
    ops = set(bodies.get(instruction["calls"] or "", [])) | {opcode}
    if "dot" in ops or "convolution" in ops or "custom-call" in ops and "matmul" in line.lower():
        # The attention products are batched over (batch, heads): dot dims with a batch dimension.
        attention = "lhs_batch_dims" in line if opcode == "dot" else instruction["calls"] in batched
        return "attention matmuls" if attention else "dense matmuls"
    if "erf" in ops or "tanh" in ops:
        return "GELU"
    if "rsqrt" in ops or "sqrt" in ops:
        return "layer norm"
    if "exponential" in ops:
        return "softmax"
    if "round-nearest-even" in ops or "round-nearest-afz" in ops or "clamp" in ops and "convert" in ops:
        return "int8 quantize"
    if ops <= {"convert", "parameter", "bitcast", "fusion"} and "convert" in ops:
        return "converts"
    if "select" in ops or "compare" in ops or "pad" in ops:
        return "mask/padding"
    if ops & {"copy", "transpose", "bitcast", "reshape", "slice", "concatenate", "broadcast"} and not ops & {
        "add", "multiply", "subtract", "divide", "reduce", "maximum"
    }:
        return "copy/transpose"
    return "other"


def profile_events(trace_dir: str) -> dict[str, float]:
    """Total microseconds per event name in the perfetto trace ``jax.profiler.trace`` wrote."""
    paths = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
    if not paths:
        raise SystemExit(f"no perfetto trace under {trace_dir}")
    with gzip.open(max(paths, key=os.path.getmtime), "rt") as handle:
        trace = json.load(handle)
    totals: dict[str, float] = collections.defaultdict(float)
    for event in trace.get("traceEvents", []):
        if event.get("ph") == "X":
            totals[event["name"]] += float(event.get("dur", 0))
    return totals


def profile_path(clf: Any, ids: Any, mask: Any, iterations: int) -> dict[str, Any]:
    """One precision's per-category time, from ``iterations`` profiled calls of its jitted forward."""
    import jax

    compiled = clf._jitted.lower(clf.params, ids, mask).compile()
    hlo = compiled.as_text()
    instructions, bodies, batched = parse_hlo(hlo)
    for _ in range(3):
        jax.block_until_ready(compiled(clf.params, ids, mask))
    start = time.perf_counter()
    for _ in range(iterations):
        jax.block_until_ready(compiled(clf.params, ids, mask))
    wall = (time.perf_counter() - start) / iterations
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            for _ in range(iterations):
                jax.block_until_ready(compiled(clf.params, ids, mask))
        events = profile_events(trace_dir)
    per_category: dict[str, float] = collections.defaultdict(float)
    per_instruction = {}
    for name, micros in events.items():
        if name in instructions:
            category = categorize(instructions[name], bodies, batched)
            per_category[category] += micros / iterations / 1e3
            per_instruction[name] = (category, micros / iterations / 1e3)
    profiled = sum(per_category.values())
    top = sorted(per_instruction.items(), key=lambda item: -item[1][1])[:15]
    return {
        "wall_ms": wall * 1e3,
        "profiled_ms": profiled,
        "ms": {c: per_category.get(c, 0.0) for c in CATEGORIES},
        "share": {c: per_category.get(c, 0.0) / profiled if profiled else 0.0 for c in CATEGORIES},
        "top_instructions": [(name, cat, ms) for name, (cat, ms) in top],
        "unmatched_ms": sum(m for n, m in events.items() if n not in instructions) / iterations / 1e3,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", required=True)
    parser.add_argument("--json", required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--precisions", default="float32,bfloat16,int8")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dump", default=None, help="Dump XLA's IR and assembly here (XLA_FLAGS).")
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)
    harness.pin_threads(args.threads)
    if args.dump:
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + f" --xla_dump_to={args.dump} --xla_dump_hlo_as_text"
        ).strip()
    from flaxmodel import load_classifier, pad_batch

    load_before = harness.machine()["load_avg_1m"]
    texts = harness.read_texts(args.texts, 4 * args.rows)
    results = {}
    for precision in args.precisions.split(","):
        clf = load_classifier(args.model, precision=precision, batch_size=args.rows, max_length=args.length)
        sequences = [s for s in clf.tokenizer.encode(texts) if len(s) <= args.length][: args.rows]
        ids, mask = pad_batch(sequences, args.rows, args.length, clf.pad_id)
        results[precision] = profile_path(clf, ids, mask, args.iterations)
        print(precision, json.dumps({k: v for k, v in results[precision].items() if k != "top_instructions"}), file=sys.stderr)
    result = {
        "benchmark": "op_profile",
        "paths": results,
        "setup": {"rows": args.rows, "length": args.length, "iterations": args.iterations, "threads": args.threads,
                  "model": args.model, **harness.provenance(load_before, args.note)},
    }
    harness.write_result(args.json, result)
    figures = [
        f"{p}: {r['wall_ms']:.1f} ms/forward; " + ", ".join(f"{c} {100 * s:.0f}%" for c, s in r["share"].items() if s >= 0.01)
        for p, r in results.items()
    ]
    harness.record_run("op_profile", figures, result["setup"])
    return result


if __name__ == "__main__":
    main()
