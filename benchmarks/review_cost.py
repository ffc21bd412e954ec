"""What target groups and the review sample cost end to end: the same job with them and without, interleaved.

Runs ``pipelines.moderate`` on the same shards ``--rounds`` times in each of two
configurations, alternating so that drift in the machine's speed hits both
alike: ``off`` (the model folder with its ``target_head.*`` files removed, no
review sample) and ``on`` (the folder as it is, with ``--review_sample``).  It
reports each run's throughput (records over the whole process's wall time, and
the job's own summary rate), the medians, and ``on / off``.

    python -m benchmarks.review_cost --texts ../shared/data/davidson/train.csv --n 10000 \\
        --json out/bench/review_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any, Sequence

from benchmarks import harness
from benchmarks.pipeline_throughput import run_pipeline, write_shards
from flaxmodel import default_model_path
from flaxmodel.ckpts.target_head import TARGET_HEAD_CONFIG


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", required=True, help="Source texts (one per line, .jsonl or .csv), cycled up to --n.")
    parser.add_argument("--json", required=True)
    parser.add_argument("--n", type=int, default=10000, help="Records per run.")
    parser.add_argument("--rounds", type=int, default=3, help="Runs of each configuration, alternating.")
    parser.add_argument("--review_sample", type=int, default=500)
    parser.add_argument("--model", default=None, help="A model folder with a target head; default: the default model.")
    parser.add_argument("--text_field", default="text")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--pipeline_args", default="--precision float32", help="Flags both configurations get.")
    parser.add_argument("--timeout_s", type=float, default=1800)
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)
    model = args.model or default_model_path()
    if not (Path(model) / TARGET_HEAD_CONFIG).exists():
        parser.error(f"--model {model}: has no {TARGET_HEAD_CONFIG}; give a folder with a target-group head")
    texts = harness.read_texts(args.texts, text_field=args.text_field)
    load_before = os.getloadavg()[0]
    results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        inputs = folder / "inputs"
        write_shards(texts, args.n, args.shards, inputs)
        models = {"off": harness.without_target_head(model, folder), "on": model}
        extra = {"off": "", "on": f" --review_sample {args.review_sample}"}
        for r in range(args.rounds):
            for name in ("off", "on"):
                run_args = argparse.Namespace(
                    model=models[name],
                    max_length=args.max_length,
                    batch_size=args.batch_size,
                    compilation_cache=None,
                    pipeline_args=args.pipeline_args + extra[name],
                    timeout_s=args.timeout_s,
                    sample_s=0.5,
                    trajectory_s=60,
                )
                output = folder / f"out-{name}-{r}"
                result = run_pipeline(inputs, output, run_args, folder, args.n)
                result["review_rows"] = _rows(output, "review")
                results[name].append(result)
                print(f"{name} round {r}: {result['texts_per_s']} texts/s (job: {result.get('pipeline_reported_texts_per_s')})", flush=True)
    summary = {
        name: {
            "median_texts_per_s": statistics.median(x["texts_per_s"] for x in runs if x["finished"]),
            "median_job_texts_per_s": statistics.median(x["pipeline_reported_texts_per_s"] for x in runs if x["finished"]),
        }
        for name, runs in results.items()
    }
    out = {
        "benchmark": "review_cost",
        "runs": results,
        "summary": summary,
        "on_over_off": summary["on"]["median_texts_per_s"] / summary["off"]["median_texts_per_s"],
        "on_over_off_job_rate": summary["on"]["median_job_texts_per_s"] / summary["off"]["median_job_texts_per_s"],
        "setup": {**vars(args), "model": model, **harness.provenance(load_before, args.note)},
    }
    harness.write_result(args.json, out)
    figures = [
        f"{name}: median {s['median_texts_per_s']:.0f}/s (job {s['median_job_texts_per_s']:.0f}/s)" for name, s in summary.items()
    ]
    figures.append(f"on/off x{out['on_over_off']:.3f} (job rate x{out['on_over_off_job_rate']:.3f})")
    harness.record_run("review_cost", figures, out["setup"])
    print(json.dumps({k: out[k] for k in ("summary", "on_over_off", "on_over_off_job_rate")}, indent=2))
    return out


def _rows(output: Path, name: str) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in output.glob(f"{name}-*.parquet"))


if __name__ == "__main__":
    main()
