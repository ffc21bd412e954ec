"""The evaluation pipeline: labeled shards in, a quality report out.

``python -m pipelines.evaluate --input GLOB --output DIR [--model CHECKPOINT]
[--label_field label] [--group_by source,functionality] [--target_precision 0.9]
[flags of pipelines.options]``

Reads labeled records with the moderation pipeline's own transforms
(:class:`~pipelines.io.ReadRecords`, then
:class:`~pipelines.classify.ClassifyRecords`, so a model is scored exactly as
it labels in production: same windows, aggregation and batching), compares
each record's argmax label with its true label, and writes ``DIR/report.json``,
``DIR/confusion_matrix.png`` and ``DIR/dead_letter-*.parquet``.  A true label
is an id or a name of the model's labels, or several names joined by ``|``
(a partial label: "offensive|neither" says only "not hate").  Records with one
class get the full report (accuracy, macro and weighted F1, per-class
precision / recall / F1 / support, the confusion matrix, and per class the
lowest probability threshold reaching ``--target_precision``); when some labels
are partial, ``all_rows`` scores every record by whether its predicted class is
one its label allows (see :func:`flaxmodel.inference.metrics.set_label_scores`),
and ``groups`` does the same for each value of each ``--group_by`` field (per
source of a mixture's validation rows, per functionality of a functional
suite).  A record whose label is missing or unknown becomes an ``invalid_label`` dead letter;
every dead letter is counted by reason in the report.  As in the moderation
pipeline, the three are written into the run's attempt folder and moved into
``DIR`` together once all are complete, and a ``DIR`` holding a complete earlier
evaluation is refused unless ``--overwrite`` is given.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import sys
from typing import Any, Iterable, Mapping, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from flaxmodel.inference.metrics import evaluate, parse_label_set, set_label_scores, thresholds_for_precision
from pipelines import records as R
from pipelines.classify import ClassifyRecords
from pipelines.cli import EXIT_CONFIGURATION_ERROR, run_pipeline
from pipelines.handler import ModelSpec
from pipelines.formats import FieldSpec
from pipelines.io import FinishRun, ReadRecords, WriteParquet, split_patterns, start_attempt
from pipelines.options import ModerationOptions, OptionError
from pipelines.outputs import DEAD_LETTER_NAME, DEAD_LETTER_SCHEMA, dead_letter_row, shard_pattern

REPORT_FILE = "report.json"
CONFUSION_PNG = "confusion_matrix.png"
DEAD_LETTER_TAG = "dead_letter"


class EvaluateOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument("--label_field", default="label", help="Field (JSONL, Parquet) or column (CSV) holding the true label: an id or a name.")
        parser.add_argument(
            "--target_precision",
            type=float,
            default=0.9,
            help="Precision the suggested per-class thresholds must reach.",
        )
        parser.add_argument(
            "--group_by",
            default="",
            help="Comma-separated fields (e.g. source,functionality) whose values each get their own scores.",
        )


@dataclasses.dataclass(frozen=True)
class EvaluationGraph:
    scores: beam.PCollection
    dead_letters: beam.PCollection
    report: beam.PCollection
    labels: tuple[str, ...]
    model: ModelSpec


class _CheckLabel(beam.DoFn):
    """Passes the records of a block whose label parses (as a block); dead-letters the others."""

    def __init__(self, label_field: str, labels: tuple[str, ...], max_payload_bytes: int):
        self._field = label_field
        self._labels = labels
        self._max_payload_bytes = max_payload_bytes

    def process(self, block: R.RecordBlock) -> Iterable[Any]:
        good = []
        for i in range(len(block)):
            for out in self._check(block.record(i)):
                if isinstance(out, R.Record):
                    good.append(i)
                else:
                    yield out
        if good:
            yield block if len(good) == len(block) else block.take(good)

    def _check(self, record: R.Record) -> Iterable[Any]:
        value = record.fields.get(self._field)
        if parse_label_set(value, self._labels) is not None:
            yield record
            return
        detail = (
            f"label {value!r} in {self._field!r} is not an id 0..{len(self._labels) - 1}, one of {list(self._labels)} "
            "or several of them joined by '|'"
        )
        yield beam.pvalue.TaggedOutput(
            DEAD_LETTER_TAG,
            R.dead_letter(
                record.source,
                record.position,
                R.INVALID_LABEL,
                record.text.encode("utf-8"),
                detail,
                self._max_payload_bytes,
            ),
        )


class _CollectScores(beam.CombineFn):
    """All (allowed classes, probabilities, group values) triples as arrays: thresholds need every score."""

    def __init__(self, num_labels: int):
        self._num_labels = num_labels

    def create_accumulator(self) -> tuple[list, list, list]:
        return [], [], []

    def add_input(self, accumulator, element):
        for part, value in zip(accumulator, element):
            part.append(value)
        return accumulator

    def merge_accumulators(self, accumulators):
        merged: tuple[list, list, list] = ([], [], [])
        for accumulator in accumulators:
            for part, values in zip(merged, accumulator):
                part.extend(values)
        return merged

    def extract_output(self, accumulator) -> tuple[np.ndarray, np.ndarray, list]:
        allowed, scores, groups = accumulator
        shape = (len(scores), self._num_labels)
        return np.asarray(allowed, bool).reshape(shape), np.asarray(scores, np.float32).reshape(shape), groups


def _true_and_scores(scored, label_field: str, labels: tuple[str, ...], group_fields: tuple[str, ...]):
    """Per record of a scored block: (allowed classes, probabilities, group values)."""
    for i, scores in enumerate(scored.scores):
        fields = {name: values[i] for name, values in scored.records.fields.items()}
        groups = tuple("(none)" if fields.get(f) is None else str(fields.get(f)) for f in group_fields)
        yield parse_label_set(fields[label_field], labels), scores, groups


def _group_scores(
    allowed: np.ndarray, probabilities: np.ndarray, labels: Sequence[str], group_fields: Sequence[str], groups: list
) -> dict[str, dict[str, Any]]:
    """Per ``--group_by`` field, per value: :func:`set_label_scores` of its records."""
    out: dict[str, dict[str, Any]] = {}
    for position, field in enumerate(group_fields):
        values = np.array([g[position] for g in groups], dtype=object)
        out[field] = {
            value: set_label_scores(probabilities[values == value], allowed[values == value], labels)
            for value in sorted(set(values))
        }
    return out


def build_report(
    allowed: np.ndarray,
    probabilities: np.ndarray,
    labels: Sequence[str],
    *,
    target_precision: float,
    dead_letters: Mapping[str, int],
    model: str,
    inputs: Sequence[str],
    groups: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The report's content: metrics of the argmax labels, thresholds and dead-letter counts.

    Args:
      allowed: bool ``[n, num_labels]`` the classes each record's true label allows.
      probabilities: float ``[n, num_labels]`` the model's scores.
      labels: the model's labels.
      target_precision, dead_letters, model, inputs: reported as given (thresholds aim at the precision).
      groups: per ``--group_by`` field and value, its scores.

    Returns:
      The report (see the module docstring); the full metrics cover the records with one true class.
    """
    exact = allowed.sum(axis=1) == 1
    true_ids = allowed[exact].argmax(axis=1)
    report = {
        "model": model,
        "inputs": list(inputs),
        **evaluate(true_ids, probabilities[exact], labels),
        "confusion_matrix_axes": "rows: true label, columns: predicted label, both in 'labels' order",
        "target_precision": target_precision,
        "thresholds": thresholds_for_precision(true_ids, probabilities[exact], labels, target_precision),
    }
    if not exact.all():
        report["all_rows"] = set_label_scores(probabilities, allowed, labels)
    if groups:
        report["groups"] = {field: dict(values) for field, values in groups.items()}
    report["dead_letters"] = {"total": int(sum(dead_letters.values())), "by_reason": dict(sorted(dead_letters.items()))}
    return report


