"""Bind a PyTorch model's weights and forward arguments to the buffer names of its compiled IR."""
from __future__ import annotations

import numpy as np
import torch
import torch.utils._pytree as pytree

from etc.frontend.torch_import import input_names


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """bf16/f16 become float32 holding the same values (the executor's storage for them)."""
    t = t.detach().cpu()
    if t.is_floating_point():
        return t.float().numpy().copy()
    return t.numpy().copy()


def arguments(model: torch.nn.Module, args) -> dict[str, np.ndarray]:
    """name -> numpy array for every weight (parameters and buffers, by state-dict name) and every
    forward argument (by the importer's names: "tokens", "k_caches.0", ...)."""
    bound = {name: to_numpy(p) for name, p in model.named_parameters()}
    bound.update({name: to_numpy(b) for name, b in model.named_buffers()})
    leaves = pytree.tree_leaves(tuple(args))
    for name, leaf in zip(input_names(model, args), leaves):
        if isinstance(leaf, torch.Tensor):
            bound[name] = to_numpy(leaf)
    return bound
