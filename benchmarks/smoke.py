"""Every benchmark in a small smoke mode, on the real default model and on it without its target head.

A smoke run is each benchmark's own ``main`` on a few dozen texts with one
repeat; it checks that the run ends and that its JSON has its headline fields
with sane values (rates > 0, shares and agreements in [0, 1], the same labels
as an independent reference where the benchmark compares with one).  It never
checks speed.  Two models: the default model as shipped (class and
target-group columns) and a copy without ``target_head.*`` (class columns
only), so a change to what the model outputs cannot break a benchmark
unnoticed.  ``tests/benchmarks/test_smoke.py`` runs them all in ``make test``;
by hand:

    python -m benchmarks.smoke [--only model_throughput,host_feed] [--model FOLDER] [--keep DIR]

Results go to JSON files in the work folder; the results log in
``benchmarks/README.md`` is left alone (rows go to the work folder's own log).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import pkgutil
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import benchmarks
from benchmarks import harness

# Modules of the package that are plumbing, not benchmarks.
NOT_BENCHMARKS = frozenset({"harness", "smoke"})
SAMPLE = harness.REPO / "samples" / "posts.jsonl"
# How a headline figure is judged: a rate must be positive, a share within [0, 1].
KINDS: Mapping[str, Callable[[Any], bool]] = {
    "rate": lambda v: isinstance(v, (int, float)) and v > 0 and v == v and v != float("inf"),
    "share": lambda v: isinstance(v, (int, float)) and 0.0 <= v <= 1.0,
    "count": lambda v: isinstance(v, int) and v > 0,
    "true": lambda v: v is True,
}
# Ours (precision auto: bfloat16 or int8 on a CPU with those instructions) against torch's float32 on the
# same weights: the class probabilities differ by at most the calibration's bound for int8 (0.08);
# comparing the wrong columns gives differences of about 0.3 or more, or no comparison at all.
SAME_WEIGHTS_PROB_DIFF = 0.08


@dataclasses.dataclass(frozen=True)
class Context:
    """What a smoke run reads and where it writes."""

    model: str  # the model folder under test
    models: tuple[str, ...]  # both folders (with and without a target head), for benchmarks comparing models
    texts: str  # unlabelled JSONL (``text``)
    labelled: str  # JSONL with ``text`` and a ``label`` name
    data_root: str  # folder of the tiny mixture's data
    mixture: str  # a tiny mixture file
    work: Path  # scratch folder of this run


@dataclasses.dataclass(frozen=True)
class Smoke:
    """One benchmark's smoke run: its flags, and its headline figures with their kinds.

    ``figures(result, ctx)`` returns ``{name: (kind, value)}``; ``per_model`` False: one run covers both
    models (the benchmark compares them itself).
    """

    argv: Callable[[Context, str], list[str]]
    figures: Callable[[dict[str, Any], Context], dict[str, tuple[str, Any]]]
    per_model: bool = True


def _model_throughput(result: dict, ctx: Context) -> dict[str, tuple[str, Any]]:
    sides = result["orders"]["sorted"]
    figures: dict[str, tuple[str, Any]] = {}
    # ONNX Runtime's sides run for the model with a target head, where ours has more columns than theirs.
    for side in ("ours", "torch", *(("ort_fp32", "ort_int8") if ctx.model == ctx.models[0] else ())):
        figures[f"{side}.texts_per_s"] = ("rate", sides[side]["texts_per_s"])
        figures[f"{side}.label_agreement_fp32"] = ("share", sides[side]["label_agreement_fp32"])
    figures["ratio"] = ("rate", result["ratio"])
    if ctx.model == ctx.models[0]:
        figures["ratio_vs_ort_int8"] = ("rate", result["ratio_vs_ort_int8"])
    figures["padding_ratio"] = ("share", result["padding_ratio"])
    figures["torch within the precision bound of ours"] = ("true", result["orders"]["sorted"]["max_abs_prob_diff"] <= SAME_WEIGHTS_PROB_DIFF)
    # torch's float32 is the same function as ours' float32 reference: the same label on every text.
    figures["torch labels = ours float32"] = ("true", sides["torch"]["label_agreement_fp32"] == 1.0)
    return figures


def _model_cost(result: dict, ctx: Context) -> dict[str, tuple[str, Any]]:
    figures: dict[str, tuple[str, Any]] = {}
    for i, folder in enumerate(ctx.models):
        entry = result["models"][folder]
        figures[f"model {i}.texts_per_s"] = ("rate", entry["texts_per_s"])
        figures[f"model {i}.cost_vs_baseline"] = ("rate", entry["cost_vs_baseline"])
    return figures


def _host_feed(result: dict, ctx: Context) -> dict[str, tuple[str, Any]]:
    labeled = next(line for line in result["summary"] if line.startswith("records read"))
    stages = result["stages"]
    figures: dict[str, tuple[str, Any]] = {
        "host_texts_per_s": ("rate", result["host_texts_per_s"]),
        "tokenizer_texts_per_s": ("rate", result["tokenizer_texts_per_s"]),
        "ratio": ("rate", result["ratio"]),
        "every record labeled": ("true", f"labeled {result['setup']['records']}, dead-lettered 0" in labeled),
    }
    figures.update({f"stage {name}": ("share", share) for name, share in stages.items()})
    # Each share is rounded to 4 places, so their sum may miss 1 by half a unit per stage.
    slack = 0.5e-4 * len(stages) + 1e-9
    figures["stage shares sum to 1"] = ("true", not stages or abs(sum(stages.values()) - 1.0) <= slack)
    return figures


def _obfuscation(result: dict, ctx: Context) -> dict[str, tuple[str, Any]]:
    figures: dict[str, tuple[str, Any]] = {"labelled_hate": ("count", result["setup"]["labelled_hate"])}
    for name, row in result["disguises"].items():
        figures[f"{name}.declared"] = ("share", row["declared"])
        figures[f"{name}.baseline"] = ("share", row["baseline"])
    return figures


def _op_profile(result: dict, ctx: Context) -> dict[str, tuple[str, Any]]:
    figures: dict[str, tuple[str, Any]] = {}
    for path, row in result["paths"].items():
        figures[f"{path}.wall_ms"] = ("rate", row["wall_ms"])
        figures[f"{path}.shares sum to 1"] = ("true", abs(sum(row["share"].values()) - 1.0) < 1e-6)
        figures[f"{path}.dense matmuls"] = ("share", row["share"]["dense matmuls"])
    return figures


def _pipeline_throughput(result: dict, ctx: Context) -> dict[str, tuple[str, Any]]:
    run = result["runs"][0]
    return {
        "model_texts_per_s": ("rate", result["model_texts_per_s"]),
        "run finished": ("true", run["finished"]),
        "run texts_per_s": ("rate", run["texts_per_s"]),
        "peak_tree_rss_mb": ("rate", run["peak_tree_rss_mb"]),
    }


def _precision_quality(result: dict, ctx: Context) -> dict[str, tuple[str, Any]]:
    figures: dict[str, tuple[str, Any]] = {}
    for path, row in result["paths"].items():
        figures[f"{path}.label_agreement_fp32"] = ("share", row["label_agreement_fp32"])
        figures[f"{path}.accuracy"] = ("share", row["accuracy"])
        figures[f"{path}.macro_f1"] = ("share", row["macro_f1"])
    figures["float32 agrees with itself"] = ("true", result["paths"]["float32"]["label_agreement_fp32"] == 1.0)
    return figures


def _review_cost(result: dict, ctx: Context) -> dict[str, tuple[str, Any]]:
    on = result["runs"]["on"][0]
    return {
        "on_over_off": ("rate", result["on_over_off"]),
        "on_over_off_job_rate": ("rate", result["on_over_off_job_rate"]),
        "review rows written": ("count", on.get("review_rows", 0)),
    }


def _unk_share(result: dict, ctx: Context) -> dict[str, tuple[str, Any]]:
    figures: dict[str, tuple[str, Any]] = {}
    for name, row in result["sources"].items():
        for side in ("without", "with"):
            figures[f"{name}.{side}.unk_token_share"] = ("share", row[side]["unk_token_share"])
            figures[f"{name}.{side}.texts_with_unk"] = ("share", row[side]["texts_with_unk"])
        figures[f"{name}.tokens"] = ("count", row["without"]["tokens"])
    return figures


def _device_check(result: dict, ctx: Context) -> dict[str, tuple[str, Any]]:
    figures: dict[str, tuple[str, Any]] = {"ok": ("true", result["ok"])}
    for name, model in result["model"].items():
        for precision, row in model.get("precisions", {}).items():
            figures[f"{Path(name).name}.{precision}.texts_per_s"] = ("rate", row["texts_per_s"])
    figures["pipeline.cold.texts_per_s"] = ("rate", result["pipeline"]["cold"].get("texts_per_s"))
    return figures


def _adapt(result: dict, ctx: Context) -> dict[str, tuple[str, Any]]:
    figures: dict[str, tuple[str, Any]] = {"adapt_seconds": ("rate", result["adapt_seconds"])}
    for side in ("before", "after"):
        figures.update({f"{side}.{name}": ("share", value) for name, value in result[side].items()})
        figures[f"default mixture mean {side}"] = ("share", result["default_mixture_mean"][side])
    figures["the same sets before and after"] = ("true", set(result["before"]) == set(result["after"]) != set())
    # The default model has a target head, the other model none: its figure is there exactly when it should be.
    figures["target groups scored for a target head only"] = ("true", ("target_groups" in result["before"]) == (ctx.model == ctx.models[0]))
    return figures


def _device_check_argv(ctx: Context, json_path: str) -> list[str]:
    config = ctx.work / "device_check_config.json"
    config.write_text(json.dumps({
        "models": [ctx.model], "precisions": ["float32"], "rows": 8, "max_length": 32, "stride": 8,
        "model_texts": 16, "repeats": 1, "pipeline_model": ctx.model, "pipeline_texts": 40,
        "pipeline_workers": 1, "pipeline_runs": ["cold"], "budget_s": 300,
    }))
    return ["--out", str(Path(json_path).parent / "device_check"), "--config", str(config), "--texts", ctx.texts, "--allow_cpu"]


SMOKES: Mapping[str, Smoke] = {
    "model_throughput": Smoke(
        lambda c, j: ["--texts", c.texts, "--json", j, "--model", c.model, "--limit", "24", "--batch_size", "8",
                      "--max_length", "64", "--repeats", "1", "--sorted", "--peak_rows", "64",
                      *(() if c.model == c.models[0] else ("--no_ort",))],
        _model_throughput,
    ),
    "model_cost": Smoke(
        lambda c, j: ["--models", ",".join(c.models), "--texts", c.texts, "--json", j, "--limit", "16",
                      "--batch_size", "8", "--repeats", "1"],
        _model_cost,
        per_model=False,
    ),
    "host_feed": Smoke(
        lambda c, j: ["--texts", c.texts, "--records", "120", "--shards", "2", "--model", c.model, "--json", j,
                      "--pipeline_args", "--precision float32"],
        _host_feed,
    ),
    "obfuscation": Smoke(
        lambda c, j: ["--data_root", c.data_root, "--mixture", c.mixture, "--model", c.model, "--json", j, "--limit", "6"],
        _obfuscation,
    ),
    "op_profile": Smoke(
        lambda c, j: ["--texts", c.texts, "--json", j, "--model", c.model, "--rows", "8", "--length", "32",
                      "--iterations", "2"],
        _op_profile,
    ),
    "pipeline_throughput": Smoke(
        lambda c, j: ["--texts", c.texts, "--json", j, "--model", c.model, "--sizes", "60", "--shards", "2",
                      "--model_texts", "24", "--max_length", "64", "--pipeline_args", "--precision float32"],
        _pipeline_throughput,
    ),
    "precision_quality": Smoke(
        lambda c, j: ["--texts", c.labelled, "--json", j, "--model", c.model, "--max_length", "64", "--batch_size", "16"],
        _precision_quality,
    ),
    "review_cost": Smoke(
        lambda c, j: ["--texts", c.texts, "--json", j, "--model", c.models[0], "--n", "60", "--rounds", "1",
                      "--review_sample", "10", "--shards", "2", "--max_length", "64"],
        _review_cost,
        per_model=False,
    ),
    "unk_share": Smoke(
        lambda c, j: ["--data_root", c.data_root, "--mixture", c.mixture, "--model", c.model, "--json", j],
        _unk_share,
    ),
    "device_check": Smoke(_device_check_argv, _device_check),
    "adapt": Smoke(
        lambda c, j: ["--train", c.labelled, "--data_root", c.data_root, "--mixture", c.mixture, "--model", c.model,
                      "--json", j, "--limit", "24",
                      "--adapt_args", "--epochs 1 --learning_rates 0.001 --folds 2 --max_length 32 --batch_size 16"],
        _adapt,
    ),
}


def benchmark_modules() -> list[str]:
    """Every benchmark module of the package (each must have a smoke run)."""
    return sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name not in NOT_BENCHMARKS)


def prepare(work: Path, model: str | None = None) -> tuple[Context, Context]:
    """The inputs of a smoke run in ``work``: texts, labelled texts, a tiny mixture; one context per model."""
    from flaxmodel import default_model_path
    from flaxmodel.training.functional import cases

    work.mkdir(parents=True, exist_ok=True)
    texts = work / "texts.jsonl"
    shutil.copy(SAMPLE, texts)
    # Our own functional suite's validation cases with one allowed class: labelled, and ours to use.
    labelled = work / "labelled.jsonl"
    chosen = [c for label in ("hate", "offensive", "neither") for c in [c for c in cases("val") if c.label == label][:12]]
    labelled.write_text("".join(json.dumps({"text": c.text, "label": c.label}) + "\n" for c in chosen))
    data_root = work / "data"
    data_root.mkdir(exist_ok=True)
    with open(data_root / "rows.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for c in chosen:
            writer.writerow([c.text, c.label])
    mixture = work / "mixture.toml"
    mixture.write_text(
        'classes = ["hate", "offensive", "neither"]\nseed = 0\nuse = "default"\n\n'
        '[sources.smoke]\nreader = "table"\nlicence = "project"\ntrain = "rows.csv"\nval = "rows.csv"\nweight = 1.0\n'
        '[sources.smoke.labels]\nhate = ["hate"]\noffensive = ["offensive"]\nneither = ["neither"]\n'
    )
    full = model or default_model_path()
    models = (full, harness.without_target_head(full, work))
    common = dict(models=models, texts=str(texts), labelled=str(labelled), data_root=str(data_root), mixture=str(mixture))
    return tuple(Context(model=m, work=work / Path(m).name, **common) for m in models)  # type: ignore[return-value]


@contextlib.contextmanager
def _results_log(path: Path) -> Iterator[None]:
    """Sends the benchmarks' results-log rows to ``path`` instead of ``benchmarks/README.md``."""
    saved = harness.README
    path.write_text("| results |\n")
    harness.README = path
    try:
        yield
    finally:
        harness.README = saved


