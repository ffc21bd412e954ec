"""Which precision a classifier runs in when told ``auto``: per device kind, or measured at load on CPUs.

On accelerators ``auto`` is fixed by the hardware (:func:`accelerator_precision`:
bfloat16 on TPUs and on GPUs with bfloat16 tensor cores).  On a CPU it is
measured once per loaded model (:func:`calibrate`): each candidate path runs a
fixed probe batch (:data:`PROBE_TEXTS` on one shape of the model's own grid),
its probabilities are checked against float32's within
:data:`PROBABILITY_BOUNDS`, and the candidates are timed in interleaved
rounds; the fastest within its bound wins only if it beats float32 by
:data:`MIN_SPEEDUP`, so noise never trades float32 for a path that is not
clearly faster.  Candidates are the paths the CPU has instructions for
(:func:`cpu_candidates`): without them XLA gains nothing from either
(``benchmarks/README.md``, "Precision"), so timing them would only add load
time.  The choice
is made once, at load: every batch the classifier runs afterwards takes the
same path.  Workers of one run decide separately; on CPUs without those
instructions they all run float32 without timing anything, and elsewhere the
``model`` column (``name@hash:precision``) records which path labelled each row
(``--precision`` pins one for all).

A :class:`CalibrationStore` keeps each measured choice as a small JSON file
keyed by :class:`CalibrationKey` (the machine kind: a digest of the CPU's
instruction flags or the accelerator's device kind; the model's
``name@hash``; the probe shape; the candidates), so that every later load on
the same kind of machine runs the path measured first instead of measuring
again: timings on a shared machine vary by more than the margin between two
close paths, and a re-run must label the same texts the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import tempfile
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from flaxmodel.ckpts import files
from flaxmodel.core.precision import PRECISIONS
from flaxmodel.inference.padding import pad_batch
from flaxmodel.inference.planner import ShapeGrid

log = logging.getLogger(__name__)

AUTO_PRECISION = "auto"
# Largest |probability - float32 probability| a path may show on the probe batch at load (and in
# the parity and precision tests).  Measured on the 2,479 Davidson validation texts with the default
# model (benchmarks/README.md, "Precision"): bfloat16 at most 0.012 (p99 0.003), int8 at most 0.053
# (p99 0.027), with 100% and 99.7% of labels equal to float32's.
PROBABILITY_BOUNDS: Mapping[str, float] = {"float32": 0.0, "bfloat16": 2e-2, "int8": 8e-2}
# A candidate must be at least this much faster than float32 on the probe batch to replace it: the
# spread of repeated timings on a shared 2-core machine is about +-5%.
MIN_SPEEDUP = 1.1
# Interleaved timing rounds per candidate; the best round counts.
TIMING_ROUNDS = 3
# Linux /proc/cpuinfo flags under which XLA's CPU backend can run each path natively.
CPU_FEATURES: Mapping[str, tuple[str, ...]] = {
    "bfloat16": ("avx512_bf16", "amx_bf16"),
    "int8": ("avx512_vnni", "avx_vnni", "amx_int8"),
}
# GPUs with bfloat16 tensor cores start at compute capability 8.0 (A100, L4, H100); a T4 (7.5)
# emulates bfloat16 and runs it slower than float32.
_BFLOAT16_MIN_COMPUTE_CAPABILITY = 8.0
# The fixed probe batch: ordinary posts of varied length and tone, so that the
# probabilities spread over the classes.
PROBE_TEXTS = (
    "Thanks for the help yesterday, you saved my whole afternoon.",
    "Get lost, freak.",
    "The match was cancelled because of the storm, refunds are on the website.",
    "Stop whining like a baby, you idiot.",
    "I can't believe they raised the rent again this year",
    "lol that video of the cat falling off the couch is the best thing I've seen all week",
    "People like you are the reason this country is going downhill.",
    "Does anyone know a good place for breakfast near the station?",
    "Shut up, nobody asked for your stupid opinion",
    "Happy birthday to my little sister, love you loads!",
    "Those people should go back to where they came from.",
    "What a garbage referee, worst call of the season",
    "The new library opens on Monday with longer hours and a cafe on the ground floor.",
    "You are a disgrace and everyone knows it",
    "Just finished my first marathon, legs are dead but I'm so happy",
    "This is the dumbest thing I have ever read, delete your account.",
)


# (candidate name, a call returning its probe probabilities) -> seconds of that call.
Measure = Callable[[str, Callable[[], np.ndarray]], float]


def probe_batch(
    encode: Callable[[Sequence[str]], list[list[int]]], grid: ShapeGrid, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """:data:`PROBE_TEXTS`, cycled to fill the grid's most rows, as one batch of one of the grid's shapes.

    As many rows as a planned batch of tweets takes: the paths rank differently on
    small batches (on an AVX512-VNNI CPU int8 lost to bfloat16 on 16 rows and beat
    it on 64; ``benchmarks/README.md``, issue 45).

    Returns:
      ``(input_ids, attention_mask)``, int32 ``[rows, length]``.
    """
    sequences = encode([PROBE_TEXTS[i % len(PROBE_TEXTS)] for i in range(grid.max_rows)])
    rows = min(b for b in grid.row_buckets if b >= len(sequences))
    return pad_batch(sequences, rows, grid.bucket_length(max(map(len, sequences))), pad_id)


def accelerator_precision(device: Any) -> str | None:
    """What ``auto`` means on ``device`` without measuring: bfloat16 on TPUs and bfloat16-capable GPUs,
    float32 on other GPUs; None on CPUs, where :func:`calibrate` decides."""
    if device.platform == "tpu":
        return "bfloat16"
    if device.platform == "gpu":
        capability = float(getattr(device, "compute_capability", 0) or 0)
        return "bfloat16" if capability >= _BFLOAT16_MIN_COMPUTE_CAPABILITY else "float32"
    return None


def cpu_flags(cpuinfo: str | pathlib.Path = "/proc/cpuinfo") -> frozenset[str]:
    """The instruction-set flags of this machine's CPU (empty where ``cpuinfo`` cannot be read)."""
    try:
        text = pathlib.Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def cpu_candidates(flags: Iterable[str]) -> tuple[str, ...]:
    """float32 and each path whose instructions (:data:`CPU_FEATURES`) appear in ``flags``."""
    flags = frozenset(flags)
    return ("float32", *(name for name, needs in CPU_FEATURES.items() if flags & set(needs)))


