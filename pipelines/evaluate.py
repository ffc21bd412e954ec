"""The evaluation pipeline: labeled shards in, a quality report out.

``python -m pipelines.evaluate --input GLOB --output DIR [--model CHECKPOINT]
[--label_field label] [--group_by source,functionality] [--target_precision 0.9]
[flags of pipelines.options]``

Reads labeled records with the moderation pipeline's own transforms
(:class:`~pipelines.sources.ReadRecords`, then
:class:`~pipelines.model.ClassifyRecords`, so a model is scored exactly as
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
suite).  With a model that has a target-group head, records with a ``--target_field``
(default ``targets``: a JSON list or groups joined by ``|``, empty for none) also
score the groups the model names: ``targets`` in the report holds precision,
recall and F1 per group and their macro F1 over those records.  A record whose
label is missing or unknown, or whose targets name a group the model does not
have, becomes an ``invalid_label`` dead letter;
every dead letter is counted by reason in the report.  As in the moderation
pipeline, the three are written into the run's attempt folder and moved into
``DIR`` together once all are complete, and a ``DIR`` holding a complete earlier
evaluation is refused unless ``--overwrite`` is given.

``--reviewed FILE`` is the other mode: no model and no input, whole-run estimates
from a run's reviewed review sample (:mod:`pipelines.reviews.reviewed`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from typing import Any, Iterable, Mapping, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

import flaxmodel.records as R
from flaxmodel import ConfigError, ModelRef, OptionError, parse_label_map
from flaxmodel.commands import EXIT_FAILED, EXIT_OK, run_command
from pipelines.cli import run_job, unknown_flags
from pipelines.model import ClassifyRecords
from pipelines.names import CONFUSION_PNG, DEAD_LETTER_NAME, DEAD_LETTER_TAG, REPORT_FILE, shard_pattern
from pipelines.options import ModerationOptions
from pipelines.reviews.reviewed import run_estimates
from pipelines.sinks import (
    DEAD_LETTER_SCHEMA,
    CollectScores,
    DeadLetterRows,
    FinishRun,
    WriteParquet,
    allowed_classes,
    report_files,
    start_attempt,
    parse_target_set,
    true_and_scores,
    write_outputs,
)
from pipelines.sources import ReadRecords, split_patterns


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
        parser.add_argument(
            "--target_field",
            default="targets",
            help="Field with a record's true target groups (a JSON list, or names joined by '|'; empty: none). "
            "With a model that has a target-group head, report.json's 'targets' scores its targets per group on "
            "the records that have the field (default: %(default)s).",
        )
        parser.add_argument(
            "--reviewed",
            default="",
            help="A run's review-*.parquet with human_label filled in: estimate the run's precision, recall and "
            "label distribution from it (weighted, with 95%% intervals) into DIR/review_estimates.json; no "
            "--input or model needed.",
        )
        parser.add_argument(
            "--label_map",
            default="",
            help="Your policy's label names (in --label_field, or reviewers' human_label with --reviewed) onto the "
            "model's classes, e.g. 'offensive=hate|offensive,not=neither' (a label may allow several classes: a "
            "partial label). With --reviewed the estimates are in those names, a record's prediction being the name "
            "that allows its top class.",
        )
        parser.add_argument(
            "--benign_label",
            default="neither",
            help="With --reviewed: the label that is not harmful; a flag on a record reviewers gave it is a false "
            "positive (default: %(default)s).",
        )


@dataclasses.dataclass(frozen=True)
class EvaluationGraph:
    scores: beam.PCollection
    dead_letters: beam.PCollection
    report: beam.PCollection
    labels: tuple[str, ...]
    model: ModelRef


class _CheckLabel(beam.DoFn):
    """Passes the records of a block whose label parses (as a block); dead-letters the others."""

    def __init__(
        self,
        label_field: str,
        labels: tuple[str, ...],
        max_payload_bytes: int,
        target_field: str = "",
        targets=(),
        label_map: Mapping[str, tuple[str, ...]] | None = None,
    ):
        self._field = label_field
        self._labels = labels
        self._max_payload_bytes = max_payload_bytes
        self._target_field, self._targets = target_field, tuple(targets)
        self._label_map = label_map

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
        detail = (
            f"label {value!r} in {self._field!r} is not an id 0..{len(self._labels) - 1}, one of {list(self._labels)} "
            "or several of them joined by '|'"
        )
        if self._label_map:
            detail = f"label {value!r} in {self._field!r} is not one of --label_map's {list(self._label_map)}"
        if allowed_classes(value, self._labels, self._label_map) is not None:
            try:
                if self._targets:
                    parse_target_set(record.fields.get(self._target_field), self._targets)
                yield record
                return
            except ValueError as err:  # a JSON error is a ValueError too
                detail = f"{self._target_field!r}: {err}"
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
    target_field = eval_opts.target_field.strip()
    if target_field in (label_field, opts.text_field):
        raise OptionError("--target_field must name a field other than --text_field and --label_field")
    spec = R.FieldSpec(
        text_field=opts.text_field,
        id_field=opts.id_field or None,
        keep_fields=tuple(dict.fromkeys((label_field, *group_fields, *([target_field] if target_field else ())))),
        max_payload_bytes=opts.max_payload_bytes,
    )
    patterns = split_patterns(opts.input)
    read = ReadRecords(patterns, format=opts.format, spec=spec, validate=validate)
    classify = ClassifyRecords.from_options(opts)
    labels = classify.labels
    targets = dict(classify.model.target_thresholds)
    owned = (shard_pattern(DEAD_LETTER_NAME), REPORT_FILE, CONFUSION_PNG)
    attempt = start_attempt(opts.output, owned, overwrite=opts.overwrite, validate=validate)

    records, read_failures = pipeline | "Read" >> read
    label_map = _label_map(eval_opts.label_map, labels)
    checked = records | "CheckLabels" >> beam.ParDo(
        _CheckLabel(label_field, labels, opts.max_payload_bytes, target_field, tuple(targets), label_map)
    ).with_outputs(DEAD_LETTER_TAG, main="records")
    scored, inference_failures = checked.records | "Classify" >> classify
    scores = scored | "TrueAndScores" >> beam.FlatMap(
        true_and_scores, label_field, labels, group_fields, target_field, tuple(targets), label_map
    )
    dead_letters = (read_failures, checked[DEAD_LETTER_TAG], inference_failures) | "DeadLetters" >> beam.Flatten()
    dead_letter_files = (
        dead_letters
        | "DeadLetterRows" >> beam.ParDo(DeadLetterRows())
        | "WriteDeadLetters" >> WriteParquet(attempt.folder, DEAD_LETTER_NAME, DEAD_LETTER_SCHEMA)
    )
    reasons = dead_letters | "Reasons" >> beam.Map(lambda d: d.reason) | "CountReasons" >> beam.combiners.Count.PerElement()
    report = (
        scores
        | "Collect" >> beam.CombineGlobally(CollectScores(len(labels), len(targets)))
        | "WriteReport"
        >> beam.Map(
            write_outputs,
            beam.pvalue.AsDict(reasons),
            directory=attempt.folder,
            labels=labels,
            target=target,
            inputs=patterns,
            group_fields=group_fields,
            targets=targets,
        )
    )
    written = report | "ReportFiles" >> beam.FlatMap(report_files, attempt.folder)
    finish = FinishRun(attempt, (records, read_failures), dead_letters, opts.max_dead_letter_fraction)
    _ = (dead_letter_files, written) | "FinishRun" >> finish
    return EvaluationGraph(scores, dead_letters, report, labels, classify.model)


def _label_map(spec: str, labels: tuple[str, ...]) -> dict[str, tuple[str, ...]] | None:
    """``--label_map`` read against the model's classes (None without it); a bad map is an OptionError."""
    if not spec:
        return None
    try:
        return parse_label_map(spec, labels)
    except ConfigError as err:
        raise OptionError(str(err)) from None


