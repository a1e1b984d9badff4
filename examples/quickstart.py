"""mlpmix in one minute: a DynaMixer block on the fused C++ op, checked against the
pure-PyTorch reference, timed against it, and scripted for C++ deployment."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

import mlpmix
from mlpmix import nn, ops, reference


def timed(fn, *args, repeat: int = 20) -> float:
    fn(*args)
    start = time.perf_counter()
    for _ in range(repeat):
        fn(*args)
    return (time.perf_counter() - start) / repeat


def main() -> None:
    torch.manual_seed(0)
    info = mlpmix.build_info()
    print(f"mlpmix {info['mlpmix']} (torch {info['torch_built_against']}, {', '.join(info['backends'])})")

    # DynaMixer-S stage A: 32x32 tokens of width 192, S=8 segments, d=2.
    block = nn.DynaMixerBlock(192, 32, num_segments=8, reduced_dim=2).eval()
    x = torch.randn(4, 32, 32, 192)
    op = block.mix_h
    args = (x, op.compress.weight, op.compress.bias, op.generate.weight, op.generate.bias, 8, 1)
    with torch.inference_mode():
        fused, ref = ops.dynamixer(*args), reference.dynamixer(*args)
        print(f"dynamixer op vs reference: max |diff| = {(fused - ref).abs().max():.2e}")
        t_fused, t_ref = timed(ops.dynamixer, *args), timed(reference.dynamixer, *args)
        print(f"dynamixer op forward, x {tuple(x.shape)}: fused {t_fused * 1e3:.1f} ms, "
              f"reference {t_ref * 1e3:.1f} ms ({t_ref / t_fused:.2f}x)")
        y = block(x)

    path = Path(tempfile.mkdtemp()) / "dynamixer_block.pt"
    torch.jit.script(block).save(str(path))
    with torch.inference_mode():
        same = torch.equal(torch.jit.load(str(path))(x), y)
    print(f"scripted block saved to {path}; reloaded output identical: {same}")
    print("run it from C++: examples/cpp (see README)")


if __name__ == "__main__":
    main()
