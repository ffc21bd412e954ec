"""``benchmarks/device_check.sh``: on a CPU with a tiny configuration it runs every step and writes its JSON and log.

The documented run needs an accelerator; the tiny configuration (a tiny random
model, a few hundred texts) and ``DEVICE_CHECK_ALLOW_CPU=1`` run the same steps
here, so that the script is known to work before its first (and only) GPU run.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "device_check.sh"


def _run(out: pathlib.Path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DEVICE_CHECK_")}
    environment.update(OUT=str(out), PYTHON=sys.executable, DEVICE_CHECK_CONFIG="tiny", **env)
    return subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600)


def test_without_an_accelerator_it_stops_at_once_saying_what_to_check(tmp_path):
    done = _run(tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no accelerator visible" in done.stdout + done.stderr
    assert "DEVICE_CHECK_ALLOW_CPU=1" in (tmp_path / "device_check.log").read_text()
    assert not (tmp_path / "device_check.json").exists()


def test_the_tiny_configuration_on_cpu_runs_every_step_and_writes_the_json(tmp_path):
    done = _run(tmp_path, DEVICE_CHECK_ALLOW_CPU="1")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "device_check.json").read_text())
    assert result["ok"] is True and result["devices"]["platform"] == "cpu"
    assert result["config"]["name"] == "tiny" and result["elapsed_s"] < result["config"]["budget_s"]

    model = result["model"]["tiny"]
    assert set(model["precisions"]) == {"bfloat16", "float32"}
    for figures in model["precisions"].values():
        assert figures["texts_per_s"] > 0 and figures["effective_tflops"] > 0
        assert figures["batches"] == figures["full_row_batches"] == result["config"]["model_texts"] // result["config"]["rows"]
        assert figures["xla_compiles"] >= len(figures["shapes"])
        assert figures["mfu"] is None  # no peak known for a CPU

    runs = result["pipeline"]
    assert list(runs) == ["cold", "warm", "processes", "model_copies"]
    for run in runs.values():
        assert run["returncode"] == 0 and run["texts_per_s"] > 0
        assert any(f"labeled {result['config']['pipeline_texts']}," in line for line in run["summary"])
        assert run["device_busy_share"] is None  # no nvidia-smi here
    cold, warm = runs["cold"], runs["warm"]
    assert cold["xla_compiles"] > 0 and cold["cache_hits"] == 0
    assert warm["cache_hits"] > 0 and warm["xla_compiles"] == 0
    assert [run["model_copies"] for run in runs.values()] == [0, 0, 0, 1]
    log = (tmp_path / "device_check.log").read_text()
    assert "config tiny" in log and "exit 0" in log
