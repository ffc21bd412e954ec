"""The first run on an accelerator: model-alone throughput and MFU, the pipeline end to end, compile costs.

Run through ``benchmarks/device_check.sh`` (which logs to ``$OUT/device_check.log``);
everything measured goes to ``$OUT/device_check.json``, rewritten after every step
so that a step cut off by the time budget still leaves the ones before it.

Steps, in order of what matters most (each a process of its own, stopped at its
share of the budget):

1. ``model``: per model of the configuration (``default``: the shipped model;
   ``roberta-base``: RoBERTa-base-sized random weights, ``benchmarks.model_throughput``'s
   ``RANDOM_MODELS``) and precision, ``Classifier.predict_ids`` over length-sorted
   texts on batches of ``rows`` rows (warm-up pass first, which compiles; then
   the best of ``repeats`` passes): texts/s, FLOPs computed
   (``flaxmodel.forward_flops`` on the shapes run) per second, MFU against the
   device's dense peak for that precision (:data:`PEAK_TFLOPS`; float32 against
   TF32's, which XLA uses for float32 dots on GPUs at JAX's default matmul
   precision), compile count and seconds (``jax.monitoring``), no compilation cache.
2. ``pipeline``: ``python -m pipelines.moderate`` on ``pipeline_texts`` records
   (the texts cycled, each made unique so nothing is reused), ``--precision auto``:
   ``cold`` (empty compilation cache), ``warm`` (the same cache again), then
   ``--direct_running_mode=multi_processing`` with ``--model_copies 0`` and ``1``
   (warm cache).  Per run: wall time, texts/s, the summary's figures, the forward's
   traced shapes, executables obtained and their seconds, persistent-cache hits and
   so the XLA compilations done (``JAX_LOG_COMPILES``),
   and the device's busy share: the mean of ``nvidia-smi``'s utilization samples
   over the run (the share of time a kernel was running), next to the summary's
   model seconds over wall seconds.

Configurations: ``full`` (the documented run) and ``tiny`` (CPU test: a tiny random
model, a few hundred texts); ``DEVICE_CHECK_CONFIG`` may also name a JSON file of
overrides of ``full``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks import harness

CONFIGS: dict[str, dict[str, Any]] = {
    "full": {
        "models": ["default", "roberta-base"],
        "precisions": ["bfloat16", "float32"],
        "rows": 1024,
        "max_length": 128,
        "stride": 32,
        "model_texts": 16384,
        "repeats": 3,
        "pipeline_model": "default",
        "pipeline_texts": 200_000,
        "pipeline_workers": 4,
        "pipeline_runs": ["cold", "warm", "processes", "model_copies"],
        # Seconds for everything; the script is documented to end within 8 minutes on an H100.
        "budget_s": 450,
    },
    "tiny": {
        "models": ["tiny"],
        "precisions": ["bfloat16", "float32"],
        "rows": 16,
        "max_length": 32,
        "stride": 8,
        "model_texts": 48,
        "repeats": 1,
        "pipeline_model": "tiny",
        "pipeline_texts": 300,
        "pipeline_workers": 2,
        "pipeline_runs": ["cold", "warm", "processes", "model_copies"],
        "budget_s": 400,
    },
}
# A BERT small enough for a CPU test, with MiniLM's vocabulary (its tokenizer is borrowed).
TINY_MODEL = {
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "hidden_act": "gelu",
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "pad_token_id": 0,
}
# Dense tensor-core TFLOP/s per device kind (vendor datasheets, SXM parts): (bfloat16, float32 via TF32).
PEAK_TFLOPS = {"H200": (989.0, 494.0), "H100": (989.0, 494.0), "A100": (312.0, 156.0), "L4": (121.0, 60.0)}
PIPELINE_RUNS = {
    "cold": {"cache": "fresh", "model_copies": 0, "processes": False},
    "warm": {"cache": "warm", "model_copies": 0, "processes": False},
    "processes": {"cache": "warm", "model_copies": 0, "processes": True},
    "model_copies": {"cache": "warm", "model_copies": 1, "processes": True},
}
# Exit status when JAX sees no accelerator (1: a step failed).
NO_ACCELERATOR_EXIT = 2
_TRACED = re.compile(r"Compiling jit\(_forward\)")
_CACHE_HIT = re.compile(r"Persistent compilation cache hit for 'jit__forward'")
# Logged for every executable obtained, loads from the persistent cache included (those are also cache hits).
_COMPILED = re.compile(r"Finished XLA compilation of jit\(_forward\) in ([0-9.eE+-]+) sec")
_SUMMARY = re.compile(
    r"([0-9.]+) texts/s over ([0-9.]+) s wall \((\d+) batches, (\d+) windows, ([0-9.]+) s in the model, ([0-9.]+)% padding"
)


def config_named(name: str) -> dict[str, Any]:
    """``full``, ``tiny``, or ``full`` overridden by a JSON file's fields."""
    if name in CONFIGS:
        return dict(CONFIGS[name], name=name)
    path = Path(name)
    if not path.is_file():
        raise SystemExit(f"DEVICE_CHECK_CONFIG={name!r}: neither {sorted(CONFIGS)} nor a JSON file")
    return dict(CONFIGS["full"], **json.loads(path.read_text()), name=str(path))


