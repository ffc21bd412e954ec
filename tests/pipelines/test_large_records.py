"""One huge record through ``python -m pipelines.moderate`` in a child process: bounded memory, truncated row.

The child's peak resident memory is its ``VmHWM`` (high-water mark of the
resident set), polled from ``/proc`` once it runs our command.  Rusage cannot
tell it: a forked child's ``ru_maxrss`` keeps the pytest parent's resident set
from before ``exec`` (2+ GiB in a full test run).  Measured on CPU, the run on a 10 MB single-line text peaks at 0.59 GiB,
as it does on a one-line file (JAX and Beam loaded), and took 2.04 GiB when the
whole text was tokenized before the windows were cut.
"""

from __future__ import annotations

import itertools
import pathlib
import subprocess
import sys
import time

import pyarrow.parquet as pq

from tests.fixtures import SHORT_TEXTS

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEXT_BYTES = 10 * 2**20
MAX_LENGTH, STRIDE, MAX_WINDOWS = 32, 8, 4
# Halfway between the bounded and the whole-text peaks above.
MAX_RSS_BYTES = 1.3 * 2**30


def _huge_line(path: pathlib.Path) -> None:
    """One line of words the tiny tokenizer knows, so tokens are about as many as words."""
    words = itertools.cycle(" ".join(SHORT_TEXTS).split())
    chunk = " ".join(next(words) for _ in range(10_000)).encode()
    repeats = TEXT_BYTES // (len(chunk) + 1) + 1
    path.write_bytes(b" ".join([chunk] * repeats) + b"\n")


def _peak_after_exec(pid: int, marker: str) -> int:
    """The process's ``VmHWM`` in bytes once its command line holds ``marker`` (0 before exec or after exit)."""
    proc = pathlib.Path(f"/proc/{pid}")
    try:
        if marker not in proc.joinpath("cmdline").read_bytes().decode(errors="replace"):
            return 0
        status = proc.joinpath("status").read_text()
    except OSError:
        return 0
    kilobytes = next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")), "0")
    return int(kilobytes) * 1024


def _run_measured(argv: list[str], log: pathlib.Path) -> tuple[int, int]:
    """Exit code and peak resident bytes of ``python argv`` run to completion."""
    peak = 0
    with log.open("wb") as out:
        child = subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        while child.poll() is None:
            peak = max(peak, _peak_after_exec(child.pid, argv[1]))
            time.sleep(0.05)
    return child.returncode, peak


def test_a_huge_single_record_is_labeled_truncated_in_bounded_memory(tiny_checkpoint, tmp_path):
    source, output, log = tmp_path / "one.txt", tmp_path / "out", tmp_path / "run.log"
    _huge_line(source)
    code, peak = _run_measured(
        [
            "-m", "pipelines.moderate",
            "--input", str(source),
            "--output", str(output),
            "--model", str(tiny_checkpoint("bert")),
            "--max_length", str(MAX_LENGTH),
            "--stride", str(STRIDE),
            "--max_windows", str(MAX_WINDOWS),
        ],
        log,
    )  # fmt: skip
    assert code == 0, log.read_text()[-3000:]
    rows = pq.read_table(sorted(output.glob("labels-*.parquet"))).to_pylist()
    assert len(rows) == 1 and rows[0]["truncated"]
    assert rows[0]["num_windows"] == MAX_WINDOWS
    assert 0 < peak < MAX_RSS_BYTES, f"peak RSS {peak / 2**30:.2f} GiB"
