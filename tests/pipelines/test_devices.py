"""The moderation job on several local devices labels exactly as on one, and says how many it used."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq

from pipelines import moderate
from tests.fixtures import LONG_TEXTS, TEXTS

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _rows(output: pathlib.Path) -> list[dict]:
    return pq.read_table(sorted(output.glob("labels-*.parquet"))).sort_by("id").to_pylist()


def test_four_devices_give_the_rows_of_one_and_the_summary_names_them(tiny_checkpoint, tmp_path, capsys):
    posts = tmp_path / "posts.jsonl"
    texts = [f"{TEXTS[i % len(TEXTS)]} {i}" for i in range(50)] + list(LONG_TEXTS)
    posts.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)))
    model = str(tiny_checkpoint("bert"))
    # One path for both processes: `auto` times the paths a CPU has instructions for, and may pick differently.
    common = ["--input", str(posts), "--id_field", "id", "--model", model, "--batch_size", "16", "--precision", "float32"]

    assert moderate.main([*common, "--output", str(tmp_path / "one")]) == 0
    assert "devices: 1 (cpu)" in capsys.readouterr().out
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    child = subprocess.run(
        [sys.executable, "-m", "pipelines.moderate", *common, "--output", str(tmp_path / "four")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert "devices: 4 (cpu)" in child.stdout

    one, four = _rows(tmp_path / "one"), _rows(tmp_path / "four")
    assert [(r["id"], r["label"], r["num_windows"]) for r in one] == [(r["id"], r["label"], r["num_windows"]) for r in four]
    np.testing.assert_allclose([r["score"] for r in four], [r["score"] for r in one], atol=1e-5)
