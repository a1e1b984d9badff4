"""The performance targets, as data. The report checks each one against every row of the
implementation it names (``impl``: ``mlpmix`` for the float32 targets, ``mlpmix+bf16`` /
``mlpmix+bf16w`` for the bfloat16 ones of issue #34) of its kind, on CPU at the run's
largest thread count, and states met or not met.

The bfloat16 targets (``native_bf16``) hold on CPUs with native bf16 arithmetic only
(AVX512-BF16 or AMX: AMD Zen 4, Intel Sapphire Rapids and later; ``machine.native_bf16``).
Elsewhere the report still gives the ratios, as they are, and marks those targets not
applicable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from .implementations import REFERENCE

MLPMIX = "mlpmix"


@dataclass(frozen=True)
class Target:
    """``impl`` against ``against`` on the cases of ``kind`` (those labelled ``cases``, or
    all of that kind when empty): ``speedup`` at least ``value`` (time of ``against`` / time
    of ``impl``), or ``memory`` at most ``value`` (peak memory of ``impl`` / that of
    ``against``). A ``native_bf16`` target applies only on a CPU with native bf16."""
    kind: str
    measure: str
    value: float
    against: str = REFERENCE
    cases: Tuple[str, ...] = ()
    impl: str = MLPMIX
    native_bf16: bool = False

    def covers(self, row: Dict[str, object]) -> bool:
        return row["implementation"] == self.impl and row["kind"] == self.kind \
            and (not self.cases or row["case"] in self.cases)

    def ratio(self, row: Dict[str, object], other: Dict[str, object]) -> Optional[float]:
        """The measured ratio of ``impl``'s ``row`` to the ``against`` implementation's row."""
        if self.measure == "speedup":
            return other["median ms"] / row["median ms"]
        mine, theirs = row["peak memory MiB"], other["peak memory MiB"]
        return mine / theirs if mine is not None and theirs else None

    def applies(self, native_bf16: Optional[bool]) -> bool:
        """Whether the target holds on a CPU whose native bf16 is ``native_bf16`` (None:
        not recorded, as in the results saved before bf16 was benchmarked)."""
        return not self.native_bf16 or native_bf16 is True

    @property
    def goal(self) -> str:
        return f"{'>=' if self.measure == 'speedup' else '<='} {self.value}x"

    def met(self, ratio: float) -> bool:
        return ratio >= self.value if self.measure == "speedup" else ratio <= self.value

    def describe(self) -> str:
        """The target in words: ``mlpmix+bf16 training memory vs reference+bf16 <= 0.8x``."""
        cases = f" {'/'.join(self.cases)}" if self.cases else ""
        return f"{self.impl}{cases} {self.kind} {self.measure} vs {self.against} {self.goal}"

    def inapplicable(self, native_bf16: Optional[bool]) -> Optional[str]:
        """Why the target does not apply on the machine (None: it applies)."""
        if self.applies(native_bf16):
            return None
        why = "no native bf16" if native_bf16 is False else "native bf16 not recorded"
        return f"not applicable ({why})"

    def check(self, row: Dict[str, object], other: Dict[str, object],
              native_bf16: Optional[bool] = None) -> str:
        """``row``'s ratio to ``other`` against this target, with the verdict."""
        ratio = self.ratio(row, other)
        if ratio is None:
            return f"{self.measure} vs {self.against} not measured (target {self.goal})"
        verdict = self.inapplicable(native_bf16) or ("met" if self.met(ratio) else "NOT met")
        return f"{self.measure} vs {self.against} {ratio:.2f}x (target {self.goal}): {verdict}"


FLOAT32_TARGETS = (
    Target("forward+backward", "speedup", 2.0),
    Target("forward+backward", "speedup", 1.0, against="reference+compile"),
    Target("inference", "speedup", 1.3, cases=("raftmlp_s", "dynamixer_s")),
    Target("training", "speedup", 1.25),
    Target("training", "memory", 0.8),
)

# Issue #34: mlpmix under CPU bf16 autocast against the reference under the same autocast,
# 2 threads, on CPUs with native bf16; and bf16 inference (autocast, or bf16 weights)
# against the float32 eager reference.
_AUTOCAST = dict(impl="mlpmix+bf16", against="reference+bf16", native_bf16=True)
_SMALL_MODELS = ("raftmlp_s", "dynamixer_s")
BF16_TARGETS = (
    Target("forward+backward", "speedup", 1.5, **_AUTOCAST),
    Target("inference", "speedup", 1.3, **_AUTOCAST),
    Target("training", "speedup", 1.25, **_AUTOCAST),
    Target("training", "memory", 0.8, **_AUTOCAST),
    Target("inference", "speedup", 2.2, cases=_SMALL_MODELS, impl="mlpmix+bf16", native_bf16=True),
    Target("inference", "speedup", 2.2, cases=_SMALL_MODELS, impl="mlpmix+bf16w", native_bf16=True),
)

TARGETS = FLOAT32_TARGETS + BF16_TARGETS