def unique_texts(path: str, n: int) -> list[str]:
    """``n`` texts cycling over the file's, each made unique by its number (so the pipeline reuses none)."""
    texts = harness.read_texts(path)
    return [f"{texts[i % len(texts)]} #{i}" for i in range(n)]


def model_folder(name: str, workdir: Path) -> str:
    """The folder of ``default``, of a random model (``tiny`` or one of model_throughput's), or ``name`` itself
    when it is a model folder (a configuration file may name one)."""
    from flaxmodel import default_model_path

    if name == "default":
        return default_model_path()
    if Path(name).is_dir():
        return name
    import jax

    from benchmarks.model_throughput import RANDOM_MODELS, TOKENIZER_FILES
    from flaxmodel import EncoderConfig, minilm_path, save_checkpoint
    from flaxmodel.core.model import init_params

    raw = TINY_MODEL if name == "tiny" else RANDOM_MODELS[name]
    config = EncoderConfig.from_hf_dict(dict(raw, id2label={0: "a", 1: "b", 2: "c"}), source=name)
    folder = workdir / f"random-{name}"
    if not folder.exists():
        save_checkpoint(str(folder), init_params(config, jax.random.PRNGKey(0)), config)
        for file in TOKENIZER_FILES:
            shutil.copy(Path(minilm_path()) / file, folder / file)
    return str(folder)


def peak_tflops(device_kind: str) -> tuple[float, float] | None:
    """(bfloat16, float32) dense peaks: ``DEVICE_CHECK_PEAK_TFLOPS=bf16,fp32`` or the table's entry."""
    given = os.environ.get("DEVICE_CHECK_PEAK_TFLOPS")
    if given:
        bf16, fp32 = (float(v) for v in given.split(","))
        return bf16, fp32
    return next((peaks for kind, peaks in PEAK_TFLOPS.items() if kind in device_kind), None)


def measure_model(name: str, cfg: dict[str, Any], texts_path: str, workdir: Path) -> dict[str, Any]:
    """Step 1 for one model, in this process: every precision of the configuration."""
    import jax

    from flaxmodel import forward_flops, load_classifier

    events: list[tuple[str, float]] = []
    jax.monitoring.register_event_duration_secs_listener(lambda e, s, **_: events.append((e, s)))
    folder = model_folder(name, workdir)
    texts = unique_texts(texts_path, cfg["model_texts"])
    device = jax.devices()[0]
    peaks = peak_tflops(device.device_kind)
    result: dict[str, Any] = {"folder": folder, "device": device.device_kind, "peak_tflops": peaks, "precisions": {}}
    for precision in cfg["precisions"]:
        events.clear()
        start = time.perf_counter()
        clf = load_classifier(folder, precision=precision, batch_size=cfg["rows"], max_length=cfg["max_length"])
        load_s = time.perf_counter() - start
        sequences = sorted(clf.tokenizer.encode(texts), key=len)
        shapes: list[tuple[int, int]] = []
        run_batch = clf.predict_padded

        def recorded(ids: Any, mask: Any, run_batch: Any = run_batch) -> Any:
            shapes.append(ids.shape)
            return run_batch(ids, mask)

        clf.predict_padded = recorded
        start = time.perf_counter()
        clf.predict_ids(sequences)
        warmup_s = time.perf_counter() - start
        compiles = [s for e, s in events if e.endswith("backend_compile_duration")]
        best = float("inf")
        for _ in range(cfg["repeats"]):
            shapes.clear()
            start = time.perf_counter()
            clf.predict_ids(sequences)
            best = min(best, time.perf_counter() - start)
        flops = sum(forward_flops(clf.config, rows, length) for rows, length in shapes)
        peak = peaks[0 if precision == "bfloat16" else 1] if peaks else None
        result["precisions"][precision] = {
            "texts_per_s": len(texts) / best,
            "tokens_per_s": sum(map(len, sequences)) / best,
            "seconds": best,
            "effective_tflops": flops / best / 1e12,
            "mfu": flops / best / 1e12 / peak if peak else None,
            "batches": len(shapes),
            "full_row_batches": sum(rows == cfg["rows"] for rows, _ in shapes),
            "shapes": sorted(set(shapes)),
            "load_s": load_s,
            "warmup_s": warmup_s,
            "xla_compiles": len(compiles),
            "xla_compile_s": sum(compiles),
            "trace_lower_compile_s": sum(s for e, s in events if e.startswith("/jax/core/compile/")),
        }
    return result


