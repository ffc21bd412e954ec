"""Every benchmark in its smoke mode on the real default model and on it without a target head.

Each benchmark runs in a process of its own (``python -m benchmarks.smoke --only
NAME``): some replace parts of the classifier for their measurement, and none
may leak into the other tests.  The figures' sanity rules are
``benchmarks.smoke.SMOKES``; here they must all hold, and every module of
``benchmarks/`` must have one.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks import smoke

ROOT = smoke.harness.REPO


def test_every_benchmark_module_has_a_smoke_run():
    assert smoke.benchmark_modules() == sorted(smoke.SMOKES)


def test_a_missing_or_insane_headline_figure_is_a_problem(tmp_path):
    ctx = smoke.Context("m", ("m", "n"), "t", "l", "d", "x", tmp_path)
    good = {"paths": {"float32": {"label_agreement_fp32": 1.0, "accuracy": 0.5, "macro_f1": 0.4}}}
    assert smoke.problems("precision_quality", good, ctx) == []
    bad = {"paths": {"float32": {"label_agreement_fp32": 1.3, "accuracy": 0.5, "macro_f1": 0.4}}}
    assert "label_agreement_fp32 = 1.3" in smoke.problems("precision_quality", bad, ctx)[0]
    assert "missing" in smoke.problems("precision_quality", {"paths": {"float32": {}}}, ctx)[0]
    assert smoke.problems("host_feed", {"host_texts_per_s": 0.0}, ctx)


@pytest.mark.parametrize("name", sorted(smoke.SMOKES))
def test_the_smoke_run_ends_with_sane_headline_figures(name, tmp_path):
    out = tmp_path / "smoke.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.smoke", "--only", name, "--json", str(out), "--keep", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("smoke ")]
    assert done.returncode == 0, "\n".join(lines) + done.stderr[-3000:]
    runs = json.loads(out.read_text())[name]
    expected = {"default", "model-without-targets"} if smoke.SMOKES[name].per_model else {"default"}
    assert set(runs) == expected and not any(runs.values())
