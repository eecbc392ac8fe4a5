"""Multiply-accumulate (MAC) and parameter counts of a torch model for a given input.

What is counted: one MAC per multiply-add in convolutions (grouped and depthwise included: a depthwise
k×k conv costs C·k²·H_out·W_out), linear layers, matmul/bmm/baddbmm and attention products, as counted by
``torch.utils.flop_counter.FlopCounterMode`` (MACs = FLOPs / 2). Not counted: biases, normalisation,
activations, pooling, element-wise adds and multiplies (SE gating, residuals), softmax, embedding
lookups. This is the convention of the published figures (TF-slim, torchvision) the zoo is checked against.
Parameters are every element of ``model.parameters()`` (weights, biases, BN scale/shift, embeddings,
positional tables); buffers such as BN running statistics are not parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def model_costs(model: torch.nn.Module, example_inputs: Any) -> dict[str, int]:
    """Count the MACs of one forward pass on ``example_inputs`` and the model's parameters.

    Args:
        model: a torch module (run once in eval mode under no_grad; its mode is restored).
        example_inputs: a tensor or a tuple of tensors, as the model's forward takes them; MACs scale with
            their batch size, so pass batch 1 for per-sample figures.

    Returns:
        ``{"macs": int, "params": int}``.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(*args)
    finally:
        model.train(was_training)
    return {"macs": int(counter.get_total_flops()) // 2, "params": int(sum(p.numel() for p in model.parameters()))}
