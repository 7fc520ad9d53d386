"""Training and evaluation on image and embedding sets: config, splits, sources, exact resume."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gfncp_pyro.cli import main
from gfncp_pyro.config import TrainConfig, preset
from gfncp_pyro.data import EmbeddingAugment, ImageAugment, LabeledPool, save_embeddings
from gfncp_pyro.data.sources import ClassSource, InstanceSource, split_pool, evaluation_source, training_source
from gfncp_pyro.evaluation import evaluate
from gfncp_pyro.partitions import is_canonical
from gfncp_pyro.train import Trainer, draw_batch, iteration_generator

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MNIST = DATA / "mnist"
OMNIGLOT = DATA / "omniglot" / "omniglot_demo_40class_800.npz"
needs_data = pytest.mark.skipif(not MNIST.is_dir() or not OMNIGLOT.is_file(), reason="../shared/data not present")

TINY = dict(iterations=4, batch_size=3, n_min=4, n_max=9, val_sets=3, val_every=2, device="cpu", mc_steps=3,
            net_h_dim=8, net_g_dim=16, net_hidden=8)


def _pool(n=60, classes=6, size=28, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return LabeledPool(torch.rand((n, 1, size, size), generator=gen), torch.arange(n) % classes)


def _npz(path, n=60, classes=6):
    pool = _pool(n, classes)
    np.savez(path, images=(pool.points[:, 0].numpy() * 255).astype(np.uint8), labels=pool.labels.numpy())
    return str(path)


def test_config_checks_data_and_round_trips_augment_through_json():
    config = preset("mnist-cpu", data_path="/some/dir", augment={"rotation": 5.0, "crop_scale": [0.7, 1.0]})
    assert isinstance(config.data.augment, ImageAugment) and config.data.augment.crop_scale == (0.7, 1.0)
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert isinstance(preset("embeddings-cpu").data.augment, EmbeddingAugment)
    with pytest.raises(ValueError, match="conv"):
        preset("mnist-cpu", net_encoder="mlp")
    with pytest.raises(ValueError, match="only apply to image"):
        preset("mog2d-small", data_path="x")
    with pytest.raises(ValueError, match="data must be"):
        preset("mog2d-small", data="audio")


def test_split_pool_forms_and_errors():
    pool = _pool(60, 6)
    train, test = split_pool(pool, "index:0:40")
    assert len(train) == 40 and len(test) == 20
    train, test = split_pool(pool, "classes:half")
    assert set(train.labels.tolist()) == {0, 1, 2} and set(test.labels.tolist()) == {3, 4, 5}
    train, test = split_pool(pool, "classes:2")
    assert set(train.labels.tolist()) == {0, 1}
    assert split_pool(pool, "all")[0] is pool
    for bad in ("classes", "classes:x", "index:5", "bogus", "all:1"):
        with pytest.raises(ValueError):
            split_pool(pool, bad)


@needs_data
def test_held_out_classes_never_reach_training_sets():
    config = preset("omniglot-cpu", data_path=str(OMNIGLOT))
    train, test = training_source(config), evaluation_source(config)
    assert isinstance(train, InstanceSource) and isinstance(test, ClassSource)
    train_classes, test_classes = set(train.pool.labels.tolist()), set(test.pool.labels.tolist())
    assert len(train_classes) == 20 and len(test_classes) == 20 and not train_classes & test_classes
    # every point of a training set is (an augmentation of) a training-pool image: with
    # augmentations off, each point equals some training image exactly
    exact = InstanceSource(train.pool, config.model.alpha, augment=None)
    sets = exact.draw(torch.tensor([30, 12]), torch.Generator().manual_seed(0), "cpu")
    flat = sets.x[sets.mask].flatten(1)
    distance = torch.cdist(flat, train.pool.points.flatten(1), compute_mode="donot_use_mm_for_euclid_dist").min(1).values
    assert float(distance.max()) == 0.0
    assert float(torch.cdist(flat, test.pool.points.flatten(1)).min()) > 0


@needs_data
def test_mnist_preset_splits_by_index_and_test_sets_use_distinct_classes():
    config = preset("mnist-cpu", data_path=str(MNIST))
    train, test = training_source(config), evaluation_source(config)
    assert len(train.pool) == 5000 and len(test.pool) == 5000
    sets = test.draw(torch.tensor([50, 30]), torch.Generator().manual_seed(1), "cpu")
    assert bool(is_canonical(sets.labels, sets.mask).all())
    # no two points of a test set are the same image
    for b in range(2):
        x = sets.x[b][sets.mask[b]].flatten(1)
        assert torch.unique(x, dim=0).shape[0] == x.shape[0]


def test_image_points_of_the_wrong_size_are_refused():
    config = preset("mnist-cpu", data_path="unused", split="all", **TINY)
    with pytest.raises(ValueError, match=r"\(1, 32, 32\).*28x28"):
        training_source(config, pool=_pool(size=32))


@pytest.mark.parametrize("objective", ["gfncp", "ncp"])
def test_image_training_runs_on_cpu_and_resumes_exactly(tmp_path, objective):
    path = _npz(tmp_path / "images.npz")
    config = preset("mnist-cpu", data_path=path, split="classes:4", objective=objective, **TINY)
    batch = draw_batch(config, iteration_generator(0, 0, 0), torch.device("cpu"), source=training_source(config))
    assert batch.x.shape[2:] == (1, 28, 28) and bool(((batch.x >= 0) & (batch.x <= 1)).all())
    straight = Trainer(config, tmp_path / "a", progress=False)
    straight.fit()
    first = Trainer(config, tmp_path / "b", progress=False)
    first.fit(until=2)
    resumed = Trainer(config, tmp_path / "b", resume=True, progress=False)
    assert resumed.step == 2
    resumed.fit()
    for name, value in straight.net.state_dict().items():
        assert torch.equal(value, resumed.net.state_dict()[name]), name
    lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all(np.isfinite(json.loads(line)["loss"]) for line in lines)


def test_embedding_training_and_evaluation(tmp_path):
    gen = torch.Generator().manual_seed(0)
    centres = 4 * torch.randn((8, 384), generator=gen)
    labels = torch.arange(80) % 8
    features = centres[labels] + torch.randn((80, 384), generator=gen)
    path = save_embeddings(tmp_path / "emb.npz", features, labels)
    config = preset("embeddings-cpu", data_path=str(path), **TINY)
    Trainer(config, tmp_path / "run", progress=False).fit()
    report = evaluate(Trainer(config, tmp_path / "run", resume=True, progress=False).net, config, num_sets=4,
                      num_points=12, sdpp_sets=2, sdpp_orders=4, progress=False)
    assert report["nmi"]["n"] == 4 and report["protocol"]["data"]["split"] == "classes:half"


def test_evaluate_cli_compares_image_models_and_draws_figures(tmp_path, capsys):
    path = _npz(tmp_path / "images.npz")
    runs = []
    for objective in ("gfncp", "ncp"):
        out = tmp_path / objective
        assert main(["train", "--preset", "mnist-cpu", "--data", path, "--split", "classes:3", "--objective", objective,
                     "--iterations", "2", "--batch-size", "2", "--n-min", "4", "--n-max", "6", "--val-sets", "2",
                     "--val-every", "2", "--mc-steps", "2", "--out", str(out), "--no-progress"]) == 0
        runs.append(str(out / "last.pt"))
    figures, report = tmp_path / "fig", tmp_path / "r.json"
    assert main(["evaluate", *runs, "--sets", "3", "--N", "8", "--sdpp-sets", "2", "--sdpp-orders", "4",
                 "--figures", str(figures), "--json", str(report), "--no-progress"]) == 0
    data = json.loads(report.read_text())
    assert set(data["models"]) == {"GFNCP (gfncp)", "NCP (ncp)"}
    assert all(m["nmi"]["n"] == 3 for m in data["models"].values())
    for name in ("sdpp.png", "top3_gfncp.png", "top3_ncp.png"):
        assert (figures / name).stat().st_size > 5_000
    # a moved data file: one clear line, exit status 2
    assert main(["evaluate", runs[0], "--data", str(tmp_path / "missing.npz"), "--sets", "2", "--no-progress"]) == 2
    assert "missing.npz" in capsys.readouterr().err


def test_train_cli_bad_data_is_one_line(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--preset", "mnist-cpu", "--data", str(tmp_path), "--out", out, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "idx" in err.lower()
    assert main(["train", "--preset", "mnist-cpu", "--out", out, "--no-progress"]) == 2
    assert "--data" in capsys.readouterr().err
    features = tmp_path / "f.npz"
    np.savez(features, features=np.zeros((5, 384), np.float32), labels=np.zeros(4, np.int64))
    assert main(["train", "--preset", "embeddings-cpu", "--data", str(features), "--out", out, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "5" in err and "4" in err
