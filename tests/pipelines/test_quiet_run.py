"""A quiet first run: the jobs' console shows their own lines, not Beam's known-harmless start-up warnings,
while every other warning (same logger, other message; same message, other logger) still shows.

The jobs run as subprocesses, as a user starts them, with ``apitools`` and ``resource`` made unimportable:
Beam warns about each then (as without apache-beam[gcp], and on platforms without ``resource``), so the
tests hold whether or not the extras are installed here.
"""

from __future__ import annotations

import json
import logging
import pathlib
import subprocess
import sys

import pytest

from pipelines import quiet

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples" / "posts.jsonl"
# Runs `python -m MODULE ARGS...` with the modules whose absence makes Beam warn made unimportable.
WITHOUT_EXTRAS = (
    "import runpy, sys; sys.modules['apitools'] = None; sys.modules['resource'] = None; "
    "module = sys.argv[1]; sys.argv = [module, *sys.argv[2:]]; runpy.run_module(module, run_name='__main__')"
)
KNOWN = (quiet.APITOOLS, quiet.NO_RESOURCE_MODULE, quiet.NO_SEMI_PERSISTENT_DIRECTORY, quiet.WORKER_DISCARDS_ARGS)


def _job(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS, module, *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def _assert_quiet(child: subprocess.CompletedProcess) -> None:
    assert child.returncode == 0, child.stderr[-3000:]
    console = child.stdout + child.stderr
    assert not [m for m in KNOWN if m in console], console
    assert not child.stderr.strip(), f"the job printed to stderr:\n{child.stderr}"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> pathlib.Path:
    """The demo's run (make demo's flags) with a review sample, its console checked."""
    output = tmp_path_factory.mktemp("quiet") / "demo"
    child = _job("pipelines.moderate", "--input", str(SAMPLES), "--output", str(output), "--keep_text",
                 "--review_sample", "20")  # fmt: skip
    _assert_quiet(child)
    assert child.stdout.startswith("records read 60, labeled 60")
    return output


def test_moderate_prints_only_its_own_lines(demo_run):
    assert sorted(p.name.split("-")[0] for p in demo_run.glob("*.parquet")) == ["dead_letter", "labels", "review"]


def test_report_prints_only_its_own_lines(demo_run, tmp_path):
    child = _job("pipelines.report", "--input", str(demo_run), "--output", str(tmp_path / "report"))
    _assert_quiet(child)
    assert "report: " in child.stdout


def test_evaluate_prints_only_its_own_lines(tmp_path):
    labels = ("neither", "offensive", "hate")
    rows = [json.loads(line) for line in SAMPLES.read_text().splitlines()]
    labeled = tmp_path / "labeled.jsonl"
    labeled.write_text("".join(json.dumps({**r, "label": labels[i % 3]}) + "\n" for i, r in enumerate(rows)))
    child = _job("pipelines.evaluate", "--input", str(labeled), "--output", str(tmp_path / "eval"))
    _assert_quiet(child)
    assert "\naccuracy " in child.stdout


def test_other_warnings_still_show():
    code = (
        "import logging, sys; sys.modules['apitools'] = None; import pipelines, apache_beam; "
        "from pipelines import quiet; "
        "logging.warning('an unrelated warning from the root logger'); "
        "logging.warning(quiet.NO_RESOURCE_MODULE + ' (and then some)'); "
        "logging.getLogger('somewhere.else').warning(quiet.APITOOLS)"
    )
    child = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    lines = child.stderr.splitlines()
    # Beam's own apitools warning at `import apache_beam` is gone; the same text from another logger is not.
    assert [line for line in lines if quiet.APITOOLS in line] == [f"WARNING:somewhere.else:{quiet.APITOOLS}"]
    assert "WARNING:root:an unrelated warning from the root logger" in lines
    assert f"WARNING:root:{quiet.NO_RESOURCE_MODULE} (and then some)" in lines


def _forwarded(message: str, location: str = "/venv/site-packages/apache_beam/runners/worker/sdk_worker_main.py:421"):
    # How the DirectRunner's job service logs a multi_processing worker's entry (the proto as one line of text).
    entry = f'severity: WARN timestamp {{   seconds: 1 }} message: "{message}" log_location: "{location}" thread: "1"'
    return logging.LogRecord(quiet.FORWARDING_LOGGER, logging.WARNING, __file__, 1, "Worker: %s", (entry,), None)


def test_worker_entries_are_matched_by_their_message_and_beam_origin():
    assert quiet.is_known_harmless(_forwarded(quiet.NO_SEMI_PERSISTENT_DIRECTORY))
    assert quiet.is_known_harmless(_forwarded(r"Discarding unparseable args: [\'--output=out\', \'--overwrite\']"))
    assert not quiet.is_known_harmless(_forwarded("Discarding unparseable args"))
    assert not quiet.is_known_harmless(_forwarded("the model could not be loaded"))
    assert not quiet.is_known_harmless(_forwarded(quiet.NO_RESOURCE_MODULE, "/work/mine/transforms.py:12"))


def test_install_is_idempotent():
    quiet.install()
    quiet.install()
    assert sum(isinstance(f, quiet._KnownHarmless) for f in logging.getLogger().filters) == 1
