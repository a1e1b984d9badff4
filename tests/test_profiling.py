"""torch.profiler sees inside the fused CPU kernels: each phase carries a label."""

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import mlpmix

# The phases each tiny model's training step must show, by op.
PHASES = {
    "channel_mlp": ["layer_norm", "fc1", "gelu", "fc2"],
    "channel_mlp_backward": ["layer_norm", "fc2_bias", "gelu", "fc2_weight", "fc2_input",
                             "gelu_backward", "fc1_weight", "fc1_input", "layer_norm_backward"],
    "raft_token_mixing": ["layer_norm", "fc1", "gelu", "fc2"],
    "raft_token_mixing_backward": ["layer_norm", "fc2_bias", "gelu", "fc2_weight", "fc2_input",
                                   "gelu_backward", "fc1_weight", "fc1_input",
                                   "layer_norm_backward"],
    "dynamixer": ["compress", "generate", "softmax_mixing"],
    "dynamixer_backward": ["softmax_mixing", "compressed_input", "generate_weight",
                           "compress_backward"],
    "reweight_branches": ["token_sums", "branch_weights", "weighted_sum"],
    "reweight_branches_backward": ["token_sums", "branch_weights", "branch_gradients"],
}
MODEL_OPS = {
    "raftmlp_tiny": ["channel_mlp", "channel_mlp_backward", "raft_token_mixing",
                     "raft_token_mixing_backward"],
    "dynamixer_tiny": ["channel_mlp", "channel_mlp_backward", "dynamixer", "dynamixer_backward",
                       "reweight_branches", "reweight_branches_backward"],
}


@pytest.fixture
def one_thread():
    """The labels are recorded on the profiling thread: run every tile there."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", sorted(MODEL_OPS))
def test_training_step_profile_names_every_phase(name, one_thread):
    torch.manual_seed(0)
    model = mlpmix.models.create_model(name)
    x = torch.randn(2, *model.pretrained_cfg["input_size"])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model(x).sum().backward()
    recorded = {event.key for event in prof.key_averages()}
    expected = {f"{op}.{phase}" for op in MODEL_OPS[name] for phase in PHASES[op]}
    assert expected <= recorded, sorted(expected - recorded)
