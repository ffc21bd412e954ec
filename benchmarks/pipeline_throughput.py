"""End-to-end throughput and memory of the moderation pipeline against the model alone.

For each size N in ``--sizes`` it writes N records (the texts of ``--texts``,
cycled, with ids) as ``--shards`` JSONL shards, runs ``python -m
pipelines.moderate`` on the DirectRunner over them, and records the wall time,
the peak resident memory of the whole process tree (sampled every
``--sample_s``, children included) and its trajectory, the XLA compilations the
run did (``JAX_LOG_COMPILES``), and checks that every record came out as a
labeled row.  Separately, in a process pinned to the same cores, the model
alone (``Classifier.predict_proba`` on the same texts, warmed up, so without
compilation) gives the throughput the pipeline is compared with.

A size whose run exceeds ``--timeout_s`` is stopped and reported as such, with
the memory it had reached.  The marginal rate between the two largest finished
sizes cancels fixed start-up costs (loading, compiling, Beam set-up).

    python -m benchmarks.pipeline_throughput --texts ../shared/data/davidson/train.csv \\
        --sizes 10000,100000 --json out/bench/pipeline.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import psutil

from benchmarks import harness

_COMPILE_LINE = re.compile(r"Finished XLA compilation of jit\(_forward\) in ([0-9.eE+-]+) sec")
_SUMMARY_RATE = re.compile(r"([0-9.]+) texts/s over ([0-9.]+) s wall \((\d+) batches, (\d+) windows, ([0-9.]+) s in the model, ([0-9.]+)% padding")


def write_shards(texts: Sequence[str], n: int, shards: int, folder: Path) -> list[Path]:
    """``n`` JSONL records ``{"id", "text"}`` cycling over ``texts``, split into ``shards`` files."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"part-{s:05d}.jsonl" for s in range(shards)]
    handles = [p.open("w", encoding="utf-8") for p in paths]
    try:
        for i in range(n):
            handles[i % shards].write(json.dumps({"id": str(i), "text": texts[i % len(texts)]}) + "\n")
    finally:
        for h in handles:
            h.close()
    return paths


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_pipeline(
    inputs: Path, output: Path, args: argparse.Namespace, log_dir: Path, n: int
) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "pipelines.moderate",
        "--input",
        str(inputs / "*.jsonl"),
        "--output",
        str(output),
        "--id_field",
        "id",
        "--max_length",
        str(args.max_length),
        "--batch_size",
        str(args.batch_size),
    ]
    if args.model:
        command += ["--model", args.model]
    if args.compilation_cache:
        command += ["--compilation_cache_dir", args.compilation_cache]
    command += args.pipeline_args.split()
    env = dict(os.environ, JAX_LOG_COMPILES="1", PYTHONUNBUFFERED="1")
    stdout_path, stderr_path = log_dir / f"pipeline-{n}.out", log_dir / f"pipeline-{n}.err"
    start = time.perf_counter()
    with stdout_path.open("w") as out, stderr_path.open("w") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=harness.REPO, start_new_session=True)
        watched = psutil.Process(proc.pid)
        peak, trajectory, next_mark, timed_out = 0, [], 0.0, False
        while proc.poll() is None:
            elapsed = time.perf_counter() - start
            try:
                rss = _tree_rss(watched)
            except psutil.NoSuchProcess:
                rss = 0
            peak = max(peak, rss)
            if elapsed >= next_mark:
                trajectory.append((round(elapsed, 1), round(rss / 2**20)))
                next_mark += args.trajectory_s
            if elapsed > args.timeout_s:
                timed_out = True
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
                break
            time.sleep(args.sample_s)
    wall = time.perf_counter() - start
    stdout, stderr = stdout_path.read_text(), stderr_path.read_text()
    compiles = [float(s) for s in _COMPILE_LINE.findall(stderr)]
    result: dict[str, Any] = {
        "n_texts": n,
        "finished": not timed_out and proc.returncode == 0,
        "returncode": proc.returncode,
        "timed_out": timed_out,
        "wall_s": wall,
        "texts_per_s": n / wall if not timed_out else None,
        "peak_tree_rss_mb": peak / 2**20,
        "rss_trajectory_mb": trajectory,
        "forward_compiles": len(compiles),
        "forward_compile_s": sum(compiles),
        "command": " ".join(command),
        "summary": stdout.strip().splitlines()[-4:],
    }
    match = _SUMMARY_RATE.search(stdout)
    if match:
        rate, pipeline_wall, batches, windows, model_s, padding = match.groups()
        result.update(
            pipeline_reported_texts_per_s=float(rate),
            pipeline_reported_wall_s=float(pipeline_wall),
            batches=int(batches),
            windows=int(windows),
            model_s=float(model_s),
            padding_percent=float(padding),
        )
    if result["finished"]:
        result.update(_count_outputs(output))
    else:
        result["stderr_tail"] = stderr.strip().splitlines()[-15:]
    return result


def _count_outputs(output: Path) -> dict[str, int]:
    import pyarrow.parquet as pq

    counts = {}
    for name in ("labels", "dead_letter"):
        counts[f"{name}_rows"] = sum(pq.ParquetFile(p).metadata.num_rows for p in output.glob(f"{name}-*.parquet"))
    return counts


