"""Model-level throughput: our jitted predictor against transformers' PyTorch eager model and ONNX Runtime.

Every side gets the same texts, weights, batch size, maximum length and cores and
goes from raw texts to class probabilities (tokenization included).  The ONNX
Runtime peers run transformers' model exported to ONNX (``ort_fp32``) and the same
graph after ONNX Runtime's dynamic int8 quantization (``ort_int8``: int8 weights,
activations quantized per tensor at run time), tokenized and padded like torch;
they need the ``[bench]`` extra (onnxruntime, onnx) besides ``[test]``.  Ours runs in
``--precision`` (``auto``: what the classifier's own calibration picks; the
JSON's ``precision`` says which), and its labels are compared with ours in
float32 on the same texts (``label_agreement_fp32``; ``ort_int8_label_agreement_fp32``
for ONNX Runtime's int8).  Each side runs in
its own process, pinned to ``--threads`` cores (``harness.pin_threads``: XLA
sizes its CPU thread pool from the process's CPU affinity, torch gets
``torch.set_num_threads``), so that peak memory is per side and neither's
thread pool disturbs the other.  The two alternate pass by pass, which spreads
any drift in machine load over both; the ratio is the figure to trust.

Two orders are measured: ``unsorted`` (chunks of ``--batch_size`` texts in file
order) and ``sorted`` (texts ordered by token count first, then chunked).  Ours
hands each chunk to ``Classifier.predict_ids``, which plans it into batches of
the (rows, length) grid; torch pads the chunk to its longest text.  FLOPs count
the matrix multiplications each side actually computed (two per multiply-add:
the Q/K/V/output projections, the feed-forward pair, the two attention products
and the pooler/classifier; ``flaxmodel.core.model.forward_flops``), on the padded
shapes it really ran, ours with its last layer computed for the first token
only, torch's in full; embeddings, norms, softmax and activations are not counted.
As a ceiling for both, our process also times one jitted matrix multiplication
of the feed-forward's shape (``[--peak_rows, hidden] x [hidden, intermediate]``)
in our precision's matrix multiply (``flaxmodel.core.precision.matmul``):
``matmul_peak_gflops``, and each side's share of it.

    python -m benchmarks.model_throughput --texts ../shared/data/davidson/val.csv --json out/bench/model.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks import harness

ORDERS = ("sorted", "unsorted")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
# Reference encoders with random weights, for sizes no installed checkpoint has.
RANDOM_MODELS = {
    "roberta-base": {
        "model_type": "roberta",
        "vocab_size": 50265,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
        "max_position_embeddings": 514,
        "type_vocab_size": 1,
        "pad_token_id": 1,
    },
}


@dataclasses.dataclass(frozen=True)
class Spec:
    """What both sides run; sent to the worker processes."""

    model: str
    torch_model: str
    labels: tuple[str, ...] | None
    batch_size: int
    max_length: int
    threads: int
    precision: str
    torch_device: str
    compilation_cache: str | None


# ---------------------------------------------------------------------------- workers


class OursRunner:
    """Our Classifier: texts -> ``tokenizer.encode`` -> ``predict_ids`` per chunk."""

    def __init__(self, spec: Spec):
        import jax

        if spec.compilation_cache:
            jax.config.update("jax_compilation_cache_dir", spec.compilation_cache)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        from flaxmodel import load_classifier

        start = time.perf_counter()
        clf = load_classifier(
            spec.model, labels=spec.labels, precision=spec.precision, batch_size=spec.batch_size, max_length=spec.max_length
        )
        self.load_s = time.perf_counter() - start
        self.clf = clf
        self.shapes: list[tuple[int, int]] = []
        run_batch = clf.predict_padded

        def recorded(ids: Any, mask: Any) -> Any:
            # The shapes predict_ids really ran (its planner may cut a chunk into several batches).
            self.shapes.append(ids.shape)
            return run_batch(ids, mask)

        clf.predict_padded = recorded
        self.compile_events: list[tuple[str, float]] = []
        self.cache_hits = 0
        jax.monitoring.register_event_duration_secs_listener(self._on_duration)
        jax.monitoring.register_event_listener(self._on_event)
        self.device = str(jax.devices()[0])

    def _on_duration(self, event: str, seconds: float, **_: Any) -> None:
        if event.startswith("/jax/core/compile/"):
            self.compile_events.append((event, seconds))

    def _on_event(self, event: str, **_: Any) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            self.cache_hits += 1

    def info(self) -> dict[str, Any]:
        import jax

        calibration = self.clf.calibration
        return {
            "load_s": self.load_s,
            "device": self.device,
            "jax": jax.__version__,
            "precision": self.clf.precision,
            "calibration": calibration.describe() if calibration else None,
            # measured (timed at this load), reused (a stored calibration), given or device.
            "precision_source": self.clf.precision_source,
        }

    def lengths(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.clf.tokenizer.encode(texts)]

    def run(self, chunks: Sequence[Sequence[str]]) -> dict[str, Any]:
        clf = self.clf
        outputs, tokenize_s = [], 0.0
        self.shapes = []
        start = time.perf_counter()
        for texts in chunks:
            t = time.perf_counter()
            seqs = clf.tokenizer.encode(texts)
            tokenize_s += time.perf_counter() - t
            # The target head's columns are computed (the job pays for them) but only classes are compared.
            outputs.append(clf.class_probabilities(clf.predict_ids(seqs)))
        seconds = time.perf_counter() - start
        return {
            "seconds": seconds,
            "tokenize_s": tokenize_s,
            "shapes": self.shapes,
            "probs": _stack(outputs),
            "num_compiles": clf.num_compiles,
        }

    def matmul_peak(self, rows: int, repeats: int = 30) -> float:
        """GFLOP/s of the feed-forward's first matmul alone on ``rows`` tokens, in our precision's matmul."""
        import jax
        import numpy as np

        from flaxmodel.core.precision import COMPUTE_DTYPES, matmul, prepare_params

        config = self.clf.config
        a = jax.numpy.ones((rows, config.hidden_size), jax.numpy.float32)
        layer = {"encoder": {"dense": {"kernel": np.ones((config.hidden_size, config.intermediate_size), np.float32)}}}
        prepared = prepare_params(layer, self.clf.precision)["encoder"]["dense"]
        dtype = COMPUTE_DTYPES[self.clf.precision]
        product = jax.jit(lambda x, kernel, scale, sums: matmul(x, kernel, dtype, scale, sums))
        args = (a, prepared["kernel"], prepared.get("kernel_scale"), prepared.get("kernel_column_sums"))
        product(*args).block_until_ready()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            product(*args).block_until_ready()
            best = min(best, time.perf_counter() - start)
        return 2 * rows * config.hidden_size * config.intermediate_size / best / 1e9

    def finish(self) -> dict[str, Any]:
        compiles = [s for e, s in self.compile_events if e.endswith("backend_compile_duration")]
        return {
            "compile_s": sum(s for _, s in self.compile_events),
            "xla_compiles": len(compiles),
            "num_compiles": self.clf.num_compiles,
            "cache_hits": self.cache_hits,
            "peak_rss_mb": harness.peak_rss_mb(),
        }


class TorchRunner:
    """transformers' model in eager mode: tokenizer(padding=longest) -> model -> softmax."""

    def __init__(self, spec: Spec):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        torch.set_num_threads(spec.threads)
        start = time.perf_counter()
        # Torch runs float32 unless ours is told bfloat16: the yardstick stays the exact model on CPUs.
        dtype = torch.bfloat16 if spec.precision == "bfloat16" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(spec.model)
        model = AutoModelForSequenceClassification.from_pretrained(spec.torch_model, dtype=dtype)
        self.model = model.to(spec.torch_device).eval()
        self.load_s = time.perf_counter() - start
        self.spec = spec
        self.multi_label = model.config.problem_type == "multi_label_classification"

    def info(self) -> dict[str, Any]:
        import torch

        return {
            "load_s": self.load_s,
            "torch": torch.__version__,
            "attn_implementation": self.model.config._attn_implementation,
            "threads": torch.get_num_threads(),
        }

    def run(self, chunks: Sequence[Sequence[str]]) -> dict[str, Any]:
        import torch

        outputs, shapes, tokenize_s = [], [], 0.0
        start = time.perf_counter()
        with torch.inference_mode():
            for texts in chunks:
                t = time.perf_counter()
                enc = self.tokenizer(
                    list(texts), padding=True, truncation=True, max_length=self.spec.max_length, return_tensors="pt"
                ).to(self.spec.torch_device)
                tokenize_s += time.perf_counter() - t
                logits = self.model(**enc).logits.float()
                probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
                outputs.append(probs.cpu().numpy())
                shapes.append(tuple(enc["input_ids"].shape))
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "tokenize_s": tokenize_s, "shapes": shapes, "probs": _stack(outputs)}

    def finish(self) -> dict[str, Any]:
        return {"peak_rss_mb": harness.peak_rss_mb()}


