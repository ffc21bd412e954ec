"""When a model compiles the batch shapes its plans have been avoiding (:class:`CompileLedger`)."""

from __future__ import annotations

import threading
from typing import Mapping, Sequence

Plan = Sequence[tuple[int, int, int, int]]


class CompileLedger:
    """When a model compiles the shapes its plans avoid: ski rental over compilations.

    The planner charges a shape not yet compiled :attr:`ShapeGrid.compile_cost`,
    which is right for one call but, when calls are small (64 texts through the
    Python API, short blocks), keeps a model on the first shapes it compiled
    (the calibration's probe shape among them) for good, padding far more than
    the grid needs (``benchmarks/README.md``, issue 45).  The ledger adds up
    what the compiled-only plans cost beyond the plans that ignore compilation;
    once that covers what compiling the missing shapes costs, the call takes
    the ideal plan (compiling them) and the account starts again: the rule of
    renting skis until the rent paid equals the price, which never pays more
    than twice what the best choice in hindsight pays.  Safe to share between
    threads.
    """

    def __init__(self) -> None:
        self.owed = 0.0
        self._lock = threading.Lock()

    def settle(self, extra: float, price: float) -> bool:
        """Adds a plan's ``extra`` cost; True when the account now covers ``price`` (then paid from it)."""
        with self._lock:
            self.owed += max(extra, 0.0)
            if price <= 0 or self.owed < price:
                return False
            self.owed = 0.0
            return True

    def choose(self, preferred: Plan, ideal: Plan, costs: Mapping[tuple[int, int], float], compile_cost: float) -> Plan:
        """The plan to run: ``preferred`` (compiled shapes) until the extra cost paid covers compiling the
        shapes of ``ideal`` (planned as if every shape were compiled) that it lacks.

        Args:
          preferred, ideal: ``[(start, end, rows, length), ...]`` of the same items.
          costs: each ``(rows, length)`` shape's cost; compile_cost: one compilation's, in the same units.
        """
        new = {(rows, length) for *_, rows, length in ideal} - {(rows, length) for *_, rows, length in preferred}
        extra = sum(costs[(r, n)] for *_, r, n in preferred) - sum(costs[(r, n)] for *_, r, n in ideal)
        return ideal if self.settle(extra, len(new) * compile_cost) else preferred
