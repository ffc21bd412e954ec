"""The command line as a new user meets it: --help, mistyped flags, and the dead-letter guard."""

from __future__ import annotations

import argparse
import json
import pathlib

import apache_beam as beam
import pytest

from pipelines import evaluate, moderate
from pipelines.sinks import GuardDeadLetters
from pipelines.sinks import Summary
from pipelines.options import ClassifySettings, ModerationOptions

POSTS = ("You are great!", "what a lovely day", "I will see you tomorrow")


def _posts(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "posts.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in POSTS))
    return path


def _help(main, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def _flags(options_class) -> list[str]:
    parser = argparse.ArgumentParser()
    options_class._add_argparse_args(parser)
    return [a.option_strings[0] for a in parser._actions if a.dest != "help"]


def test_help_lists_every_moderation_option_with_its_default_apart_from_beams(capsys):
    text = _help(moderate.main, capsys)
    for flag in _flags(ModerationOptions):
        assert flag in text, flag
    ours, beams = text.index("moderate options:"), text.index("Beam options (common):")
    assert ours < beams and "--runner" in text[beams:] and "--runner" not in text[ours:beams]
    assert "Tokens per window, special tokens included. (default: 128)" in text
    assert "(default: auto)" in text and "(default: 0.1)" in text
    assert f"(default: {ClassifySettings().sort_buffer})" in text


def test_evaluate_help_lists_its_own_options_too(capsys):
    text = _help(evaluate.main, capsys)
    assert "--label_field" in text and "--target_precision" in text and "--threshold" in text


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (["--treshold", "hate=0.9"], "unknown flag --treshold; did you mean --threshold?"),
        (["--bogus_flag", "3"], "unknown flag --bogus_flag"),
        (["--max_window=4"], "did you mean --max_windows?"),
    ],
)
def test_a_mistyped_flag_is_an_error_naming_the_closest_real_one(tmp_path, flag, message, capsys):
    argv = ["--input", str(_posts(tmp_path)), "--output", str(tmp_path / "out"), *flag]
    assert moderate.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_dead_letter_fraction_out_of_range_is_refused_before_reading(tmp_path, capsys):
    argv = ["--input", str(_posts(tmp_path)), "--output", str(tmp_path / "out"), "--max_dead_letter_fraction", "1.5"]
    assert moderate.main(argv) == 2
    assert "--max_dead_letter_fraction 1.5" in capsys.readouterr().err


def test_a_run_whose_records_all_dead_letter_exits_non_zero_saying_why(tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "out"
    argv = ["--input", str(_posts(tmp_path)), "--output", str(out), "--model", str(tiny_checkpoint("bert"))]
    assert moderate.main([*argv, "--text_field", "body"]) == 1
    printed = capsys.readouterr().out
    assert "records read 3, labeled 0, dead-lettered 3" in printed
    assert printed.splitlines()[-1].startswith("FAILED: 100.0% of the records read (3 of 3) were dead-lettered")
    assert list(out.glob("dead_letter-*.parquet")), "the dead letters are still written"


def _summary(read: int, dead: int, limit: float, labeled: int | None = None) -> Summary:
    labeled = read - dead if labeled is None else labeled
    counters = {"records_read": read, "labeled": labeled, "dead_lettered": dead}
    return Summary(counters, 0, 1.0, ("a",), max_dead_letter_fraction=limit)


def test_summary_succeeds_only_when_balanced_and_within_the_dead_letter_limit():
    assert _summary(100, 10, 0.1).succeeded
    assert not _summary(100, 11, 0.1).succeeded
    assert _summary(100, 100, 1.0).succeeded
    assert not _summary(100, 0, 0.1, labeled=99).succeeded
    assert _summary(0, 0, 0.0).succeeded


def _guarded(read: int, failed_reads: int, dead: int, limit: float) -> None:
    with beam.Pipeline() as pipeline:
        records = pipeline | "Records" >> beam.Create(range(read))
        read_failures = pipeline | "ReadFailures" >> beam.Create(range(failed_reads))
        dead_letters = pipeline | "Dead" >> beam.Create(range(dead))
        committed = pipeline | "Committed" >> beam.Create(["labels-00000-of-00001.parquet"])
        _ = committed | GuardDeadLetters((records, read_failures), dead_letters, limit)


def test_the_in_job_guard_fails_a_job_over_the_limit_only():
    _guarded(read=10, failed_reads=5, dead=6, limit=0.4)
    with pytest.raises(Exception, match=r"40\.0% of the records read \(6 of 15\) were dead-lettered"):
        _guarded(read=10, failed_reads=5, dead=6, limit=0.3)