def _print_groups(report: Mapping[str, Any]) -> None:
    if "all_rows" in report:
        print(f"all records (partial labels included): accuracy {report['all_rows']['accuracy']:.4f}")
    for field, values in report.get("groups", {}).items():
        print(f"by {field}:")
        for value, s in values.items():
            macro = f", macro F1 {s['macro_f1']:.4f}" if "macro_f1" in s else ""
            print(f"  {value}: accuracy {s['accuracy']:.4f}{macro} over {s['num_examples']} records")


def _print_targets(report: Mapping[str, Any]) -> None:
    if "targets" not in report:
        return
    t = report["targets"]
    print(f"target groups over {t['rows']} records with target annotations: macro F1 {t['macro_f1']:.4f}")
    for name, s in t["per_target"].items():
        print(f"  {name}: precision {s['precision']:.4f}, recall {s['recall']:.4f}, f1 {s['f1']:.4f}, support {s['support']}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_command("moderate-evaluate", lambda: _evaluate(argv))


def _estimate(argv: list[str]) -> int:
    """``--reviewed``: weighted estimates from a reviewed sample, without a pipeline."""
    problems = unknown_flags(argv)
    if problems:
        raise OptionError("; ".join(problems))
    options = PipelineOptions(argv)
    opts, eval_opts = options.view_as(ModerationOptions), options.view_as(EvaluateOptions)
    if opts.input:
        raise OptionError("--reviewed estimates from the reviewed sample alone: drop --input")
    if not opts.output:
        raise OptionError("--output is required")
    run_estimates(
        eval_opts.reviewed, opts.output, benign=eval_opts.benign_label, overwrite=opts.overwrite, label_map=eval_opts.label_map
    )
    return EXIT_OK


def _evaluate(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" not in argv and "--help" not in argv and PipelineOptions(argv).view_as(EvaluateOptions).reviewed:
        return _estimate(argv)
    summary, options = run_job(
        "moderate-evaluate",
        build,
        argv,
        description=__doc__.split("\n\n")[0],
        option_classes=(ModerationOptions, EvaluateOptions),
    )
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
    _print_targets(report)
    print(f"report: {FileSystems.join(output, REPORT_FILE)}")
    return EXIT_OK if summary.succeeded else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
