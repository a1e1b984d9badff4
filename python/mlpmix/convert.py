"""Checkpoints saved by the authors' training code -> mlpmix state dicts, and checkpoint
files in either layout (torch or safetensors). The implementation lives beside the model
tables it reads, in :mod:`mlpmix.models.checkpoints`; this is its public name."""

from .models.checkpoints import (WRAPPER_KEYS, CheckpointError, check_fits, checkpoint_kwargs, from_official,
                                 is_official, load_checkpoint, save_state_dict, unwrap_state_dict)

__all__ = ["from_official", "is_official", "load_checkpoint", "unwrap_state_dict", "check_fits",
           "checkpoint_kwargs", "save_state_dict", "CheckpointError", "WRAPPER_KEYS"]
