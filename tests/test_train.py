"""Training: loss decreases, checkpoints round-trip, exact resume, guards, clear errors."""

import math
import os
import socket

import pytest
import torch

from gfncp_pyro.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from gfncp_pyro.config import PAPER_OBJECTIVE, PRESETS, TrainConfig, preset
from gfncp_pyro.partitions import is_canonical
from gfncp_pyro.train import NonFiniteLossError, Trainer, batch_loss, draw_batch, iteration_generator

TINY = dict(iterations=6, batch_size=8, n_max=10, val_sets=8, val_every=3, device="cpu",
            net_h_dim=16, net_g_dim=32, net_hidden=16, panel_sets=0, select_by="loss")


def tiny(**changes) -> TrainConfig:
    return preset("mog2d-small", **{**TINY, **changes})


def _params(trainer):
    return {k: v.clone() for k, v in trainer.net.state_dict().items()}


@pytest.mark.parametrize("objective", ["gfncp", "ncp"])
def test_a_few_steps_on_a_fixed_batch_lower_the_loss(objective):
    config = tiny(objective=objective, lr=3e-3, lr_min=3e-3, iterations=40)
    trainer = Trainer(config, "/nonexistent-unused", progress=False)
    batch = draw_batch(config, iteration_generator(0, 0, 0), torch.device("cpu"), explore=False)
    losses = []
    for _ in range(60):
        loss, _ = batch_loss(trainer.net, config, batch, iteration_generator(0, 0, 1))
        trainer.optimizer.zero_grad()
        loss.backward()
        trainer.optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0], losses


def test_batches_come_from_the_model_with_exploration():
    config = tiny(beta=0.5, batch_size=64)
    batch = draw_batch(config, iteration_generator(1, 0, 0), torch.device("cpu"))
    assert bool(is_canonical(batch.labels, batch.mask).all())
    assert 10 < int(batch.is_data.sum()) < 54
    lengths = batch.mask.sum(1)
    assert int(lengths.min()) >= 1 and int(lengths.max()) <= 10
    for row, n in zip(batch.orders.tolist(), lengths.tolist()):
        assert sorted(row[:n]) == list(range(n))
    fixed = draw_batch(tiny(n_min=8, fixed_k=3), iteration_generator(1, 0, 0), torch.device("cpu"))
    assert (fixed.labels.max(1).values == 2).all()


@pytest.mark.parametrize("objective", ["gfncp", "ncp"])
def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, objective):
    config = tiny(objective=objective)
    full = Trainer(config, tmp_path / "full", progress=False)
    full.fit()
    part = Trainer(config, tmp_path / "part", progress=False)
    part.fit(until=4)  # stops between periodic checkpoints; fit() saves last.pt where it stops
    part = Trainer(config, tmp_path / "part", resume=True, progress=False)
    assert part.step == 4
    part.fit()
    for name, value in _params(full).items():
        assert torch.equal(value, part.net.state_dict()[name]), name
    assert part.scheduler.get_last_lr() == full.scheduler.get_last_lr()
    assert (tmp_path / "full" / "best.pt").is_file()


def test_fresh_run_never_overwrites(tmp_path):
    Trainer(tiny(iterations=3), tmp_path, progress=False).fit()
    with pytest.raises(ValueError, match="already holds a run"):
        Trainer(tiny(iterations=3), tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="another config"):
        Trainer(tiny(iterations=3, lr=1e-3), tmp_path, resume=True, progress=False)


def test_checkpoint_round_trip_is_exact(tmp_path):
    trainer = Trainer(tiny(iterations=3), tmp_path, progress=False)
    trainer.fit()
    net, config = load_model(tmp_path / "last.pt")
    assert config == trainer.config
    for name, value in trainer.net.state_dict().items():
        assert torch.equal(value, net.state_dict()[name])
    x = torch.randn(1, 5, 2)
    labels = torch.zeros(1, 5, dtype=torch.long)
    from gfncp_pyro.policy import log_prob

    assert torch.equal(log_prob(net, x, labels), log_prob(trainer.net.eval(), x, labels))