@dataclasses.dataclass(frozen=True)
class Calibration:
    """What :func:`calibrate` measured and chose."""

    precision: str
    # Best probe-batch time per candidate that ran within its bound, in seconds.
    seconds: Mapping[str, float]
    # Max |probability - float32's| on the probe batch, per candidate.
    max_diff: Mapping[str, float]

    def describe(self) -> str:
        """One line for logs: the choice, and each candidate's time and difference from float32."""
        parts = [
            f"{name} {1e3 * self.seconds[name]:.1f} ms" if name in self.seconds else f"{name} off by {diff:.3f}"
            for name, diff in self.max_diff.items()
        ]
        return f"precision {self.precision} (probe batch: {', '.join(parts)})"

    def to_json(self) -> dict[str, Any]:
        return {"precision": self.precision, "seconds": dict(self.seconds), "max_diff": dict(self.max_diff)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Calibration":
        """The calibration :meth:`to_json` wrote; raises ``ValueError`` for anything else."""
        precision = data.get("precision")
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
        seconds = {str(k): float(v) for k, v in dict(data.get("seconds", {})).items()}
        return cls(precision, seconds, {str(k): float(v) for k, v in dict(data.get("max_diff", {})).items()})


def time_call(name: str, run: Callable[[], np.ndarray]) -> float:
    """Seconds one call of ``run`` takes (it returns host arrays, so the work is done when it returns)."""
    del name
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def choose(seconds: Mapping[str, float], min_speedup: float = MIN_SPEEDUP) -> str:
    """The fastest path in ``seconds`` if it beats float32's time by ``min_speedup``, else float32."""
    fastest = min(seconds, key=seconds.__getitem__)
    return fastest if seconds[fastest] * min_speedup <= seconds["float32"] else "float32"


def calibrate(
    runners: Mapping[str, Callable[[], np.ndarray]],
    *,
    measure: Measure = time_call,
    rounds: int = TIMING_ROUNDS,
) -> Calibration:
    """Runs, checks and times each candidate on the probe batch, and picks one.

    Args:
      runners: precision name -> a call returning the probe batch's scores
        ``[rows, num_outputs]`` (classes and target groups); must include ``"float32"``, the reference.
      measure: ``(name, run) -> seconds`` of one call; injectable so that tests
        decide the timings.
      rounds: interleaved timing rounds (the first call of each runner, which
        compiles it, is not timed).

    Returns:
      The :class:`Calibration`: the chosen precision, and what was measured.
    """
    if "float32" not in runners:
        raise ValueError("calibration needs the float32 path as its reference")
    unknown = set(runners) - set(PRECISIONS)
    if unknown:
        raise ValueError(f"unknown precisions {sorted(unknown)}; known: {PRECISIONS}")
    reference = runners["float32"]()
    max_diff = {name: float(np.abs(run() - reference).max()) if name != "float32" else 0.0 for name, run in runners.items()}
    within = [name for name in runners if max_diff[name] <= PROBABILITY_BOUNDS[name]]
    seconds = {name: np.inf for name in within}
    for _ in range(rounds):
        for name in within:
            seconds[name] = min(seconds[name], measure(name, runners[name]))
    return Calibration(choose(seconds), seconds, max_diff)


def machine_kind(device: Any, flags: Iterable[str] = ()) -> str:
    """What decides a path's speed on ``device``: ``cpu-<digest of the CPU's flags>`` or ``<platform>-<kind>``.

    Machines of one type (one Dataflow worker shape, one cloud CPU generation)
    share their instruction flags, so a choice measured on one holds for all.
    """
    if device.platform == "cpu":
        digest = hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:16]
        return f"cpu-{digest}"
    return f"{device.platform}-{getattr(device, 'device_kind', 'unknown')}".replace(" ", "_")


