"""CPU benchmark suite of mlpmix: each op (forward, forward+backward) at the shapes the six
models use and each model's inference and training step, for the eager reference, its
``torch.compile``, the fused mlpmix ops and their ``torch.compile``, in float32 and, in the
same run, under CPU bfloat16 autocast and (inference) with bfloat16 weights
(``benchmarks/implementations.py``). Run it with ``python -m benchmarks.run`` (see
``benchmarks/run.py``)."""
