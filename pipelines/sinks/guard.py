"""How a run ends: its outputs committed, then the check that it did not dead-letter too much.

:class:`FinishRun` is the last step of both jobs.  Where the job outlives the
launching process (Dataflow through the Flex Template), :class:`GuardDeadLetters`
fails the job itself when more than ``--max_dead_letter_fraction`` of its
records were dead-lettered; a DirectRunner run is checked by its launcher from
the run's metrics (:mod:`pipelines.sinks.summary`), with the same message.
"""

from __future__ import annotations

from typing import Sequence

import apache_beam as beam

from pipelines.sinks.commit import CommitOutputs, OutputAttempt
from flaxmodel.records import RecordBlock
from pipelines.sources import is_direct_runner


def dead_letter_fraction(read: int, dead: int) -> float:
    """Share of the records read that were dead-lettered (0 for an empty run)."""
    return dead / read if read else 0.0


def dead_letter_excess(read: int, dead: int, limit: float) -> str:
    """Why a run with ``dead`` of ``read`` records dead-lettered fails ``--max_dead_letter_fraction limit``."""
    return (
        f"{100 * dead_letter_fraction(read, dead):.1f}% of the records read ({dead} of {read}) were dead-lettered, "
        f"more than --max_dead_letter_fraction {limit} allows; check --format, --text_field and the input "
        "against the dead letters' reasons (outputs are written)"
    )


class DeadLetterLimitExceeded(RuntimeError):
    """A job dead-lettered more of its records than ``--max_dead_letter_fraction`` allows."""


def records_in(element) -> int:
    """Records an element of a read PCollection stands for: a block's size, else 1 (a record or a dead letter)."""
    return len(element) if isinstance(element, RecordBlock) else 1


def _check_dead_letters(_, read_counts: Sequence[int], dead: int, limit: float) -> None:
    read = sum(read_counts)
    if dead_letter_fraction(read, dead) > limit:
        raise DeadLetterLimitExceeded(dead_letter_excess(read, dead, limit))


class GuardDeadLetters(beam.PTransform):
    """Fails the job, once its outputs are committed, when too many records were dead-lettered.

    For runners whose job outlives the launcher (Dataflow through the Flex
    Template, which submits without waiting): the job's own state is then what
    a scheduler sees.  A DirectRunner run is checked by the launching process
    from the run's metrics instead, which exits 1 with the same message.

    Args:
      read: the PCollections whose elements together are the records read (record blocks and
        read-time dead letters).
      dead_letters: every dead letter of the run.
      limit: ``--max_dead_letter_fraction``.
    """

    def __init__(self, read: Sequence[beam.PCollection], dead_letters: beam.PCollection, limit: float):
        super().__init__()
        self._read, self._dead_letters, self._limit = tuple(read), dead_letters, limit

    def expand(self, committed):
        counts = [
            pcoll | f"Sizes{i}" >> beam.Map(records_in) | f"CountRead{i}" >> beam.CombineGlobally(sum)
            for i, pcoll in enumerate(self._read)
        ]
        read = tuple(counts) | "ReadCounts" >> beam.Flatten()
        dead = self._dead_letters | "CountDeadLetters" >> beam.combiners.Count.Globally()
        return (
            committed
            | "AfterCommit" >> beam.combiners.Count.Globally()
            | "Check"
            >> beam.Map(
                _check_dead_letters, beam.pvalue.AsList(read), beam.pvalue.AsSingleton(dead), self._limit
            )
        )


class FinishRun(beam.PTransform):
    """The paths a run wrote in its attempt folder -> committed outputs, then the dead-letter guard.

    The guard is added only where the job outlives the launching process (see
    :class:`GuardDeadLetters`); a DirectRunner run is checked from its metrics.

    Args:
      attempt: the run's attempt.
      read, dead_letters, limit: as for :class:`GuardDeadLetters`.
    """

    def __init__(
        self, attempt: OutputAttempt, read: Sequence[beam.PCollection], dead_letters: beam.PCollection, limit: float
    ):
        super().__init__()
        self._attempt, self._read, self._dead_letters, self._limit = attempt, tuple(read), dead_letters, limit

    def expand(self, written):
        committed = written | "CommitOutputs" >> CommitOutputs(self._attempt)
        if not is_direct_runner(committed.pipeline.runner):
            _ = committed | "GuardDeadLetters" >> GuardDeadLetters(self._read, self._dead_letters, self._limit)
        return committed