class BusySampler:
    """Mean GPU utilization (``nvidia-smi``, every 200 ms) while a run lasts; None where there is none."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._proc = None
        if shutil.which("nvidia-smi"):
            command = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"]
            self._proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._proc.stdout:
            try:
                self.samples.append(float(line.split(",")[0]))
            except ValueError:
                pass

    def stop(self) -> float | None:
        if self._proc is None:
            return None
        self._proc.terminate()
        self._proc.wait()
        return sum(self.samples) / len(self.samples) / 100 if self.samples else None


def run_pipeline(kind: str, cfg: dict[str, Any], inputs: str, model: str, cache: Path, out: Path, timeout_s: float) -> dict[str, Any]:
    """Step 2, one run of ``pipelines.moderate`` as its own process; its figures."""
    spec = PIPELINE_RUNS[kind]
    if spec["cache"] == "fresh" and cache.exists():
        shutil.rmtree(cache)
    command = [sys.executable, "-m", "pipelines.moderate", "--input", inputs, "--output", str(out / kind)]
    command += ["--model", model, "--max_length", str(cfg["max_length"]), "--stride", str(cfg["stride"]), "--id_field", "id", "--precision", "auto"]
    command += ["--compilation_cache_dir", str(cache), "--model_copies", str(spec["model_copies"])]
    if spec["processes"]:
        command += ["--direct_running_mode=multi_processing", f"--direct_num_workers={cfg['pipeline_workers']}"]
    # Several processes share the GPU: none may take 75% of its memory up front, as JAX does by default.
    env = dict(os.environ, JAX_LOG_COMPILES="1", PYTHONUNBUFFERED="1", XLA_PYTHON_CLIENT_PREALLOCATE="false")
    sampler = BusySampler()
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=harness.REPO, timeout=timeout_s)
        returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as err:
        returncode, stdout, stderr = None, _text(err.stdout), _text(err.stderr)
    wall = time.perf_counter() - start
    busy = sampler.stop()
    compiles = [float(s) for s in _COMPILED.findall(stderr)]
    result: dict[str, Any] = {
        **spec,
        "returncode": returncode,
        "timed_out": returncode is None,
        "wall_s": wall,
        "texts_per_s": cfg["pipeline_texts"] / wall if returncode == 0 else None,
        "forward_traced": len(_TRACED.findall(stderr)),
        "xla_executables": len(compiles),
        "xla_executable_s": sum(compiles),
        "cache_hits": len(_CACHE_HIT.findall(stderr)),
        "xla_compiles": len(compiles) - len(_CACHE_HIT.findall(stderr)),
        "device_busy_share": busy,
        "summary": stdout.strip().splitlines()[-8:],
        "command": " ".join(command),
    }
    match = _SUMMARY.search(stdout)
    if match:
        rate, pipeline_wall, batches, windows, model_s, padding = match.groups()
        result.update(
            reported_texts_per_s=float(rate),
            batches=int(batches),
            model_s=float(model_s),
            model_share_of_wall=float(model_s) / float(pipeline_wall) if float(pipeline_wall) else None,
            padding_percent=float(padding),
        )
    if returncode != 0:
        result["stderr_tail"] = stderr.strip().splitlines()[-20:]
    return result


def _text(value: bytes | str | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value or ""


def accelerator_or_exit(allow_cpu: bool) -> dict[str, Any]:
    """The devices JAX sees; exits 2 with what to do when it sees no accelerator (unless ``allow_cpu``)."""
    import jax

    devices = jax.devices()
    found = {"platform": devices[0].platform, "device_kind": devices[0].device_kind, "count": len(devices), "jax": jax.__version__}
    if devices[0].platform == "cpu" and not allow_cpu:
        sys.stderr.write(
            "device_check: no accelerator visible (JAX sees only the CPU). Check `nvidia-smi`, and that the jax "
            "installed has GPU support (`pip install -e '.[gpu]'`, jax[cuda12]); set DEVICE_CHECK_ALLOW_CPU=1 only "
            "to test this script on a CPU.\n"
        )
        raise SystemExit(NO_ACCELERATOR_EXIT)
    return found


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="Folder for device_check.json ($OUT).")
    parser.add_argument("--config", default=os.environ.get("DEVICE_CHECK_CONFIG", "full"))
    parser.add_argument("--texts", default=os.environ.get("DEVICE_CHECK_TEXTS", str(harness.REPO / "samples" / "posts.jsonl")))
    parser.add_argument("--allow_cpu", action="store_true", default=os.environ.get("DEVICE_CHECK_ALLOW_CPU") == "1")
    parser.add_argument("--step", help=argparse.SUPPRESS)  # internal: one model's step 1, in a child process
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cfg = config_named(args.config)
    if args.step == "model":
        result = measure_model(args.model, cfg, args.texts, Path(args.workdir))
        harness.write_json(f"{args.out}/model-{_file_name(args.model)}.json", result)
        return {}
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "benchmark": "device_check",
        "config": cfg,
        "devices": accelerator_or_exit(args.allow_cpu),
        "setup": harness.provenance(harness.machine()["load_avg_1m"], f"config {cfg['name']}"),
        "model": {},
        "pipeline": {},
    }

    def left() -> float:
        return cfg["budget_s"] - (time.perf_counter() - started)

    def save() -> None:
        result["elapsed_s"] = time.perf_counter() - started
        harness.write_json(str(out / "device_check.json"), result)

    save()
    with tempfile.TemporaryDirectory(prefix="device-check-") as tmp:
        work = Path(tmp)
        for name in cfg["models"]:
            result["model"][name] = _model_step(name, args, work, timeout_s=left() * 0.5)
            save()
        inputs = work / "inputs"
        texts = unique_texts(args.texts, cfg["pipeline_texts"])
        from benchmarks.pipeline_throughput import write_shards

        write_shards(texts, len(texts), max(1, cfg["pipeline_workers"]), inputs)
        model = model_folder(cfg["pipeline_model"], work)
        runs = cfg["pipeline_runs"]
        for i, kind in enumerate(runs):
            share = left() / (len(runs) - i)
            if share < 5:
                result["pipeline"][kind] = {"skipped": "time budget spent"}
            else:
                result["pipeline"][kind] = run_pipeline(kind, cfg, str(inputs / "*.jsonl"), model, work / "jax-cache", work / "out", share)
            save()
    ok = all(m.get("precisions") for m in result["model"].values()) and all(
        r.get("returncode") == 0 for r in result["pipeline"].values()
    )
    result["ok"] = ok
    save()
    print(json.dumps({"ok": ok, "elapsed_s": round(result["elapsed_s"], 1), "json": str(out / "device_check.json")}))
    if not ok:
        raise SystemExit("device_check: some steps failed or were cut off; see device_check.json and the log")
    return result


def _file_name(model: str) -> str:
    """A model's name as one file-name part (a configuration may name a folder)."""
    return re.sub(r"[^\w.-]+", "_", model).strip("_")


def _model_step(name: str, args: argparse.Namespace, work: Path, timeout_s: float) -> dict[str, Any]:
    """Step 1 for one model in a child process (a fresh JAX, and a hang cannot outlast ``timeout_s``)."""
    command = [sys.executable, "-m", "benchmarks.device_check", "--out", str(work), "--config", args.config]
    command += ["--texts", args.texts, "--step", "model", "--model", name, "--workdir", str(work)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=harness.REPO, timeout=max(timeout_s, 1))
    except subprocess.TimeoutExpired:
        return {"error": f"cut off after {timeout_s:.0f} s (time budget)"}
    sys.stderr.write(done.stderr)
    path = work / f"model-{_file_name(name)}.json"
    if done.returncode or not path.exists():
        return {"error": f"exit {done.returncode}", "stderr_tail": done.stderr.strip().splitlines()[-20:]}
    return {**json.loads(path.read_text()), "process_s": time.perf_counter() - start}


if __name__ == "__main__":
    main()
