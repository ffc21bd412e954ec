"""Cost per text of several of our models against the first, on the same texts in the same run.

Each model runs our ``Classifier`` from raw texts to class probabilities (its
preprocessing and tokenization included) in its own process pinned to
``--threads`` cores, as :mod:`benchmarks.model_throughput` runs its sides, and
the models alternate pass by pass so that drift in the machine's load falls on
all of them; the best pass of each counts.  Texts are length-sorted into chunks
of ``--batch_size`` (the pipeline's order).  Reported per model: texts/s,
milliseconds per text, cost relative to the first model (its time per text over
the first's), the precision ``--precision`` resolved to, matmul FLOPs per text at
the median length, and peak memory.  This is the CPU figure; on an accelerator
run it there (``device_check``) for that machine's cost.

    python -m benchmarks.model_cost --models flaxmodel/default,flaxmodel/large \\
        --texts ../shared/data/davidson/val.csv --json out/bench/model_cost.json
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Sequence

from benchmarks import harness
from benchmarks.model_throughput import Spec, Worker, chunks_of, summarise


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", required=True, help="Comma-separated model folders; the first is the baseline.")
    parser.add_argument("--texts", required=True, help="One text per line, .jsonl (field --text_field) or .csv (column).")
    parser.add_argument("--json", required=True, help="Where to write the result.")
    parser.add_argument("--text_field", default="text")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=1024, help="First N texts of the file.")
    parser.add_argument("--repeats", type=int, default=2, help="Timed passes per model; the best counts.")
    parser.add_argument("--precision", default="auto", help="Each model's --precision (auto: its own calibration).")
    parser.add_argument("--note", default="", help="Free text recorded with the result.")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    if len(models) < 2:
        parser.error("--models needs at least two folders: a baseline and one to compare with it")

    from flaxmodel import forward_flops, resolve_model

    load_before = harness.machine()["load_avg_1m"]
    texts = harness.read_texts(args.texts, args.limit, args.text_field)
    configs = {m: resolve_model(m).config for m in models}  # from the folders' files: no weights read
    workers = {m: Worker("ours", _spec(args, m), texts) for m in models}
    lengths = {m: w.ask("lengths") for m, w in workers.items()}
    chunks = {m: chunks_of(sorted(range(len(texts)), key=lambda i: lengths[m][i]), args.batch_size) for m in models}
    for m, worker in workers.items():  # warm-up: every shape compiled before any timing
        worker.ask("run", chunks[m])
    passes: dict[str, list] = {m: [] for m in models}
    for _ in range(args.repeats):
        for m, worker in workers.items():
            passes[m].append(worker.ask("run", chunks[m]))
    finals = {m: w.close() for m, w in workers.items()}

    baseline = models[0]
    per_model = {}
    for m in models:
        summary = summarise(passes[m], lengths[m], configs[m], len(texts), True)
        median = sorted(lengths[m])[len(texts) // 2]
        per_model[m] = {
            "texts_per_s": summary["texts_per_s"],
            "ms_per_text": 1e3 / summary["texts_per_s"],
            "precision": workers[m].info["precision"],
            "median_tokens": median,
            "gflops_per_text_at_median": forward_flops(configs[m], 1, median) / 1e9,
            "peak_rss_mb": finals[m]["peak_rss_mb"],
            "seconds_all_passes": summary["seconds_all_passes"],
        }
    for m in models:
        per_model[m]["cost_vs_baseline"] = per_model[baseline]["texts_per_s"] / per_model[m]["texts_per_s"]
    result = {
        "benchmark": "model_cost",
        "baseline": baseline,
        "models": per_model,
        "setup": {
            "texts": args.texts,
            "n_texts": len(texts),
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "threads": args.threads,
            "repeats": args.repeats,
            **harness.provenance(load_before, args.note),
        },
    }
    harness.write_result(args.json, result)
    figures = [
        f"{m}: {e['texts_per_s']:.0f}/s ({e['precision']}), {e['ms_per_text']:.1f} ms/text, x{e['cost_vs_baseline']:.2f} cost"
        for m, e in per_model.items()
    ]
    harness.record_run("model cost", figures, result["setup"])
    print(json.dumps(per_model, indent=2))
    return result


def _spec(args: argparse.Namespace, model: str) -> Spec:
    return Spec(
        model=model,
        torch_model=model,
        labels=None,
        batch_size=args.batch_size,
        max_length=args.max_length,
        threads=args.threads,
        precision=args.precision,
        torch_device="cpu",
        compilation_cache=None,
    )


if __name__ == "__main__":
    main()
