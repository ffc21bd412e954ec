"""The end-of-run summary, built from the run's Beam metrics.

All counters, gauges and distributions live in one namespace,
:data:`~pipelines.names.NAMESPACE`: ``files_read``, ``records_read``, ``labeled``,
``dead_lettered`` and ``dead_letter_<reason>``, ``label_<name>``, ``targets_<group>``, ``windows``,
``truncated``, ``reused_texts`` (records whose text an earlier record of the same
block held, scored once for both), ``tokens`` (real tokens fed to the model),
``padded_tokens`` (cells of the padded batches), ``batches``, ``model:<identity>``
(records labeled by each model identity, ``name@hash:precision`` as the worker
that ran it names it), ``precision_choice:<how>`` (records labeled by workers
whose precision was ``measured`` at load, ``reused`` from a stored calibration,
``given`` or fixed by the ``device``), the gauge ``devices:<platform>`` (a worker's local
devices), ``blank_lines_skipped`` (JSONL/CSV lines holding no record), and
RunInference's own ``inference_batch_latency_micro_secs`` distribution (the
handler reports into this namespace).  :func:`summarize` reads them back from a
finished pipeline result.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from apache_beam.metrics.metric import MetricsFilter

from pipelines.names import (
    BATCH_LATENCY,
    DEAD_LETTER_COUNTER_PREFIX,
    DEAD_LETTERED,
    DEVICES_GAUGE_PREFIX,
    MODEL_COUNTER_PREFIX,
    NAMESPACE,
    PRECISION_CHOICE_PREFIX,
    TARGET_COUNTER_PREFIX,
)

# How the summary spells each way a worker came to its precision (pipelines.names.PRECISION_CHOICE_PREFIX).
CHOICE_WORDS = {
    "measured": "measured now (auto timed the paths at load)",
    "reused": "reused (auto's calibration stored by an earlier load on this machine type)",
    "given": "given (--precision)",
    "device": "device (fixed by the device; nothing to time)",
}
from pipelines.sinks.guard import dead_letter_excess, dead_letter_fraction


@dataclasses.dataclass(frozen=True)
class Summary:
    counters: Mapping[str, int]
    batch_latency_sum_us: int
    elapsed_s: float
    labels: tuple[str, ...]
    max_dead_letter_fraction: float = 1.0
    # Local devices of the workers' models per platform, as the workers reported them.
    devices: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def get(self, name: str) -> int:
        return int(self.counters.get(name, 0))

    @property
    def balanced(self) -> bool:
        """Every record read was either labeled or dead-lettered."""
        return self.get("records_read") == self.get("labeled") + self.get(DEAD_LETTERED)

    @property
    def dead_letter_fraction(self) -> float:
        return dead_letter_fraction(self.get("records_read"), self.get(DEAD_LETTERED))

    @property
    def too_many_dead_letters(self) -> bool:
        """More records dead-lettered than ``--max_dead_letter_fraction`` allows."""
        return self.dead_letter_fraction > self.max_dead_letter_fraction

    @property
    def succeeded(self) -> bool:
        """The run's exit status 0: nothing lost and dead letters within the limit."""
        return self.balanced and not self.too_many_dead_letters

    @property
    def models(self) -> dict[str, int]:
        """Records labeled per model identity (``name@hash:precision``), as the workers ran them."""
        prefix = MODEL_COUNTER_PREFIX
        return {k[len(prefix) :]: int(v) for k, v in sorted(self.counters.items()) if k.startswith(prefix) and v}

    @property
    def precision_choices(self) -> dict[str, int]:
        """Records labeled per way the workers came to their precision (``measured``, ``reused``, ...)."""
        prefix = PRECISION_CHOICE_PREFIX
        return {k[len(prefix) :]: int(v) for k, v in sorted(self.counters.items()) if k.startswith(prefix) and v}

    @property
    def texts_per_s(self) -> float:
        return self.get("labeled") / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def padding_share(self) -> float:
        padded = self.get("padded_tokens")
        return 1 - self.get("tokens") / padded if padded else 0.0

    def render(self) -> str:
        read, labeled, dead = self.get("records_read"), self.get("labeled"), self.get(DEAD_LETTERED)
        lines = [
            f"records read {read}, labeled {labeled}, dead-lettered {dead}: "
            + ("read = labeled + dead-lettered OK" if self.balanced else "MISMATCH, records were lost"),
            "labels: " + ", ".join(f"{name} {self.get('label_' + name)}" for name in self.labels),
        ]
        named = {k[len(TARGET_COUNTER_PREFIX) :]: v for k, v in self.counters.items() if k.startswith(TARGET_COUNTER_PREFIX)}
        if named:
            lines.append("target groups named: " + ", ".join(f"{k} {v}" for k, v in sorted(named.items(), key=lambda kv: -kv[1])))
        prefix = DEAD_LETTER_COUNTER_PREFIX
        reasons = {k[len(prefix) :]: v for k, v in sorted(self.counters.items()) if k.startswith(prefix)}
        if reasons:
            lines.append("dead letters: " + ", ".join(f"{k} {v}" for k, v in reasons.items()))
        model_s = self.batch_latency_sum_us / 1e6
        lines.append(
            f"{self.texts_per_s:.1f} texts/s over {self.elapsed_s:.1f} s wall "
            f"({self.get('batches')} batches, {self.get('windows')} windows, {model_s:.1f} s in the model, "
            f"{100 * self.padding_share:.1f}% padding, {self.get('truncated')} truncated, "
            f"{self.get('reused_texts')} reused)"
        )
        if self.devices:
            lines.append("devices: " + ", ".join(f"{n} ({platform})" for platform, n in sorted(self.devices.items())))
        for identity, records in self.models.items():
            lines.append(f"model: {identity} ({records} records)")
        for choice, records in self.precision_choices.items():
            lines.append(f"precision choice: {CHOICE_WORDS.get(choice, choice)} ({records} records)")
        if self.too_many_dead_letters:
            lines.append("FAILED: " + dead_letter_excess(read, dead, self.max_dead_letter_fraction))
        return "\n".join(lines)


def _committed_or_attempted(result) -> int:
    committed = getattr(result, "committed", None)
    return committed if committed is not None else result.attempted


def summarize(
    pipeline_result,
    elapsed_s: float,
    labels: Sequence[str],
    *,
    max_dead_letter_fraction: float = 1.0,
) -> Summary:
    """Sums the namespace's counters over steps; runners without committed metrics give attempted ones."""
    query = pipeline_result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    counters: dict[str, int] = {}
    for item in query["counters"]:
        name = item.key.metric.name
        counters[name] = counters.get(name, 0) + int(_committed_or_attempted(item) or 0)
    latency = 0
    for item in query["distributions"]:
        if item.key.metric.name == BATCH_LATENCY:
            value = _committed_or_attempted(item)
            latency += int(value.sum) if value is not None else 0
    devices = {}
    for item in query["gauges"]:
        name = item.key.metric.name
        value = _committed_or_attempted(item)
        if name.startswith(DEVICES_GAUGE_PREFIX) and value is not None:
            platform = name[len(DEVICES_GAUGE_PREFIX) :]
            devices[platform] = max(devices.get(platform, 0), int(value.value))
    return Summary(
        counters=counters,
        batch_latency_sum_us=latency,
        elapsed_s=elapsed_s,
        labels=tuple(labels),
        max_dead_letter_fraction=max_dead_letter_fraction,
        devices=devices,
    )