class OrtRunner:
    """ONNX Runtime on the CPU: transformers' tokenizer (padding=longest) -> exported graph -> softmax."""

    def __init__(self, spec: Spec, graph: str):
        import onnxruntime
        from transformers import AutoTokenizer

        start = time.perf_counter()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = spec.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer = AutoTokenizer.from_pretrained(spec.model)
        self.load_s = time.perf_counter() - start
        self.spec = spec
        self.version = onnxruntime.__version__

    def info(self) -> dict[str, Any]:
        return {"load_s": self.load_s, "onnxruntime": self.version, "threads": self.spec.threads}

    def run(self, chunks: Sequence[Sequence[str]]) -> dict[str, Any]:
        import numpy as np

        outputs, shapes, tokenize_s = [], [], 0.0
        start = time.perf_counter()
        for texts in chunks:
            t = time.perf_counter()
            enc = self.tokenizer(
                list(texts), padding=True, truncation=True, max_length=self.spec.max_length, return_tensors="np"
            )
            tokenize_s += time.perf_counter() - t
            feed = {name: value.astype(np.int64) for name, value in enc.items() if name in self.inputs}
            logits = self.session.run(None, feed)[0]
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            outputs.append(shifted / shifted.sum(axis=1, keepdims=True))
            shapes.append(tuple(enc["input_ids"].shape))
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "tokenize_s": tokenize_s, "shapes": shapes, "probs": _stack(outputs)}

    def finish(self) -> dict[str, Any]:
        return {"peak_rss_mb": harness.peak_rss_mb()}


