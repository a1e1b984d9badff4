"""Multi-process training: DDP (and FSDP2) on gloo, 2 processes on loopback, end with the
parameters of a single process trained on the same global batch."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

WORKER = str(Path(__file__).with_name("distributed_worker.py"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A rank of the gloo FSDP2 run sometimes aborts with this std::terminate (about 1 run in 8
# on the project's 2-core machines, with the fused ops and with the reference alike): one
# more attempt is made then. The results are compared after a successful run either way.
GLOO_ABORT = "terminate called without an active exception"


def run_torchrun(mode: str, out: Path, attempts: int = 2) -> None:
    for _ in range(attempts):
        result = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
             "--master-addr=127.0.0.1", f"--master-port={free_port()}", WORKER, mode, str(out)],
            capture_output=True, text=True, timeout=600)
        if result.returncode == 0 or GLOO_ABORT not in result.stderr:
            break
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def single_process_state(tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "state.pt"
    subprocess.run([sys.executable, WORKER, "single", str(out)], check=True, timeout=600)
    return torch.load(out)


@pytest.mark.slow
def test_ddp_matches_single_process(single_process_state, tmp_path):
    run_torchrun("ddp", tmp_path / "ddp.pt")
    state = torch.load(tmp_path / "ddp.pt")
    assert state.keys() == single_process_state.keys()
    for key, value in single_process_state.items():
        assert_close(state[key], value, rtol=1e-10, atol=1e-12, msg=key)


@pytest.mark.slow
def test_fsdp2_matches_single_process(single_process_state, tmp_path):
    pytest.importorskip("torch.distributed.fsdp", reason="FSDP2 needs torch.distributed.fsdp")
    from torch.distributed import fsdp

    if not hasattr(fsdp, "fully_shard"):
        pytest.skip("this torch has no FSDP2 fully_shard")
    run_torchrun("fsdp2", tmp_path / "fsdp.pt")
    state = torch.load(tmp_path / "fsdp.pt")
    for key, value in single_process_state.items():
        assert_close(state[key], value, rtol=1e-10, atol=1e-12, msg=key)