def test_corrupt_truncated_and_foreign_checkpoints(tmp_path):
    trainer = Trainer(tiny(iterations=3), tmp_path, progress=False)
    trainer.fit()
    data = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "trunc.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    state = load_checkpoint(tmp_path / "last.pt")
    state.pop("format"), state.pop("format_version"), state.pop("package_version")
    save_checkpoint(tmp_path / "future.pt", state)
    raw = torch.load(tmp_path / "future.pt", weights_only=True)
    raw["format_version"] = 99
    torch.save(raw, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(tmp_path / "future.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a gfncp-pyro checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_atomic_save_leaves_no_partial_file(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    save_checkpoint(tmp_path / "ok.pt", {"config": {}, "model": {}})
    before = (tmp_path / "ok.pt").read_bytes()
    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "ok.pt", {"config": {}, "model": {"w": torch.ones(2)}})
    assert (tmp_path / "ok.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.pt"]


def test_nonfinite_loss_stops_with_a_clear_message(tmp_path):
    trainer = Trainer(tiny(iterations=3), tmp_path, progress=False)
    with torch.no_grad():
        next(trainer.net.parameters()).fill_(math.nan)
    with pytest.raises(NonFiniteLossError, match="non-finite loss .* iteration 0"):
        trainer.fit()
    assert (tmp_path / "nonfinite.pt").is_file()


def test_config_validation_and_presets():
    assert PRESETS["mog2d"].model.alpha == 6.0 and PRESETS["mog2d"].model.n_max == 1000
    assert PRESETS["mog2d-k6"].data.fixed_k == 6
    small = PRESETS["mog2d-small"]
    m = small.model
    assert (m.alpha, m.sigma_mu, m.sigma_x, m.n_min, m.n_max) == (1.0, 5.0, 1.0, 1, 32)
    assert TrainConfig.from_dict(small.to_dict()) == small
    for bad in (dict(objective="vae"), dict(flow="x"), dict(beta=1.5), dict(alpha=-1.0), dict(n_max=0),
                dict(mc_steps=0), dict(batch_size=0)):
        with pytest.raises(ValueError):
            small.replace(**bad)
    with pytest.raises(ValueError, match="unknown preset"):
        preset("imagenet")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out, result):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    trainer = Trainer(tiny(iterations=4, val_every=2), out, progress=False)
    trainer.fit()
    flat = torch.cat([p.detach().flatten() for p in trainer.net.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    batch = draw_batch(trainer.config, __import__("gfncp_pyro.train").train.iteration_generator(0, rank, 0),
                       torch.device("cpu"))
    sizes = [torch.zeros(1) for _ in range(world)]
    dist.all_gather(sizes, batch.x.sum().reshape(1))
    if rank == 0:
        result.put((all(torch.equal(g, gathered[0]) for g in gathered), sizes[0].item() != sizes[1].item()))
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_ddp_keeps_ranks_identical(tmp_path):
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    result = ctx.SimpleQueue()
    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(tmp_path), result), nprocs=2, start_method="spawn")
    identical, different_data = result.get()
    assert identical and different_data


def test_sampler_used_by_training_is_the_models():
    """draw_batch's data (without exploration) is CRPMixture.sample_batch's, set for set."""
    config = tiny()
    gen_a, gen_b = iteration_generator(3, 0, 0), iteration_generator(3, 0, 0)
    batch = draw_batch(config, gen_a, torch.device("cpu"), explore=False)
    from gfncp_pyro.data import random_lengths

    lengths = random_lengths(config.optim.batch_size, config.model.n_min, config.model.n_max, gen_b)
    mixture = config.mixture()
    direct = mixture.sample_batch(lengths, gen_b, dtype=torch.float64)
    assert torch.equal(batch.labels, direct.labels)
    assert torch.allclose(batch.x, direct.x.float())


@pytest.mark.parametrize("flow", ["paper", "consistent"])
@pytest.mark.parametrize("reward", ["cd", "nll"])
def test_step_subsampled_training_runs(tmp_path, flow, reward):
    trainer = Trainer(tiny(iterations=2, mc_steps=2, objective=PAPER_OBJECTIVE, flow=flow, reward=reward),
                      tmp_path, progress=False)
    record = trainer.train_step()
    assert math.isfinite(record["loss"]) and math.isfinite(record["mc"])