def run(name: str, ctx: Context) -> dict[str, Any]:
    """Runs benchmark ``name``'s smoke mode for ``ctx.model``; returns its JSON (with ``device_check`` the script's)."""
    import importlib

    ctx.work.mkdir(parents=True, exist_ok=True)
    json_path = ctx.work / f"{name}.json"
    module = importlib.import_module(f"benchmarks.{name}")
    with _results_log(ctx.work / f"{name}-log.md"):
        result = module.main(SMOKES[name].argv(ctx, str(json_path)))
    if name == "device_check":
        return json.loads((ctx.work / "device_check" / "device_check.json").read_text())
    on_disk = json.loads(json_path.read_text())
    return on_disk if isinstance(on_disk, dict) else result


def problems(name: str, result: dict[str, Any], ctx: Context) -> list[str]:
    """Headline figures of a smoke result that are missing or not sane: ``[]`` when all are."""
    try:
        figures = SMOKES[name].figures(result, ctx)
    except (KeyError, IndexError, TypeError, StopIteration) as error:
        return [f"{name}: a headline field is missing ({type(error).__name__}: {error})"]
    return [f"{name}: {figure} = {value!r} is not a sane {kind}" for figure, (kind, value) in figures.items()
            if not KINDS[kind](value)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="Comma-separated benchmark names (default: all).")
    parser.add_argument("--model", default=None, help="Model folder with a target head (default: the default model).")
    parser.add_argument("--keep", default=None, help="Keep the work folder here.")
    parser.add_argument("--json", default=None, help="Write {benchmark: {model: [problems]}} here.")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or benchmark_modules()
    unknown = sorted(set(names) - set(SMOKES))
    if unknown:
        parser.error(f"--only: no smoke run for {unknown}; known: {sorted(SMOKES)}")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-smoke-"))
    found: dict[str, dict[str, list[str]]] = {}
    try:
        contexts = prepare(work, args.model)
        for name in names:
            for ctx in contexts if SMOKES[name].per_model else contexts[:1]:
                try:
                    trouble = problems(name, run(name, ctx), ctx)
                except (Exception, SystemExit):  # noqa: BLE001 - a smoke run reports every failure and goes on
                    trouble = [f"{name}: failed\n{traceback.format_exc()}"]
                found.setdefault(name, {})[Path(ctx.model).name] = trouble
                print(f"smoke {name} [{Path(ctx.model).name}]: " + ("; ".join(trouble) or "ok"), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        harness.write_json(args.json, found)
    return 1 if any(t for runs in found.values() for t in runs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