def confusion_png(matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str) -> bytes:
    """A heat map of the confusion matrix, shaded by share of each true label, annotated with counts."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    counts = np.asarray(matrix, dtype=np.int64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 1.6 + 1.1 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="share of the true label")
    ax.set_xticks(range(len(labels)), labels=labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels=labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for t in range(len(labels)):
        for p in range(len(labels)):
            ax.text(p, t, str(counts[t, p]), ha="center", va="center", color="white" if shares[t, p] > 0.5 else "black")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return buffer.getvalue()


def _write_bytes(path: str, data: bytes) -> None:
    with FileSystems.create(path) as f:
        f.write(data)


def _write_outputs(
    collected, dead_letters: Mapping[str, int], *, directory: str, labels, target, model, inputs, group_fields
) -> dict:
    allowed, probabilities, groups = collected
    report = build_report(
        allowed,
        probabilities,
        labels,
        target_precision=target,
        dead_letters=dead_letters,
        model=model,
        inputs=inputs,
        groups=_group_scores(allowed, probabilities, labels, group_fields, groups),
    )
    _write_bytes(FileSystems.join(directory, REPORT_FILE), json.dumps(report, indent=2).encode())
    title = f"{model}: macro F1 {report['macro_f1']:.3f}, n = {report['num_examples']}"
    _write_bytes(FileSystems.join(directory, CONFUSION_PNG), confusion_png(report["confusion_matrix"], labels, title))
    return report


def _report_files(_report: dict, directory: str) -> list[str]:
    return [FileSystems.join(directory, REPORT_FILE), FileSystems.join(directory, CONFUSION_PNG)]


def build(pipeline: beam.Pipeline, options: PipelineOptions, *, validate: bool = True) -> EvaluationGraph:
    """Adds the evaluation graph to ``pipeline``; raises before any data is read if a flag cannot work."""
    opts = options.view_as(ModerationOptions)
    opts.check_required()
    if importlib.util.find_spec("matplotlib") is None:
        raise OptionError(
            f"moderate-evaluate draws {CONFUSION_PNG} with matplotlib, which is not installed: "
            "pip install 'moderation-engine[train]'"
        )
    eval_opts = options.view_as(EvaluateOptions)
    target = eval_opts.target_precision
    if not 0.0 < target <= 1.0:
        raise OptionError(f"--target_precision {target}: must be in (0, 1]")
    label_field = eval_opts.label_field.strip()
    if not label_field or label_field == opts.text_field:
        raise OptionError("--label_field must name a field other than --text_field")
    group_fields = tuple(f.strip() for f in eval_opts.group_by.split(",") if f.strip())
    if {label_field, opts.text_field} & set(group_fields):
        raise OptionError("--group_by must name fields other than --text_field and --label_field")
    spec = FieldSpec(
        text_field=opts.text_field,
        id_field=opts.id_field or None,
        keep_fields=(label_field, *group_fields),
        max_payload_bytes=opts.max_payload_bytes,
    )
    patterns = split_patterns(opts.input)
    read = ReadRecords(patterns, format=opts.format, spec=spec, validate=validate)
    classify = ClassifyRecords.from_options(opts)
    labels = classify.labels
    owned = (shard_pattern(DEAD_LETTER_NAME), REPORT_FILE, CONFUSION_PNG)
    attempt = start_attempt(opts.output, owned, overwrite=opts.overwrite, validate=validate)

    records, read_failures = pipeline | "Read" >> read
    checked = records | "CheckLabels" >> beam.ParDo(
        _CheckLabel(label_field, labels, opts.max_payload_bytes)
    ).with_outputs(DEAD_LETTER_TAG, main="records")
    scored, inference_failures = checked.records | "Classify" >> classify
    scores = scored | "TrueAndScores" >> beam.FlatMap(_true_and_scores, label_field, labels, group_fields)
    dead_letters = (read_failures, checked[DEAD_LETTER_TAG], inference_failures) | "DeadLetters" >> beam.Flatten()
    dead_letter_files = (
        dead_letters
        | "DeadLetterRows" >> beam.Map(dead_letter_row)
        | "WriteDeadLetters" >> WriteParquet(attempt.folder, DEAD_LETTER_NAME, DEAD_LETTER_SCHEMA)
    )
    reasons = dead_letters | "Reasons" >> beam.Map(lambda d: d.reason) | "CountReasons" >> beam.combiners.Count.PerElement()
    report = (
        scores
        | "Collect" >> beam.CombineGlobally(_CollectScores(len(labels)))
        | "WriteReport"
        >> beam.Map(
            _write_outputs,
            beam.pvalue.AsDict(reasons),
            directory=attempt.folder,
            labels=labels,
            target=target,
            model=classify.spec.model_id,
            inputs=patterns,
            group_fields=group_fields,
        )
    )
    report_files = report | "ReportFiles" >> beam.FlatMap(_report_files, attempt.folder)
    finish = FinishRun(attempt, (records, read_failures), dead_letters, opts.max_dead_letter_fraction)
    _ = (dead_letter_files, report_files) | "FinishRun" >> finish
    return EvaluationGraph(scores, dead_letters, report, labels, classify.spec)


def _print_groups(report: Mapping[str, Any]) -> None:
    if "all_rows" in report:
        print(f"all records (partial labels included): accuracy {report['all_rows']['accuracy']:.4f}")
    for field, values in report.get("groups", {}).items():
        print(f"by {field}:")
        for value, s in values.items():
            macro = f", macro F1 {s['macro_f1']:.4f}" if "macro_f1" in s else ""
            print(f"  {value}: accuracy {s['accuracy']:.4f}{macro} over {s['num_examples']} records")


def main(argv: Sequence[str] | None = None) -> int:
    outcome = run_pipeline(
        "moderate-evaluate",
        build,
        argv,
        description=__doc__.split("\n\n")[0],
        option_classes=(ModerationOptions, EvaluateOptions),
    )
    if outcome is None:
        return EXIT_CONFIGURATION_ERROR
    summary, options = outcome
    output = options.view_as(ModerationOptions).output
    with FileSystems.open(FileSystems.join(output, REPORT_FILE)) as f:
        report = json.load(f)
    print(summary.render())
    print(
        f"accuracy {report['accuracy']:.4f}, macro F1 {report['macro_f1']:.4f}, "
        f"weighted F1 {report['weighted_f1']:.4f} over {report['num_examples']} records"
    )
    for name, scores in report["per_class"].items():
        print(
            f"  {name}: precision {scores['precision']:.4f}, recall {scores['recall']:.4f}, "
            f"f1 {scores['f1']:.4f}, support {scores['support']}"
        )
    _print_groups(report)
    print(f"report: {FileSystems.join(output, REPORT_FILE)}")
    return 0 if summary.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