def test_sigterm_saves_last_checkpoint_and_the_resumed_log_has_each_step_once(tmp_path):
    import json
    import signal

    config = tiny(iterations=8, val_every=3)
    trainer = Trainer(config, tmp_path, progress=False)
    step = trainer.train_step

    def step_then_terminate():
        record = step()
        if trainer.step == 5:  # mid-iteration: the loop finishes and logs step 5, then stops
            os.kill(os.getpid(), signal.SIGTERM)
        return record

    trainer.train_step = step_then_terminate
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 5
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
    # a run killed hard between checkpoints logged steps 4-5 beyond last.pt's step 3: they are
    # dropped on resume and recomputed
    state = load_checkpoint(tmp_path / "best.pt")
    assert state["step"] == 3
    save_checkpoint(tmp_path / "last.pt", state)
    resumed = Trainer(config, tmp_path, resume=True, progress=False)
    resumed.fit()
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))


def test_resume_with_more_iterations_replans_the_cosine_schedule(tmp_path):
    from gfncp_pyro.train import cosine_lr

    config = tiny(iterations=4, val_every=2, lr=1e-3, lr_min=1e-5)
    Trainer(config, tmp_path, progress=False).fit()  # finished: the LR is at lr_min
    longer = config.replace(iterations=10)
    resumed = Trainer(longer, tmp_path, resume=True, progress=False)
    assert resumed.step == 4
    lrs = []
    while resumed.step < 10:
        lrs.append(resumed.optimizer.param_groups[0]["lr"])
        resumed.train_step()
    # the LR of a run planned for 10 iterations from the start (closed form, independent of torch)
    assert lrs == pytest.approx([cosine_lr(t, 10, 1e-3, 1e-5) for t in range(4, 10)], rel=1e-12, abs=0)
    fresh = Trainer(longer, tmp_path / "fresh", progress=False)
    fresh_lrs = []
    while fresh.step < 10:
        fresh_lrs.append(fresh.optimizer.param_groups[0]["lr"])
        fresh.train_step()
    assert lrs == pytest.approx(fresh_lrs[4:], rel=1e-12, abs=0)
    with pytest.raises(CheckpointError, match="already at step 4"):
        Trainer(config.replace(iterations=3), tmp_path, resume=True, progress=False)
    with pytest.raises(CheckpointError, match="another config"):
        Trainer(longer.replace(lr=2e-3), tmp_path, resume=True, progress=False)


def test_stale_temporaries_of_a_killed_write_are_removed(tmp_path):
    trainer = Trainer(tiny(iterations=2, val_every=2), tmp_path, progress=False)
    trainer.fit()
    stale = [tmp_path / ".last.pt.abc123.tmp", tmp_path / ".best.pt.x.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    keep = tmp_path / ".other.pt.x.tmp"
    keep.write_bytes(b"not ours")
    Trainer(tiny(iterations=2, val_every=2), tmp_path, resume=True, progress=False)
    assert not any(p.exists() for p in stale) and keep.exists()
    stale[0].write_bytes(b"again")
    save_checkpoint(tmp_path / "last.pt", load_checkpoint(tmp_path / "last.pt"))
    assert not stale[0].exists()


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "cpu:3", "", "gpu"])
def test_unknown_devices_are_refused(name):
    from gfncp_pyro.train import resolve_device

    with pytest.raises(ValueError, match="device"):
        resolve_device(name)
    assert resolve_device("cpu") == torch.device("cpu")


def test_nonfinite_weights_are_refused_at_load(tmp_path):
    trainer = Trainer(tiny(iterations=1, val_every=1), tmp_path, progress=False)
    state = trainer._state()
    name = next(iter(state["model"]))
    state["model"][name] = state["model"][name].clone().fill_(math.inf)
    save_checkpoint(tmp_path / "bad.pt", state)
    with pytest.raises(CheckpointError, match=f"non-finite weights .*{name}"):
        load_model(tmp_path / "bad.pt")
