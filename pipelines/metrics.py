"""Beam metrics of the moderation pipeline and the end-of-run summary built from them.

All counters and distributions live in one namespace, :data:`NAMESPACE`:
``files_read``, ``records_read``, ``labeled``, ``dead_lettered`` and ``dead_letter_<reason>``,
``label_<name>``, ``windows``, ``truncated``, ``tokens`` (real tokens fed to the
model), ``padded_tokens`` (cells of the padded batches), ``batches``,
``blank_lines_skipped`` (JSONL/CSV lines holding no record), and RunInference's
own ``inference_batch_latency_micro_secs`` distribution (the handler reports
into this namespace).  :func:`summarize` reads them back from a finished
pipeline result.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from apache_beam.metrics.metric import MetricsFilter

NAMESPACE = "moderation"
BATCH_LATENCY = "inference_batch_latency_micro_secs"


@dataclasses.dataclass(frozen=True)
class Summary:
    counters: Mapping[str, int]
    batch_latency_sum_us: int
    elapsed_s: float
    labels: tuple[str, ...]

    def get(self, name: str) -> int:
        return int(self.counters.get(name, 0))

    @property
    def balanced(self) -> bool:
        """Every record read was either labeled or dead-lettered."""
        return self.get("records_read") == self.get("labeled") + self.get("dead_lettered")

    @property
    def texts_per_s(self) -> float:
        return self.get("labeled") / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def padding_share(self) -> float:
        padded = self.get("padded_tokens")
        return 1 - self.get("tokens") / padded if padded else 0.0

    def render(self) -> str:
        read, labeled, dead = self.get("records_read"), self.get("labeled"), self.get("dead_lettered")
        lines = [
            f"records read {read}, labeled {labeled}, dead-lettered {dead}: "
            + ("read = labeled + dead-lettered OK" if self.balanced else "MISMATCH, records were lost"),
            "labels: " + ", ".join(f"{name} {self.get('label_' + name)}" for name in self.labels),
        ]
        reasons = {k[len("dead_letter_") :]: v for k, v in sorted(self.counters.items()) if k.startswith("dead_letter_")}
        if reasons:
            lines.append("dead letters: " + ", ".join(f"{k} {v}" for k, v in reasons.items()))
        model_s = self.batch_latency_sum_us / 1e6
        lines.append(
            f"{self.texts_per_s:.1f} texts/s over {self.elapsed_s:.1f} s wall "
            f"({self.get('batches')} batches, {self.get('windows')} windows, {model_s:.1f} s in the model, "
            f"{100 * self.padding_share:.1f}% padding, {self.get('truncated')} truncated)"
        )
        return "\n".join(lines)


def _committed_or_attempted(result) -> int:
    committed = getattr(result, "committed", None)
    return committed if committed is not None else result.attempted


def summarize(pipeline_result, elapsed_s: float, labels: Sequence[str]) -> Summary:
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
    return Summary(counters=counters, batch_latency_sum_us=latency, elapsed_s=elapsed_s, labels=tuple(labels))
