"""What a model's (or a layer's) output stands for when it is not a plain tensor."""

from __future__ import annotations

from typing import Any

import torch


def first_tensor(value: Any) -> torch.Tensor | None:
    """The tensor a layer's output stands for: itself, the first of a tuple/list, ``logits`` of a dict."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        if isinstance(value.get("logits"), torch.Tensor):
            return value["logits"]
        value = list(value.values())
    elif hasattr(value, "to_tuple"):  # transformers' ModelOutput
        value = value.to_tuple()
    if isinstance(value, (list, tuple)):
        for item in value:
            found = first_tensor(item)
            if found is not None:
                return found
    return None
