"""``moderate-report``: a run's report page from its Parquet outputs, and its drift against an earlier run.

``python -m pipelines.report --input OUTPUT_DIR --output REPORT_DIR
[--compare_to EARLIER_OUTPUT_DIR [--max_drift 0.25]] [--threshold hate=0.86]``

Reads ``labels-*.parquet``, ``dead_letter-*.parquet`` and ``review-*.parquet``
of a finished moderation run (local or any Beam filesystem such as ``gs://``;
no model, no Beam job) and writes ``REPORT_DIR/report.html`` (self-contained:
images embedded, no scripts, no network), the same figures as ``report-*.png``
and the figures as data in ``run_report.json``: records, labels and flagged
share (every share as a percentage on the page), each class's score histogram
in record counts with the tail at or above its flag threshold on a log scale
(thresholds: :mod:`pipelines.reporting.thresholds`), the model identities
(``name@hash:precision``), target groups among flagged records (only where the
labels carry ``target_*`` columns, which needs a model with a target-group
head; otherwise the section says so), the review sample when the run drew one
(strata, their sizes, drawn records, inclusion probabilities and the file:
:mod:`pipelines.reporting.review`) and dead letters by reason with examples.
With ``--compare_to`` a drift table (:mod:`pipelines.reporting.data`): each
label's share with a two-proportion z-test, target shares likewise, and the
population stability index of each class's scores and of the label
distribution.  The files are
written into an attempt folder and moved into ``REPORT_DIR`` together,
replacing an earlier report there.

Exit status: 0; 1 when ``--max_drift`` is given and the largest PSI exceeds it
(the report is written either way), so a scheduler can alert; 2, with one line
``moderate-report: error: ...`` and nothing written, for bad configuration or a
bad input: no run in ``--input`` or ``--compare_to``, a shard there that is
empty, not Parquet or lacks the report's columns, a run without a single
record, a bad ``--threshold``, matplotlib missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
from typing import Sequence

from apache_beam.io.filesystems import FileSystems

from flaxmodel import OptionError
from flaxmodel.commands import EXIT_FAILED, EXIT_OK, run_command
from flaxmodel.flags import add_flags, flag, from_namespace
from pipelines.names import REPORT_HTML, REPORT_JSON, REPORT_PNG_PREFIX
from pipelines.reporting.data import describe, drift, read_run
from pipelines.reporting.figures import figures, percent
from pipelines.reporting.html import page
from pipelines.reporting.review import describe_review
from pipelines.reporting.thresholds import run_thresholds
from pipelines.sinks import commit_outputs, start_attempt


@dataclasses.dataclass(frozen=True)
class ReportSettings:
    """The flags of ``moderate-report``."""

    input: str = flag(help="Output folder of a finished moderation run (labels-*.parquet, dead_letter-*.parquet).")
    output: str = flag(help="Folder for report.html, report-*.png and run_report.json.")
    compare_to: str | None = flag(None, "Output folder of an earlier run: adds the drift table.")
    max_drift: float | None = flag(
        None, "With --compare_to: exit 1 when the largest population stability index exceeds this (e.g. 0.25)."
    )
    threshold: str | None = flag(
        None,
        "The run's flag thresholds as given to moderate (hate=0.86,offensive=0.7; none), for the score tails. "
        "Default: the run's model's recommended ones, if they reproduce the run's flags.",
    )


def _settings(argv: Sequence[str] | None) -> ReportSettings:
    parser = argparse.ArgumentParser(prog="moderate-report", description=__doc__.split("\n\n")[0])
    add_flags(parser, ReportSettings)
    try:
        settings = from_namespace(ReportSettings, parser.parse_args(argv))
    except SystemExit as stop:
        if stop.code:
            raise OptionError("bad command line (see the usage above)") from None
        raise
    if settings.max_drift is not None and not settings.compare_to:
        raise OptionError("--max_drift needs --compare_to: drift is measured against an earlier run")
    if settings.max_drift is not None and settings.max_drift < 0:
        raise OptionError(f"--max_drift {settings.max_drift}: must be at least 0")
    if importlib.util.find_spec("matplotlib") is None:
        raise OptionError(
            "moderate-report draws its figures with matplotlib, which is not installed: pip install matplotlib"
        )
    return settings


def write_report(settings: ReportSettings) -> dict:
    """Reads the run(s), writes the report files (committed together) and returns ``run_report.json``'s content."""
    run = read_run(settings.input, "--input")
    previous = read_run(settings.compare_to, "--compare_to", with_review=False) if settings.compare_to else None
    thresholds = run_thresholds(run, settings.threshold)
    owned = (REPORT_HTML, REPORT_JSON, f"{REPORT_PNG_PREFIX}*.png")
    attempt = start_attempt(settings.output, owned, overwrite=True, validate=True)
    summary = describe(run)
    review = describe_review(run)
    changes = drift(run, previous) if previous is not None else None
    images = figures(run, summary, previous, thresholds["thresholds"])
    report = {**summary, "thresholds": thresholds, "review_sample": review}
    report.update(drift=changes, max_drift=settings.max_drift)
    html = page(summary, images, changes, settings.max_drift, review=review, thresholds=thresholds)
    files = {
        REPORT_HTML: html.encode(),
        REPORT_JSON: json.dumps(report, indent=2).encode(),
        **images,
    }
    written = []
    for name, data in files.items():
        path = FileSystems.join(attempt.folder, name)
        with FileSystems.create(path) as f:
            f.write(data)
        written.append(path)
    commit_outputs(written, attempt)
    return report


def _report(argv: Sequence[str] | None) -> int:
    settings = _settings(argv)
    report = write_report(settings)
    print(f"{report['labeled']} records labeled, {report['dead_letters']['total']} dead-lettered")
    print("labels: " + ", ".join(f"{c} {percent(s)}" for c, s in report["label_shares"].items()))
    review = report["review_sample"]
    if review is not None:
        strata = len(review["strata"])
        print(f"review sample: {review['drawn']} records in {strata} strata: {', '.join(review['files'])}")
    print(f"report: {FileSystems.join(settings.output, REPORT_HTML)}")
    changes = report["drift"]
    if changes is None:
        return EXIT_OK
    worst = changes["max_psi"]
    print(f"largest drift: PSI of {worst['name']} {worst['value']:.3f} against {settings.compare_to}")
    if settings.max_drift is not None and worst["value"] > settings.max_drift:
        print(f"FAILED: drift PSI {worst['value']:.3f} ({worst['name']}) exceeds --max_drift {settings.max_drift}")
        return EXIT_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_command("moderate-report", lambda: _report(argv))


if __name__ == "__main__":
    sys.exit(main())
