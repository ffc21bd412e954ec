"""Plumbing shared by the benchmark scripts: reading texts, pinning threads, memory, recording results.

Each benchmark reads texts from a one-per-line text file, JSONL or CSV, runs in
processes pinned to a fixed number of cores, and records its figures twice: a JSON
file with every number, and one line appended to ``benchmarks/README.md`` so that
the history of measurements stays next to the code that produced them.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

README = Path(__file__).with_name("README.md")
REPO = Path(__file__).resolve().parent.parent


def iter_texts(path: str, text_field: str = "text") -> Iterator[str]:
    """Texts of a file: ``.jsonl`` (field ``text_field``), ``.csv`` (that column) or one text per line."""
    suffixes = Path(path).suffixes
    with open(path, newline="", encoding="utf-8") as handle:
        if ".jsonl" in suffixes or ".json" in suffixes:
            for line in handle:
                if line.strip():
                    yield str(json.loads(line)[text_field])
        elif ".csv" in suffixes:
            for row in csv.DictReader(handle):
                yield row[text_field]
        else:
            for line in handle:
                yield line.rstrip("\n")


def read_texts(path: str, limit: int | None = None, text_field: str = "text") -> list[str]:
    texts = []
    for text in iter_texts(path, text_field):
        if limit is not None and len(texts) >= limit:
            break
        texts.append(text)
    if not texts:
        raise SystemExit(f"{path}: no texts read")
    return texts


def pin_threads(threads: int) -> list[int]:
    """Restricts this process (and what it starts later) to ``threads`` cores.

    XLA's CPU client sizes its thread pool from the cores the process may run on
    (``sched_getaffinity``), so pinning before ``jax`` is imported is how its
    threads are limited; OpenMP/MKL pools (torch) read the variables set here.
    """
    available = sorted(os.sched_getaffinity(0))
    if threads > len(available):
        raise SystemExit(f"--threads {threads}: only {len(available)} cores available")
    cores = available[:threads]
    os.sched_setaffinity(0, cores)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    return cores


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory of this process (or of its waited-for children) in MiB."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_maxrss / 1024


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores_online": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "flaxmodel", "pipelines", "benchmarks"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def command_line() -> str:
    """The command as typed from the repository root (``python -m benchmarks.<script> ...``)."""
    script = Path(sys.argv[0])
    head = f"python -m benchmarks.{script.stem}" if script.suffix == ".py" else Path(sys.executable).name
    return " ".join([head, *sys.argv[1:]])


def now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def write_json(path: str, result: dict[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")


def provenance(load_before: float, note: str) -> dict[str, Any]:
    """Where and how a result was measured: machine, load before, commit, command, date, note.

    Goes at the end of a result's ``setup``; :func:`write_result` adds the load after.
    """
    return {
        "machine": machine(),
        "load_avg_1m_before": load_before,
        "commit": git_commit(),
        "command": command_line(),
        "date": now(),
        "note": note,
    }


def write_result(path: str, result: dict[str, Any]) -> None:
    """Moves the machine's current load into ``setup`` as the load after the run, then writes the JSON."""
    result["setup"]["load_avg_1m_after"] = result["setup"]["machine"].pop("load_avg_1m")
    write_json(path, result)


def append_readme_line(fields: Sequence[str]) -> None:
    """Appends one Markdown table row to the README's results section."""
    with README.open("a", encoding="utf-8") as handle:
        handle.write("| " + " | ".join(str(f).replace("|", "\\|") for f in fields) + " |\n")


def record_run(kind: str, figures: Sequence[str], setup: Mapping[str, Any]) -> None:
    """The results-log row of one run: date, commit, kind, figures, load before/after, command and note."""
    append_readme_line(
        [
            setup["date"],
            setup["commit"],
            kind,
            "; ".join(figures),
            f"{setup['load_avg_1m_before']:.1f}/{setup['load_avg_1m_after']:.1f}",
            f"`{setup['command']}`" + (f" ({setup['note']})" if setup["note"] else ""),
        ]
    )


def without_target_head(model: str, folder: Path) -> str:
    """A copy of model folder ``model`` in ``folder`` without its target-group head: class columns only."""
    from flaxmodel.ckpts.target_head import TARGET_HEAD_CONFIG, TARGET_HEAD_WEIGHTS

    copy = folder / "model-without-targets"
    if not copy.exists():
        shutil.copytree(model, copy)
        for name in (TARGET_HEAD_CONFIG, TARGET_HEAD_WEIGHTS):
            (copy / name).unlink(missing_ok=True)
    return str(copy)