def _export_onnx(spec: Spec, folder: str) -> None:
    """Writes transformers' model of ``spec.torch_model`` as ``fp32.onnx`` and its dynamic int8 quantization as ``int8.onnx``.

    Runs in its own process (torch's memory stays out of the timed ones).
    ONNX Runtime's ``quantize_dynamic`` with int8 weights is what a user
    following its documentation for transformer models on CPU gets.
    """
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModelForSequenceClassification

    harness.pin_threads(spec.threads)
    model = AutoModelForSequenceClassification.from_pretrained(spec.torch_model, dtype=torch.float32).eval()
    ids = torch.ones((2, 16), dtype=torch.long)
    axes = {0: "batch", 1: "length"}
    torch.onnx.export(
        model,
        (ids, torch.ones_like(ids)),
        f"{folder}/fp32.onnx",
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    quantize_dynamic(f"{folder}/fp32.onnx", f"{folder}/int8.onnx", weight_type=QuantType.QInt8)


def _stack(arrays: list) -> Any:
    import numpy as np

    return np.concatenate(arrays, axis=0)


def _runner(side: str, spec: Spec, graphs: str | None) -> Any:
    if side == "ours":
        return OursRunner(spec)
    if side == "torch":
        return TorchRunner(spec)
    return OrtRunner(spec, f"{graphs}/{side.removeprefix('ort_')}.onnx")


def _serve(side: str, spec: Spec, texts: list[str], graphs: str | None, conn: Any) -> None:
    """Worker process: load, then answer ``(command, payload)`` messages until ``finish``."""
    harness.pin_threads(spec.threads)
    runner = _runner(side, spec, graphs)
    conn.send(runner.info())
    while True:
        command, payload = conn.recv()
        if command == "lengths":
            conn.send(runner.lengths(texts))
        elif command == "matmul_peak":
            conn.send(runner.matmul_peak(payload))
        elif command == "run":
            conn.send(runner.run([[texts[i] for i in chunk] for chunk in payload]))
        else:
            conn.send(runner.finish())
            return


class Worker:
    def __init__(self, side: str, spec: Spec, texts: list[str], graphs: str | None = None):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(side, spec, texts, graphs, child), daemon=True)
        self.process.start()
        self.info = self.conn.recv()

    def ask(self, command: str, payload: Any = None) -> Any:
        self.conn.send((command, payload))
        return self.conn.recv()

    def close(self) -> dict[str, Any]:
        result = self.ask("finish")
        self.process.join()
        return result


