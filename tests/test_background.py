"""Policy samples drawn in a second thread (gfncp_pyro.background) give bit-for-bit the loss
and gradients of drawing them in line, for both objectives that sample."""

import threading

import pytest
import torch

import reference as ref
from gfncp_pyro import background
from gfncp_pyro.background import Deferred, spare_core
from gfncp_pyro.config import PAPER_OBJECTIVE, preset
from gfncp_pyro.train import draw_batch, iteration_generator


def _loss_and_grads(config, use_background):
    net = ref.make_net(4, torch.float32)
    batch = draw_batch(config, iteration_generator(5, 0, 0), torch.device("cpu"), batch_size=6)
    loss, parts = config.objective.loss(net, batch, torch.Generator().manual_seed(11), step=10**6,
                                        background=use_background)
    loss.backward()
    return loss.detach(), parts, {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("changes", [dict(objective=PAPER_OBJECTIVE, beta=0.5),  # CD sample
                                     dict(balance_samples=2),  # the variance balance's own samples
                                     dict(objective=PAPER_OBJECTIVE, beta=0.5, mc_steps=3)])
def test_background_samples_give_the_same_loss_and_gradients(changes):
    config = preset("mog2d-small", n_max=12, **changes)
    inline = _loss_and_grads(config, False)
    beside = _loss_and_grads(config, True)
    assert torch.equal(inline[0], beside[0])
    assert inline[1] == beside[1]
    assert inline[2].keys() == beside[2].keys() and len(inline[2]) > 0
    for name, grad in inline[2].items():
        assert torch.equal(grad, beside[2][name]), name


def test_deferred_runs_in_the_worker_without_grad_and_reraises():
    seen = {}

    def work(x):
        seen["thread"] = threading.current_thread().name
        seen["grad"] = torch.is_grad_enabled()
        return x * 2

    x = torch.ones(3, requires_grad=True)
    out = Deferred(work, x, background=True).result()
    assert seen["thread"].startswith("gfncp-sampler") and not seen["grad"] and not out.requires_grad
    assert Deferred(work, x, background=False).result().tolist() == [2.0, 2.0, 2.0]
    assert seen["thread"] == threading.current_thread().name

    def fail():
        raise RuntimeError("boom")

    deferred = Deferred(fail, background=True)
    with pytest.raises(RuntimeError, match="boom"):
        deferred.result()


def test_spare_core_rule(monkeypatch):
    threads = torch.get_num_threads()
    try:
        monkeypatch.setattr(background, "available_cores", lambda: 2)
        torch.set_num_threads(1)
        assert spare_core("cpu") and not spare_core("meta")
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two torchrun processes share the two cores
        assert not spare_core("cpu")
        monkeypatch.delenv("LOCAL_WORLD_SIZE")
        torch.set_num_threads(2)
        assert not spare_core("cpu")
    finally:
        torch.set_num_threads(threads)
