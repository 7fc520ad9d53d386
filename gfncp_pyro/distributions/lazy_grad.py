"""A log-density whose gradient is computed only if someone asks for it.

Pyro scores every sampled site (``Trace.log_prob_sum``), with autograd on by default, also where
nothing will ever be differentiated (``pyro.infer.Importance``, ``Predictive``). For
:class:`~gfncp_pyro.distributions.AmortizedPartition` the value ``log q(c | x)`` of a sampled
partition is already known from the decoding pass; recording the teacher-forcing graph that
its gradient needs costs far more than the value. :func:`lazy_log_prob` returns the known
value as a differentiable function of the network's parameters: the forward pass is free and
the backward pass re-runs the computation with autograd (once, when ``backward`` reaches it)
and hands the parameters their gradients. First-order gradients only.

If a parameter is changed in place between the forward and the backward pass (an optimiser
step), backward raises torch's usual "modified by an inplace operation" error instead of
returning a gradient for other parameter values.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

__all__ = ["lazy_log_prob"]


class _LazyLogProb(torch.autograd.Function):
    """``forward(value, recompute, *inputs) = value``; backward differentiates ``recompute()``."""

    @staticmethod
    def forward(ctx, value, recompute, *inputs):
        ctx.recompute = recompute
        ctx.inputs = inputs
        ctx.save_for_backward(*inputs)  # torch checks their versions when backward unpacks them
        return value.clone()

    @staticmethod
    def backward(ctx, grad_output):
        ctx.saved_tensors  # noqa: B018  (raises if an input was modified in place since forward)
        wanted = [i for i, t in enumerate(ctx.inputs) if ctx.needs_input_grad[2 + i]]
        grads = [None] * len(ctx.inputs)
        if wanted:
            with torch.enable_grad():
                value = ctx.recompute()
            found = torch.autograd.grad(value, [ctx.inputs[i] for i in wanted], grad_output,
                                        allow_unused=True)
            for i, g in zip(wanted, found):
                grads[i] = g
        return (None, None, *grads)


def lazy_log_prob(value: torch.Tensor, recompute: Callable[[], torch.Tensor],
                  inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """``value`` as a differentiable function of ``inputs``, computed lazily.

    :param value: the log-density, computed without autograd (any shape).
    :param recompute: a function returning the same log-density with autograd, from the same
        ``inputs`` (called only in the backward pass).
    :param inputs: the tensors the log-density depends on (e.g. the network's parameters).
    :returns: a tensor equal to ``value`` that requires grad if any input does.
    """
    inputs = [t for t in inputs if t.requires_grad]
    if not inputs or not torch.is_grad_enabled():
        return value
    return _LazyLogProb.apply(value, recompute, *inputs)