# ---------------------------------------------------------------------------- driver


def _prepare_models(args: argparse.Namespace, workdir: Path) -> tuple[Spec, Any]:
    """Where each side loads its weights from; converts ours for torch when transformers cannot load them."""
    from flaxmodel import load_checkpoint, save_checkpoint
    from flaxmodel import default_model_path, minilm_path

    labels = tuple(args.labels.split(",")) if args.labels else None
    if args.random_model:
        import jax

        from flaxmodel.core.config import EncoderConfig
        from flaxmodel.core.model import init_params

        raw = dict(RANDOM_MODELS[args.random_model], id2label=dict(enumerate(labels or ("a", "b", "c"))))
        config = EncoderConfig.from_hf_dict(raw, source=args.random_model)
        model = workdir / f"random-{args.random_model}"
        save_checkpoint(str(model), init_params(config, jax.random.PRNGKey(0)), config)
        # Any WordPiece vocabulary fits (its ids are below vocab_size): borrow MiniLM's tokenizer.
        for name in TOKENIZER_FILES:
            shutil.copy(Path(minilm_path()) / name, model / name)
        return _spec(args, str(model), str(model), None), config

    model = args.model or default_model_path()
    checkpoint = load_checkpoint(model, labels=labels)
    torch_model = model
    if checkpoint.fresh_head or not _transformers_loads(model):
        # Base encoder (fresh head) or a format transformers does not read: give torch our converted weights.
        torch_model = str(workdir / "converted")
        save_checkpoint(torch_model, checkpoint.params, checkpoint.config)
    return _spec(args, model, torch_model, labels), checkpoint.config


def _transformers_loads(folder: str) -> bool:
    path = Path(folder) / "config.json"
    if not path.exists():
        return False
    architectures = json.loads(path.read_text()).get("architectures") or []
    has_weights = any((Path(folder) / name).exists() for name in ("model.safetensors", "pytorch_model.bin"))
    return has_weights and any(a.endswith("ForSequenceClassification") for a in architectures)


def _spec(args: argparse.Namespace, model: str, torch_model: str, labels: Any) -> Spec:
    return Spec(
        model=model,
        torch_model=torch_model,
        labels=labels,
        batch_size=args.batch_size,
        max_length=args.max_length,
        threads=args.threads,
        precision=args.precision,
        torch_device=args.torch_device,
        compilation_cache=args.compilation_cache,
    )


def _settle(ours: Worker, passes: list[list[list[int]]], most: int = 8) -> int:
    """Warm-up rounds of ours over every order until a round compiles nothing: the timed passes see the
    steady state.

    The planner prefers shapes already compiled, so a second pass, with more of them, can plan (and
    compile) differently from the first; a long job pays that once, so it stays out of the timed passes.

    Returns:
      The rounds run (at most ``most``).
    """
    compiled = None
    for rounds in range(1, most + 1):
        now = [ours.ask("run", chunks)["num_compiles"] for chunks in passes][-1]
        if now == compiled:
            return rounds
        compiled = now
    return most