def _model_only(model: str | None, texts: list[str], max_length: int, batch_size: int, conn: Any) -> None:
    """Child process: the classifier alone on ``texts`` (warm-up pass first), as the pipeline's yardstick."""
    from flaxmodel import load_classifier

    clf = load_classifier(model, batch_size=batch_size, max_length=max_length)
    start = time.perf_counter()
    clf.predict_proba(texts)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    clf.predict_proba(texts)
    seconds = time.perf_counter() - start
    conn.send(
        {
            "n_texts": len(texts),
            "texts_per_s": len(texts) / seconds,
            "seconds": seconds,
            "warmup_s": warmup,
            "num_compiles": clf.num_compiles,
            "peak_rss_mb": harness.peak_rss_mb(),
        }
    )


def model_only(args: argparse.Namespace, texts: list[str]) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_model_only, args=(args.model, texts, args.max_length, args.batch_size, child))
    proc.start()
    result = parent.recv()
    proc.join()
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", required=True, help="Source texts (one per line, .jsonl or .csv), cycled up to each size.")
    parser.add_argument("--json", required=True)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="Comma-separated numbers of records.")
    parser.add_argument("--model", default=None, help="Checkpoint folder; default: the default model.")
    parser.add_argument("--text_field", default="text")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="Cores the pipeline and the model-only run are pinned to.")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--model_texts", type=int, default=10000, help="Texts of the model-only yardstick run.")
    parser.add_argument("--timeout_s", type=float, default=3600, help="Stop a size's run after this long.")
    parser.add_argument("--sample_s", type=float, default=0.2, help="Memory sampling period.")
    parser.add_argument("--trajectory_s", type=float, default=10, help="Period of the recorded memory trajectory.")
    parser.add_argument("--compilation_cache", default=None, help="Passed as --compilation_cache_dir to the pipeline.")
    parser.add_argument("--pipeline_args", default="", help="Extra flags for pipelines.moderate (Beam options, ...).")
    parser.add_argument("--keep", default=None, help="Keep inputs, outputs and logs in this folder.")
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    harness.pin_threads(args.threads)
    source = harness.read_texts(args.texts, None, args.text_field)
    load_before = harness.machine()["load_avg_1m"]
    cycled = [source[i % len(source)] for i in range(min(args.model_texts, max(sizes)))]
    reference = model_only(args, cycled)

    runs = []
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    try:
        for n in sizes:
            inputs = workdir / f"in-{n}"
            write_shards(source, n, args.shards, inputs)
            output = workdir / f"out-{n}"
            shutil.rmtree(output, ignore_errors=True)
            run = run_pipeline(inputs, output, args, workdir, n)
            if run["texts_per_s"]:
                run["share_of_model"] = run["texts_per_s"] / reference["texts_per_s"]
            runs.append(run)
            print(json.dumps({k: v for k, v in run.items() if k not in ("rss_trajectory_mb", "command")}), flush=True)
            if not args.keep:
                shutil.rmtree(inputs, ignore_errors=True)
                shutil.rmtree(output, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    finished = [r for r in runs if r["finished"]]
    marginal = None
    if len(finished) >= 2:
        a, b = finished[-2], finished[-1]
        marginal = (b["n_texts"] - a["n_texts"]) / (b["wall_s"] - a["wall_s"])
    result = {
        "benchmark": "pipeline_throughput",
        "model_texts_per_s": reference["texts_per_s"],
        "model_only": reference,
        "runs": runs,
        "marginal_texts_per_s": marginal,
        "marginal_share_of_model": marginal / reference["texts_per_s"] if marginal else None,
        "setup": {
            "texts": args.texts,
            "distinct_texts": len(source),
            "shards": args.shards,
            "threads": args.threads,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "model": args.model or "(default model)",
            "compilation_cache": args.compilation_cache,
            "pipeline_args": args.pipeline_args,
            **harness.provenance(load_before, args.note),
        },
    }
    harness.write_result(args.json, result)
    _record(result)
    return result


def _record(result: dict[str, Any]) -> None:
    figures = [f"model only {result['model_texts_per_s']:.0f}/s"]
    for run in result["runs"]:
        if run["finished"]:
            figures.append(
                f"{run['n_texts']}: {run['texts_per_s']:.0f}/s ({run['share_of_model']:.0%}), "
                f"{run['wall_s']:.0f}s, peak {run['peak_tree_rss_mb']:.0f} MiB, {run['forward_compiles']} compiles"
            )
        else:
            figures.append(
                f"{run['n_texts']}: stopped after {run['wall_s']:.0f}s "
                f"({'timeout' if run['timed_out'] else 'rc ' + str(run['returncode'])}), peak {run['peak_tree_rss_mb']:.0f} MiB"
            )
    if result["marginal_texts_per_s"]:
        figures.append(f"marginal {result['marginal_texts_per_s']:.0f}/s ({result['marginal_share_of_model']:.0%})")
    harness.record_run("pipeline", figures, result["setup"])


if __name__ == "__main__":
    main()