@dataclasses.dataclass(frozen=True)
class CalibrationKey:
    """What a stored calibration holds for: machine kind, model ``name@hash``, probe shape, candidates."""

    machine: str
    model: str
    probe_shape: tuple[int, int]
    candidates: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "model": self.model,
            "probe_shape": list(self.probe_shape),
            "candidates": list(self.candidates),
        }

    @property
    def file_name(self) -> str:
        """``calibration-<digest of the key>.json``: one file per key, named without reading any."""
        digest = hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:20]
        return f"calibration-{digest}.json"


class CalibrationStore:
    """Measured choices of ``auto``, one JSON file per :class:`CalibrationKey`, in ``directory`` (local or gs://).

    The first choice stored for a key stays: :meth:`save` never replaces a
    readable file, so workers that measured at the same time all end up
    running the first one written.  A file that cannot be read or does not
    match its key counts as missing (it is measured again and rewritten).
    """

    def __init__(self, directory: str):
        self.directory = str(directory)

    def path(self, key: CalibrationKey) -> str:
        return files.join(self.directory, key.file_name)

    def load(self, key: CalibrationKey) -> Calibration | None:
        """The calibration stored for ``key``, or None when there is none (or it is unreadable)."""
        path = self.path(key)
        try:
            if not files.exists(path):
                return None
            data = json.loads(files.read_bytes(path))
            if data.get("key") != key.to_json():
                raise ValueError(f"it holds key {data.get('key')}, not {key.to_json()}")
            stored = Calibration.from_json(data["calibration"])
            if stored.precision not in key.candidates:
                raise ValueError(f"its precision {stored.precision} is not a candidate {key.candidates}")
            return stored
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            log.warning("ignoring the stored calibration %s (%s); measuring again", path, err)
            return None

    def save(self, key: CalibrationKey, calibration: Calibration) -> Calibration:
        """Stores ``calibration`` for ``key`` unless a choice is already stored; returns the one that stays."""
        earlier = self.load(key)
        if earlier is not None:
            return earlier
        record = {
            "key": key.to_json(),
            "calibration": calibration.to_json(),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        data = json.dumps(record, indent=1, sort_keys=True).encode()
        path = self.path(key)
        if files.is_remote(path):
            files.write_bytes(path, data)  # object stores write whole objects: readers never see half a file
            return calibration
        os.makedirs(self.directory, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".calibration-", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as f:
                f.write(data)
            if os.path.exists(path):  # unreadable (load said so): replaced
                os.replace(temporary, path)
            else:
                os.link(temporary, path)  # fails if another process stored its choice first, which then stays
        except FileExistsError:
            return self.load(key) or calibration
        except OSError:  # a filesystem without hard links: a rename is still atomic, last writer wins
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        return calibration


def stored_or_measured(
    key: CalibrationKey, store: CalibrationStore | None, measure: Callable[[], Calibration]
) -> tuple[Calibration, str]:
    """The calibration stored for ``key``, else ``measure()``'s, stored for the next load.

    Args:
      key: what the calibration holds for.
      store: where choices are kept, or None (then ``measure`` always runs).
      measure: times the candidates now.

    Returns:
      ``(calibration, how)``: ``how`` is ``"reused"`` when the calibration came from
      the store (also when another process stored its own while this one measured),
      else ``"measured"``.
    """
    stored = store.load(key) if store else None
    if stored is not None:
        return stored, "reused"
    measured = measure()
    kept = store.save(key, measured) if store else measured
    return kept, "measured" if kept is measured else "reused"