def chunks_of(order: Sequence[int], size: int) -> list[list[int]]:
    return [list(order[i : i + size]) for i in range(0, len(order), size)]


def _float32_reference(
    spec: Spec, texts: list[str], precision: str, chunk_orders: dict[str, list], warmup: dict[str, dict]
) -> dict[str, Any]:
    """Per order, ours' float32 probabilities of the chunks: from the warm-up when ours ran float32, else from
    a float32 process of its own (untimed; ours' peak memory stays its own)."""
    if precision == "float32":
        return {o: warmup[o]["ours"]["probs"] for o in chunk_orders}
    worker = Worker("ours", dataclasses.replace(spec, precision="float32"), texts)
    reference = {o: worker.ask("run", chunks)["probs"] for o, chunks in chunk_orders.items()}
    worker.close()
    return reference


def _label_agreement(probs: Any, reference: Any) -> float:
    return float((probs.argmax(axis=1) == reference.argmax(axis=1)).mean())


def summarise(passes: list[dict], lengths: list[int], config: Any, n_texts: int, ours: bool) -> dict[str, Any]:
    from flaxmodel import forward_flops

    best = min(passes, key=lambda p: p["seconds"])
    seconds = best["seconds"]
    # Ours computes the last layer for the first token only; transformers computes all of it.
    computed = sum(forward_flops(config, rows, length, ours) for rows, length in best["shapes"])
    useful = sum(forward_flops(config, 1, n, ours) for n in lengths)
    slots = sum(rows * length for rows, length in best["shapes"])
    return {
        "texts_per_s": n_texts / seconds,
        "tokens_per_s": sum(lengths) / seconds,
        "seconds": seconds,
        "seconds_all_passes": [round(p["seconds"], 3) for p in passes],
        "tokenize_s": best["tokenize_s"],
        "effective_gflops": computed / seconds / 1e9,
        "useful_gflops": useful / seconds / 1e9,
        "padding_ratio": 1 - sum(lengths) / slots,
        "batches": len(best["shapes"]),
        "shapes": sorted({tuple(s) for s in best["shapes"]}),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", required=True, help="One text per line, .jsonl (field --text_field) or .csv (column).")
    parser.add_argument("--json", required=True, help="Where to write the result.")
    parser.add_argument("--model", default=None, help="Checkpoint folder; default: the default model.")
    parser.add_argument("--random_model", choices=sorted(RANDOM_MODELS), help="Random weights of a reference size instead.")
    parser.add_argument("--labels", default=None, help="Comma-separated labels for a base encoder's fresh head.")
    parser.add_argument("--text_field", default="text")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=2048, help="First N texts of the file.")
    parser.add_argument("--sorted", action="store_true", help="Only length-sorted batches (default: both orders).")
    parser.add_argument("--unsorted", action="store_true", help="Only batches in file order (default: both orders).")
    parser.add_argument("--repeats", type=int, default=2, help="Timed passes per order and side; the best counts.")
    parser.add_argument(
        "--precision", default="auto", choices=("auto", "float32", "bfloat16", "int8"), help="Ours (torch: float32 unless bfloat16)."
    )
    parser.add_argument("--torch_device", default="cpu", help="cpu, or cuda on a GPU machine.")
    parser.add_argument("--no_torch", action="store_true", help="No torch side (e.g. on an accelerator).")
    parser.add_argument("--no_ort", action="store_true", help="No ONNX Runtime sides (they need the [bench] extra).")
    parser.add_argument(
        "--compilation_cache", default=None, help="Persistent XLA compilation cache folder (cold the first run, warm after)."
    )
    parser.add_argument("--peak_tflops", type=float, default=None, help="Device peak, to report model FLOPs utilisation.")
    parser.add_argument("--peak_rows", type=int, default=1024, help="Tokens of the matmul-peak yardstick.")
    parser.add_argument("--note", default="", help="Free text recorded with the result.")
    args = parser.parse_args(argv)
    orders = [o for o in ORDERS if getattr(args, o)] or list(ORDERS)

    texts = harness.read_texts(args.texts, args.limit, args.text_field)
    load_before = harness.machine()["load_avg_1m"]
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        spec, config = _prepare_models(args, Path(tmp))
        ours = Worker("ours", spec, texts)
        lengths = ours.ask("lengths")
        by_length = sorted(range(len(texts)), key=lambda i: lengths[i])
        chunk_orders = {
            "sorted": chunks_of(by_length, args.batch_size),
            "unsorted": chunks_of(range(len(texts)), args.batch_size),
        }
        sides = {"ours": ours}
        if not args.no_torch:
            sides["torch"] = Worker("torch", spec, texts)
        if not args.no_ort:
            export = multiprocessing.get_context("spawn").Process(target=_export_onnx, args=(spec, tmp))
            export.start()
            export.join()
            if export.exitcode:
                raise SystemExit(f"exporting to ONNX failed (exit {export.exitcode}); --no_ort skips ONNX Runtime")
            sides.update({side: Worker(side, spec, texts, tmp) for side in ("ort_fp32", "ort_int8")})

        start = time.perf_counter()
        warmup = {o: {name: w.ask("run", chunk_orders[o]) for name, w in sides.items()} for o in orders}
        warmup_passes = _settle(ours, [chunk_orders[o] for o in orders])
        warmup_s = time.perf_counter() - start
        passes: dict[str, dict[str, list]] = {o: {name: [] for name in sides} for o in orders}
        for _ in range(args.repeats):
            for o in orders:
                for name, worker in sides.items():
                    passes[o][name].append(worker.ask("run", chunk_orders[o]))
        matmul_peak = ours.ask("matmul_peak", args.peak_rows)
        reference = _float32_reference(spec, texts, ours.info["precision"], {o: chunk_orders[o] for o in orders}, warmup)
        finals = {name: w.close() for name, w in sides.items()}
        infos = {name: w.info for name, w in sides.items()}

    per_order: dict[str, Any] = {}
    for o in orders:
        entry = {name: summarise(passes[o][name], lengths, config, len(texts), name == "ours") for name in sides}
        # Every side returns probabilities chunk by chunk in the same order as the float32 reference.
        for name in sides:
            entry[name]["label_agreement_fp32"] = _label_agreement(warmup[o][name]["probs"], reference[o])
        if "torch" in sides:
            entry["ratio"] = entry["ours"]["texts_per_s"] / entry["torch"]["texts_per_s"]
            # Both sides return probabilities chunk by chunk in the same order.
            ours_probs, torch_probs = warmup[o]["ours"]["probs"], warmup[o]["torch"]["probs"]
            entry["max_abs_prob_diff"] = float(abs(ours_probs - torch_probs).max())
        for side in sides:
            entry[side]["share_of_matmul_peak"] = entry[side]["effective_gflops"] / matmul_peak
        per_order[o] = entry

    from flaxmodel import forward_flops

    head = "sorted" if "sorted" in per_order else orders[0]
    ours_head = per_order[head]["ours"]

    def side_figure(side: str, key: str) -> Any:
        return per_order[head][side][key] if side in sides else None

    result: dict[str, Any] = {
        "benchmark": "model_throughput",
        "headline_order": head,
        "precision": infos["ours"]["precision"],
        "ours_texts_per_s": ours_head["texts_per_s"],
        "torch_texts_per_s": side_figure("torch", "texts_per_s"),
        "ratio": per_order[head].get("ratio"),
        "ort_fp32_texts_per_s": side_figure("ort_fp32", "texts_per_s"),
        "ort_int8_texts_per_s": side_figure("ort_int8", "texts_per_s"),
        "ratio_vs_ort_int8": ours_head["texts_per_s"] / side_figure("ort_int8", "texts_per_s") if "ort_int8" in sides else None,
        "label_agreement_fp32": ours_head["label_agreement_fp32"],
        "ort_int8_label_agreement_fp32": side_figure("ort_int8", "label_agreement_fp32"),
        "ours_tokens_per_s": ours_head["tokens_per_s"],
        "compile_s": finals["ours"]["compile_s"],
        "num_compiles": finals["ours"]["num_compiles"],
        "xla_compiles": finals["ours"]["xla_compiles"],
        "compilation_cache_hits": finals["ours"]["cache_hits"],
        "peak_rss_mb": finals["ours"]["peak_rss_mb"],
        "torch_peak_rss_mb": finals["torch"]["peak_rss_mb"] if "torch" in sides else None,
        "effective_gflops": ours_head["effective_gflops"],
        "useful_gflops": ours_head["useful_gflops"],
        "padding_ratio": ours_head["padding_ratio"],
        "mfu": (ours_head["effective_gflops"] / (args.peak_tflops * 1e3)) if args.peak_tflops else None,
        "matmul_peak_gflops": matmul_peak,
        "ours_share_of_matmul_peak": ours_head["share_of_matmul_peak"],
        "torch_effective_gflops": per_order[head]["torch"]["effective_gflops"] if "torch" in sides else None,
        "torch_share_of_matmul_peak": per_order[head]["torch"]["share_of_matmul_peak"] if "torch" in sides else None,
        "orders": per_order,
        "setup": {
            "model": spec.model,
            "torch_model": "(converted from ours)" if spec.torch_model != spec.model else spec.torch_model,
            "random_model": args.random_model,
            "texts": args.texts,
            "n_texts": len(texts),
            "median_tokens": sorted(lengths)[len(lengths) // 2],
            "mean_tokens": sum(lengths) / len(lengths),
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "threads": args.threads,
            "precision": args.precision,
            "repeats": args.repeats,
            "warmup_s": warmup_s,
            "ours_warmup_passes": warmup_passes,
            "compilation_cache": args.compilation_cache,
            "ours": infos["ours"],
            "torch": infos.get("torch"),
            "ort": infos.get("ort_fp32"),
            "flops_per_text_at_median": forward_flops(config, 1, sorted(lengths)[len(lengths) // 2]),
            **harness.provenance(load_before, args.note),
        },
    }
    harness.write_result(args.json, result)
    _record(result, per_order)
    print(json.dumps({k: v for k, v in result.items() if k not in ("orders", "setup")}, indent=2))
    return result


def _record(result: dict[str, Any], per_order: dict[str, Any]) -> None:
    figures = [f"precision {result['precision']} (agrees with float32 on {result['label_agreement_fp32']:.1%} of labels)"]
    for o, entry in per_order.items():
        line = f"{o}: ours {entry['ours']['texts_per_s']:.0f}/s"
        if "torch" in entry:
            line += f", torch {entry['torch']['texts_per_s']:.0f}/s, x{entry['ratio']:.2f}"
        for side in ("ort_fp32", "ort_int8"):
            if side in entry:
                line += f", {side} {entry[side]['texts_per_s']:.0f}/s"
        figures.append(line)
    if result["ratio_vs_ort_int8"] is not None:
        figures.append(
            f"ours/ort_int8 x{result['ratio_vs_ort_int8']:.2f} (ort_int8 agrees with float32 on "
            f"{result['ort_int8_label_agreement_fp32']:.1%})"
        )
    figures.append(f"compile {result['compile_s']:.1f}s ({result['num_compiles']} shapes)")
    figures.append(f"{result['effective_gflops']:.0f} GFLOP/s, padding {result['padding_ratio']:.0%}")
    peak = f"matmul peak {result['matmul_peak_gflops']:.0f} GFLOP/s: ours {result['ours_share_of_matmul_peak']:.0%}"
    if result["torch_share_of_matmul_peak"] is not None:
        peak += f", torch {result['torch_share_of_matmul_peak']:.0%} ({result['torch_effective_gflops']:.0f} GFLOP/s)"
    figures.append(peak)
    figures.append(f"RSS {result['peak_rss_mb']:.0f} MiB")
    harness.record_run("model", figures, result["setup"])


if __name__ == "__main__":
    main()
