"""The FLOPs of one call of a case: the work its achieved GFLOP/s and fraction of the
machine's peak (``benchmarks/peak.py``) are of.

Counted by ``torch.utils.flop_counter.FlopCounterMode`` over one call of the case's float32
``mlpmix`` step under ``FakeTensorMode``: shapes only, nothing computed. The mlpmix ops
count through their FLOP formulas (``mlpmix/flops.py``), which give the reference's count
for every op; 2 FLOPs per multiply-accumulate of the matrix products, none for the
elementwise work. Forward+backward and training cases count the backward too (the
optimizer step has no matrix product). One count per case serves every implementation, so
two implementations' GFLOP/s are in the ratio of their speedups.
"""

from __future__ import annotations

from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from .cases import Case

COUNTED_WITH = "mlpmix"


def count(case: Case) -> int:
    """FLOPs of one call of ``case``."""
    # Built on real tensors (building on fake ones fails: torch's trunc_normal_ asks for a
    # value), called on fake ones. The step is counted once and dropped: a training
    # step's parameters are left with fake gradients.
    step = case.build(COUNTED_WITH)
    with FakeTensorMode(allow_non_fake_inputs=True), FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()
