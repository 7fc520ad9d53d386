"""The energy network's fast forward path and its fused heads against plain module calls."""

import pytest
import torch
from torch import nn

import reference as ref
from gfncp_pyro.nn import mlp
from gfncp_pyro.nn.energy import forward_layers


def random_slopes(module: nn.Module, seed: int) -> nn.Module:
    """Distinct PReLU slopes, some negative and some above one."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.PReLU):
                layer.weight.copy_(3 * torch.rand(layer.weight.shape, generator=gen) - 1)
    return module


@pytest.mark.parametrize("slopes", [1, 7])
def test_forward_layers_equals_the_modules_with_gradients(slopes):
    torch.manual_seed(0)
    layers = mlp([5, 7, 7, 3]).double()
    if slopes > 1:  # a per-channel PReLU takes the ordinary path
        layers[1] = nn.PReLU(slopes).double()
    random_slopes(layers, 1)
    x = torch.randn(40, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    grad_out = torch.randn(40, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    results = []
    for run in (lambda z: layers(z), lambda z: forward_layers(layers, z)):
        layers.zero_grad()
        inputs = x.clone().requires_grad_()
        out = run(inputs)
        out.backward(grad_out)
        results.append((out.detach(), inputs.grad, [p.grad.clone() for p in layers.parameters()]))
    (out, grad_x, grads), (fast, fast_grad_x, fast_grads) = results
    assert torch.equal(out, fast)
    assert torch.allclose(grad_x, fast_grad_x, rtol=1e-12, atol=1e-12)
    for grad, fast_grad in zip(grads, fast_grads):
        assert torch.allclose(grad, fast_grad, rtol=1e-12, atol=1e-12)
        assert grad.abs().sum() > 0


def test_forward_layers_under_bf16_autocast_give_a_float32_slope_gradient():
    torch.manual_seed(4)
    layers = random_slopes(mlp([4, 64, 64, 1]), 5)
    x = torch.randn(2000, 4, generator=torch.Generator().manual_seed(6))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = forward_layers(layers, x)
    fast.float().sum().backward()
    slope = layers[1].weight.grad.clone()
    layers.zero_grad()
    layers(x).sum().backward()  # float32 reference
    assert fast.dtype == torch.bfloat16
    reference_slope = layers[1].weight.grad
    assert slope.dtype == torch.float32 and torch.isfinite(slope).all()
    assert ((slope - reference_slope).abs() <= 0.05 * reference_slope.abs() + 1e-3).all()


def test_forward_layers_calls_other_modules_directly():
    conv = nn.Conv1d(2, 3, 1)
    x = torch.randn(4, 2, 5)
    assert torch.equal(forward_layers(conv, x), conv(x))


@pytest.mark.parametrize("config", [dict(), dict(g_layers=1, f_layers=1), dict(online=True)])
def test_fused_heads_reproduce_g_and_f(config):
    net = ref.make_net(7, torch.float64, **config)
    gen = torch.Generator().manual_seed(8)
    z = torch.randn(6, net.config.h_dim, generator=gen, dtype=torch.float64)
    U = torch.randn(6, net.config.h_dim, generator=gen, dtype=torch.float64)
    heads = net.fused_heads()
    first = net.f_net[0]
    g_dim = net.config.g_dim
    projected = forward_layers(heads.g_trunk, z) @ heads.weight.T + heads.bias
    assert torch.allclose(projected, net.g(z) @ first.weight[:, :g_dim].T, rtol=1e-12, atol=1e-12)
    G = net.g(z) + net.g(2 * z)
    pre = G @ first.weight[:, :g_dim].T
    if not net.config.online:
        pre = pre + U @ heads.weight_u.T
    if heads.bias_f is not None:
        pre = pre + heads.bias_f
    energy = forward_layers(heads.f_tail, pre).squeeze(-1)
    assert torch.allclose(energy, net.f(G, U), rtol=1e-12, atol=1e-12)


def test_fused_heads_need_linear_ends():
    net = ref.make_net(9, torch.float64)
    net.g[-1] = nn.Identity()
    with pytest.raises(ValueError, match="nn.Linear"):
        net.fused_heads()
