"""Data parallel over every local device: the same probabilities as one device, whatever the device count.

XLA's CPU platform fakes several devices with ``--xla_force_host_platform_device_count``,
which must be set before JAX starts, so each count runs in a child process.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from flaxmodel import load_classifier
from tests.fixtures import LONG_TEXTS, TEXTS

ROOT = pathlib.Path(__file__).resolve().parents[3]
# 45 texts of mixed lengths: batches of 8, 16 and odd remainders, so rows meet device counts they do not divide.
PROBE = [f"{TEXTS[i % len(TEXTS)]} {i}" for i in range(40)] + list(LONG_TEXTS)
CHILD = """
import json, sys
import jax
from flaxmodel import load_classifier
clf = load_classifier(sys.argv[1], batch_size=16, precision="float32")  # as the parent's (tests/conftest.py)
texts = json.loads(sys.argv[2])
print(json.dumps({"devices": len(clf.devices), "platform": clf.platform,
                  "probabilities": clf.predict_proba(texts).tolist()}))
"""


@pytest.mark.parametrize("count", [4, 3])
def test_several_local_devices_give_the_probabilities_of_one(tiny_checkpoint, count):
    folder = str(tiny_checkpoint("bert"))
    expected = load_classifier(folder, batch_size=16).predict_proba(PROBE)
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={count}", "JAX_PLATFORMS": "cpu"}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, folder, json.dumps(PROBE)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert (result["devices"], result["platform"]) == (count, "cpu")
    np.testing.assert_allclose(result["probabilities"], expected, atol=1e-5)

