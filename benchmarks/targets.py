"""The performance targets, as data. The report checks each one against every mlpmix row of
its kind (CPU, float32, at the run's largest thread count) and states met or not met."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from .implementations import REFERENCE


@dataclass(frozen=True)
class Target:
    """mlpmix against ``against`` on the cases of ``kind`` (those labelled ``cases``, or all
    of that kind when empty): ``speedup`` at least ``value`` (time of ``against`` / time of
    mlpmix), or ``memory`` at most ``value`` (peak memory of mlpmix / that of ``against``)."""
    kind: str
    measure: str
    value: float
    against: str = REFERENCE
    cases: Tuple[str, ...] = ()

    def covers(self, row: Dict[str, object]) -> bool:
        return row["kind"] == self.kind and (not self.cases or row["case"] in self.cases)

    def ratio(self, row: Dict[str, object], other: Dict[str, object]) -> Optional[float]:
        """The measured ratio of mlpmix's ``row`` to the ``against`` implementation's row."""
        if self.measure == "speedup":
            return other["median ms"] / row["median ms"]
        mine, theirs = row["peak memory MiB"], other["peak memory MiB"]
        return mine / theirs if mine is not None and theirs else None

    def check(self, row: Dict[str, object], other: Dict[str, object]) -> str:
        """``row``'s ratio to ``other`` against this target, with the verdict."""
        ratio = self.ratio(row, other)
        at_least = self.measure == "speedup"
        goal = f"{'>=' if at_least else '<='} {self.value}x"
        if ratio is None:
            return f"{self.measure} vs {self.against} not measured (target {goal})"
        verdict = "met" if (ratio >= self.value if at_least else ratio <= self.value) else "NOT met"
        return f"{self.measure} vs {self.against} {ratio:.2f}x (target {goal}): {verdict}"


TARGETS = (
    Target("forward+backward", "speedup", 2.0),
    Target("forward+backward", "speedup", 1.0, against="reference+compile"),
    Target("inference", "speedup", 1.3, cases=("raftmlp_s", "dynamixer_s")),
    Target("training", "speedup", 1.25),
    Target("training", "memory", 0.8),
)
