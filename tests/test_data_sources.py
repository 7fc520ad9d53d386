"""Tests of the image / embedding data sources and the pool splits (gfncp_pyro.data.images,
.embeddings, .pools), against independent slow readers and the real shared data sets."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gfncp_pyro.data.embeddings import load_embeddings, save_embeddings
from gfncp_pyro.data.images import load_idx, load_image_npz, load_images
from gfncp_pyro.data.pools import LabeledPool, check_pool, class_split, index_split, parse_range

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MNIST = DATA / "mnist"
OMNIGLOT = DATA / "omniglot" / "omniglot_demo_40class_800.npz"

MNIST_IMAGES_MD5 = "9fb629c4189551a2d022fa330f9573f3"  # official value, see the data README
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_PIXEL_SUM = 264923200  # sum of all 7,840,000 uint8 pixels of t10k-images


def _need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"shared data {path} is absent (expected the read-only copy at ../shared/data)")


# ---------------------------------------------------------------- IDX: a writer and a slow reader


def _idx_bytes(magic: int, array: np.ndarray) -> bytes:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx(directory: Path, images: np.ndarray, labels: np.ndarray, gz: bool,
               prefix: str = "toy-", sep: str = "-") -> None:
    for kind, magic, array, ndim in (("images", 2051, images, 3), ("labels", 2049, labels, 1)):
        data = _idx_bytes(magic, array)
        name = f"{prefix}{kind}{sep}idx{ndim}-ubyte"
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)


def _slow_idx(data: bytes) -> tuple[tuple[int, ...], list[int]]:
    (magic,) = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    shape = tuple(struct.unpack(">I", data[4 + 4 * i: 8 + 4 * i])[0] for i in range(ndim))
    offset = 4 + 4 * ndim
    values = [struct.unpack("B", data[offset + i: offset + i + 1])[0] for i in range(len(data) - offset)]
    return shape, values


def _toy_idx(seed: int = 0, n: int = 7):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 5, 4), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("sep", ["-", "."])
def test_load_idx_matches_slow_parser(tmp_path, gz, sep):
    images, labels = _toy_idx()
    _write_idx(tmp_path, images, labels, gz, sep=sep)
    pool = load_idx(tmp_path)
    shape, pixels = _slow_idx(_idx_bytes(2051, images))
    label_shape, label_values = _slow_idx(_idx_bytes(2049, labels))
    assert shape == (7, 5, 4) and label_shape == (7,)
    assert pool.points.shape == (7, 1, 5, 4) and pool.points.dtype == torch.float32
    assert pool.labels.dtype == torch.long and pool.labels.tolist() == label_values
    flat = pool.points.flatten()
    assert torch.equal((flat * 255).round().long(), torch.tensor(pixels))
    expected = torch.tensor([v / 255 for v in pixels], dtype=torch.float64)
    torch.testing.assert_close(flat.double(), expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_truncated(tmp_path, gz):
    images, labels = _toy_idx()
    _write_idx(tmp_path, images, labels, gz)
    name = "toy-images-idx3-ubyte" + (".gz" if gz else "")
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[:-5])
    with pytest.raises(ValueError, match="truncated|corrupt"):
        load_idx(tmp_path)


def test_load_idx_header_errors(tmp_path):
    images, labels = _toy_idx()
    _write_idx(tmp_path, images, labels, gz=False)
    (tmp_path / "toy-images-idx3-ubyte").write_bytes(_idx_bytes(2051, images)[:10])
    with pytest.raises(ValueError, match="header"):
        load_idx(tmp_path)
    (tmp_path / "toy-images-idx3-ubyte").write_bytes(_idx_bytes(2049, images.ravel()))
    with pytest.raises(ValueError, match="magic number 2049, expected 2051"):
        load_idx(tmp_path)


def test_load_idx_directory_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_idx(tmp_path / "nowhere")
    (tmp_path / "readme.txt").write_text("no data")
    with pytest.raises(ValueError, match="not a directory"):
        load_idx(tmp_path / "readme.txt")
    with pytest.raises(ValueError, match=r"images-idx3-ubyte.*images-idx3-ubyte\.gz"):
        load_idx(tmp_path)
    images, labels = _toy_idx()
    _write_idx(tmp_path, images, labels, gz=False)
    _write_idx(tmp_path, images, labels, gz=True)  # a raw and a gzipped copy
    with pytest.raises(ValueError, match="several IDX images files"):
        load_idx(tmp_path)


def test_load_idx_count_mismatch(tmp_path):
    images, _ = _toy_idx(n=7)
    _, labels = _toy_idx(n=6)
    _write_idx(tmp_path, images, labels, gz=True)
    with pytest.raises(ValueError, match="7 images but .* 6 labels"):
        load_idx(tmp_path)


def test_mnist_from_shared_data():
    _need(MNIST)
    raw = (MNIST / "t10k-images-idx3-ubyte.gz").read_bytes()
    assert hashlib.md5(raw).hexdigest() == MNIST_IMAGES_MD5
    pixels = np.frombuffer(gzip.decompress(raw), dtype=np.uint8, offset=16)
    raw_labels = np.frombuffer(gzip.decompress((MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes()),
                               dtype=np.uint8, offset=8)
    assert np.bincount(raw_labels).tolist() == MNIST_TEST_COUNTS
    assert int(pixels.sum(dtype=np.int64)) == MNIST_PIXEL_SUM

    pool = load_idx(MNIST)
    assert pool.points.shape == (10000, 1, 28, 28) and pool.points.dtype == torch.float32
    assert pool.labels.shape == (10000,) and pool.labels.dtype == torch.long
    assert float(pool.points.min()) == 0.0 and float(pool.points.max()) == 1.0
    assert torch.bincount(pool.labels).tolist() == MNIST_TEST_COUNTS
    assert torch.equal(pool.labels, torch.from_numpy(raw_labels.astype(np.int64)))
    as_bytes = (pool.points * 255).round().long()
    assert int(as_bytes.sum()) == MNIST_PIXEL_SUM
    assert torch.equal(as_bytes.flatten(), torch.from_numpy(pixels.astype(np.int64)))
    assert len(pool) == 10000 and pool.point_shape == (1, 28, 28)

    via_dispatch = load_images(MNIST)
    assert torch.equal(via_dispatch.points, pool.points)
    assert load_images(MNIST, size=14).points.shape == (10000, 1, 14, 14)


# ---------------------------------------------------------------------------- .npz image archives


def _block_means(images: np.ndarray, factor: int) -> np.ndarray:
    n, h, w = images.shape
    out = np.zeros((n, h // factor, w // factor))
    for i in range(n):
        for r in range(h // factor):
            for c in range(w // factor):
                out[i, r, c] = images[i, r * factor:(r + 1) * factor, c * factor:(c + 1) * factor].mean()
    return out


def test_npz_area_resize_is_block_mean(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 56, 56), dtype=np.uint8)
    images[:, :, :] //= 3  # dark background on average: no inversion
    np.savez(tmp_path / "toy.npz", images=images, labels=np.array([4, 2, 4]))
    pool = load_image_npz(tmp_path / "toy.npz", size=28)
    assert pool.points.shape == (3, 1, 28, 28) and pool.points.dtype == torch.float32
    assert pool.labels.tolist() == [4, 2, 4] and pool.labels.dtype == torch.long
    expected = _block_means(images.astype(np.float64) / 255, 2)
    np.testing.assert_allclose(pool.points[:, 0].double().numpy(), expected, rtol=0, atol=1e-6)


def test_npz_invert_and_float_input(tmp_path):
    rng = np.random.default_rng(2)
    white = 1.0 - 0.2 * rng.random((4, 1, 30, 30))  # floats in [0, 1], (n, 1, H, W), bright
    np.savez(tmp_path / "white.npz", images=white, labels=np.arange(4))
    auto = load_image_npz(tmp_path / "white.npz", size=15)
    plain = load_image_npz(tmp_path / "white.npz", size=15, invert=False)
    forced = load_image_npz(tmp_path / "white.npz", size=15, invert=True)
    assert float(plain.points.mean()) > 0.5 and float(auto.points.mean()) < 0.5
    torch.testing.assert_close(auto.points, forced.points)
    torch.testing.assert_close(auto.points, 1 - plain.points, rtol=0, atol=1e-6)
    expected = 1 - _block_means(white[:, 0], 2)
    np.testing.assert_allclose(auto.points[:, 0].double().numpy(), expected, rtol=0, atol=1e-6)
    bigger = load_image_npz(tmp_path / "white.npz", size=45)  # enlarging: bilinear
    assert bigger.points.shape == (4, 1, 45, 45)
    assert float(bigger.points.min()) >= 0 and float(bigger.points.max()) <= 1


@pytest.mark.parametrize("arrays, message", [
    ({"images": np.zeros((3, 8, 8), np.uint8)}, r"lacks \['labels'\]"),
    ({"images": np.zeros((3, 8, 8), np.uint8), "labels": np.arange(2)}, "3 images but 2 labels"),
    ({"images": np.zeros((3, 8), np.uint8), "labels": np.arange(3)}, "expected a non-empty"),
    ({"images": np.zeros((3, 3, 8, 8), np.uint8), "labels": np.arange(3)}, "expected a non-empty"),
    ({"images": np.full((3, 8, 8), 1.5), "labels": np.arange(3)}, r"outside \[0, 1\]"),
    ({"images": np.full((3, 8, 8), np.nan), "labels": np.arange(3)}, r"outside \[0, 1\]"),
    ({"images": np.zeros((3, 8, 8), np.int32), "labels": np.arange(3)}, "dtype int32"),
    ({"images": np.zeros((3, 8, 8), np.uint8), "labels": np.array([0, -1, 2])}, "negative"),
    ({"images": np.zeros((3, 8, 8), np.uint8), "labels": np.array([0, 1.5, 2])}, "non-integer"),
])
def test_npz_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        load_image_npz(tmp_path / "bad.npz")


def test_image_argument_errors(tmp_path):
    np.savez(tmp_path / "ok.npz", images=np.zeros((2, 8, 8), np.uint8), labels=np.arange(2))
    with pytest.raises(ValueError, match="size must be a positive integer"):
        load_image_npz(tmp_path / "ok.npz", size=0)
    with pytest.raises(ValueError, match="invert must be"):
        load_image_npz(tmp_path / "ok.npz", invert="auto")
    with pytest.raises(ValueError, match="does not exist"):
        load_image_npz(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="does not exist"):
        load_images(tmp_path / "missing.npz")
    (tmp_path / "images.csv").write_text("1,2")
    with pytest.raises(ValueError, match="directory of IDX files .* or an .npz"):
        load_images(tmp_path / "images.csv")


def test_omniglot_from_shared_data():
    _need(OMNIGLOT)
    with np.load(OMNIGLOT) as archive:
        raw_labels = archive["labels"]
        raw_mean = archive["images"].mean() / 255
    assert raw_mean > 0.5  # white background in the file
    pool = load_images(OMNIGLOT)
    assert pool.points.shape == (800, 1, 28, 28) and pool.points.dtype == torch.float32
    assert float(pool.points.min()) >= 0.0 and float(pool.points.max()) <= 1.0
    assert torch.equal(pool.labels, torch.from_numpy(raw_labels.astype(np.int64)))
    assert pool.classes.numel() == 40
    assert torch.unique(pool.labels, return_counts=True)[1].tolist() == [20] * 40
    # Auto-inverted: dark background, bright strokes; the mean flips to 1 - raw mean (area
    # resizing preserves the mean up to the uneven 105 -> 28 windows).
    border = torch.cat([pool.points[..., 0, :], pool.points[..., -1, :]], dim=-1)
    assert float(border.median()) == 0.0
    assert abs(float(pool.points.mean()) - (1 - raw_mean)) < 0.01
    not_inverted = load_image_npz(OMNIGLOT, invert=False)
    torch.testing.assert_close(pool.points, 1 - not_inverted.points, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------- pools, splits


def _pool(labels) -> LabeledPool:
    labels = torch.as_tensor(labels, dtype=torch.long)
    return LabeledPool(torch.arange(labels.numel(), dtype=torch.float32).unsqueeze(1), labels)


def test_pool_basics():
    pool = _pool([3, 1, 3, 7])
    assert len(pool) == 4 and pool.point_shape == (1,)
    assert pool.classes.tolist() == [1, 3, 7]
    points, labels = pool
    assert points is pool.points and labels is pool.labels
    by_mask = pool.subset(torch.tensor([True, False, True, False]))
    assert by_mask.labels.tolist() == [3, 3] and by_mask.points[:, 0].tolist() == [0, 2]
    by_index = pool.subset(torch.tensor([3, 0, 3]))
    assert by_index.labels.tolist() == [7, 3, 7] and by_index.points[:, 0].tolist() == [3, 0, 3]
    assert len(pool.subset([])) == 0
    for bad, message in ((torch.tensor([True, False]), "length 2 but the pool has 4"),
                         (torch.tensor([0, 4]), "outside 0..3"),
                         (torch.tensor([0.0]), "dtype"),
                         (torch.zeros(2, 2, dtype=torch.long), "1-D")):
        with pytest.raises(ValueError, match=message):
            pool.subset(bad)


@pytest.mark.parametrize("pool, message", [
    ("not a pool", "must be a LabeledPool"),
    ((torch.zeros(3), torch.zeros(3, dtype=torch.long)), r"expected \(n, \*point_shape\)"),
    ((torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, dtype=torch.long)), "floating-point"),
    ((torch.zeros(3, 2), torch.zeros(3)), "integer torch.Tensor"),
    ((torch.zeros(3, 2), torch.zeros(4, dtype=torch.long)), r"expected labels of shape \(3,\)"),
    ((torch.full((3, 2), float("nan")), torch.zeros(3, dtype=torch.long)), "NaN"),
    ((torch.zeros(3, 2), torch.tensor([0, -2, 1])), "negative"),
])
def test_check_pool_errors(pool, message):
    with pytest.raises(ValueError, match=message):
        check_pool(pool)


def test_check_pool_accepts_pairs():
    pool = check_pool((torch.zeros(3, 2, dtype=torch.float64), torch.tensor([0, 1, 1], dtype=torch.int32)))
    assert isinstance(pool, LabeledPool) and pool.labels.dtype == torch.long
    assert pool.points.dtype == torch.float64


@given(st.data())
def test_class_split_never_leaks(data):
    labels = data.draw(st.lists(st.integers(0, 9), min_size=1, max_size=40))
    pool = _pool(labels)
    present = sorted(set(labels))
    chosen = data.draw(st.lists(st.sampled_from(present), min_size=1, max_size=len(present) + 2))
    train, held = class_split(pool, chosen)
    assert set(train.labels.tolist()) <= set(chosen)
    assert not set(held.labels.tolist()) & set(chosen)
    # Slow reference: the rows of each side, in source order.
    assert train.points[:, 0].long().tolist() == [i for i, c in enumerate(labels) if c in chosen]
    assert held.points[:, 0].long().tolist() == [i for i, c in enumerate(labels) if c not in chosen]
    assert torch.equal(train.labels, torch.tensor([c for c in labels if c in chosen], dtype=torch.long))
    assert len(train) + len(held) == len(pool)
    k = data.draw(st.integers(1, len(present)))
    train_k, held_k = class_split(pool, k)
    assert train_k.classes.tolist() == present[:k]
    assert held_k.classes.tolist() == present[k:]


def test_class_split_errors():
    pool = _pool([0, 2, 2, 5])
    with pytest.raises(ValueError, match=r"not in the pool: \[3, 7\]"):
        class_split(pool, [2, 7, 3])
    with pytest.raises(ValueError, match="the pool has 3 classes"):
        class_split(pool, 4)
    with pytest.raises(ValueError, match="the pool has 3 classes"):
        class_split(pool, 0)
    with pytest.raises(ValueError, match="non-empty"):
        class_split(pool, [])
    with pytest.raises(ValueError, match="int k or a sequence"):
        class_split(pool, "2")
    train, held = class_split(pool, torch.tensor([5, 0]))
    assert train.labels.tolist() == [0, 5] and held.labels.tolist() == [2, 2]


def test_index_split():
    pool = _pool(torch.arange(10) % 3)
    inside, rest = index_split(pool, 2, 5)
    assert inside.points[:, 0].tolist() == [2, 3, 4]
    assert rest.points[:, 0].tolist() == [0, 1, 5, 6, 7, 8, 9]
    assert rest.labels.tolist() == [0, 1, 2, 0, 1, 2, 0]
    first, second = index_split(pool, *parse_range("0:10"))
    assert len(first) == 10 and len(second) == 0
    for start, stop in ((5, 5), (-1, 3), (3, 11), (6, 2)):
        with pytest.raises(ValueError, match="0 <= start < stop <= n = 10"):
            index_split(pool, start, stop)
    with pytest.raises(ValueError, match="start must be an integer"):
        index_split(pool, 1.0, 3)


def test_parse_range():
    assert parse_range("0:5000") == (0, 5000)
    assert parse_range(" 5000 : 10000 ") == (5000, 10000)
    for bad in ("5000", "a:b", "-1:5", "1:2:3", "", "1.5:3", None, (0, 5)):
        with pytest.raises(ValueError, match="'start:stop'"):
            parse_range(bad)
    with pytest.raises(ValueError, match="empty"):
        parse_range("7:3")


# ------------------------------------------------------------------------------------ embeddings

HAS_SAFETENSORS = importlib.util.find_spec("safetensors") is not None


def _embeddings(n: int = 11, d: int = 6, seed: int = 3):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen), torch.randint(0, 5, (n,), generator=gen) * 3


NEEDS_SAFETENSORS = pytest.mark.skipif(not HAS_SAFETENSORS, reason="safetensors not installed")


@pytest.mark.parametrize("suffix", [".npz", ".pt", pytest.param(".safetensors", marks=NEEDS_SAFETENSORS)])
def test_embeddings_round_trip(tmp_path, suffix):
    features, labels = _embeddings()
    target = tmp_path / f"emb{suffix}"
    assert save_embeddings(target, features, labels) == target
    pool = load_embeddings(target)
    assert pool.points.dtype == torch.float32 and pool.labels.dtype == torch.long
    assert torch.equal(pool.points, features) and torch.equal(pool.labels, labels)
    # Overwriting is atomic and leaves no temporary file behind.
    save_embeddings(target, features[:4].double().numpy(), labels[:4].numpy())
    again = load_embeddings(target)
    assert torch.equal(again.points, features[:4]) and torch.equal(again.labels, labels[:4])
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


@pytest.mark.skipif(HAS_SAFETENSORS, reason="safetensors is installed")
def test_safetensors_missing_says_how_to_install(tmp_path):
    features, labels = _embeddings()
    with pytest.raises(ImportError, match="pip install safetensors"):
        save_embeddings(tmp_path / "emb.safetensors", features, labels)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "emb.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(ImportError, match="pip install safetensors"):
        load_embeddings(tmp_path / "emb.safetensors")


def test_embeddings_npy_with_labels_file(tmp_path):
    features, labels = _embeddings()
    np.save(tmp_path / "features.npy", features.double().numpy())
    np.save(tmp_path / "labels.npy", labels.numpy().astype(np.float64))  # whole numbers as floats
    pool = load_embeddings(tmp_path / "features.npy", tmp_path / "labels.npy")
    assert torch.equal(pool.points, features) and torch.equal(pool.labels, labels)
    with pytest.raises(ValueError, match="labels_path is required"):
        load_embeddings(tmp_path / "features.npy")
    save_embeddings(tmp_path / "emb.npz", features, labels)
    with pytest.raises(ValueError, match="labels_path is required .* and only then"):
        load_embeddings(tmp_path / "emb.npz", tmp_path / "labels.npy")
    with pytest.raises(ValueError, match="labels_path .* does not exist"):
        load_embeddings(tmp_path / "features.npy", tmp_path / "nope.npy")


@pytest.mark.parametrize("features, labels, message", [
    (np.zeros((5, 3)), np.arange(4), "have 5 rows but labels have 4 entries"),
    (np.full((3, 2), np.nan), np.arange(3), "NaN or inf"),
    (np.array([[0.0, np.inf]]), np.arange(1), "NaN or inf"),
    (np.zeros((3, 2, 2)), np.arange(3), "2-D"),
    (np.zeros((3, 2)), np.array([0, -1, 1]), "negative"),
    (np.zeros((3, 2)), np.array([0, 0.5, 1]), "non-integer"),
    (np.zeros((3, 2)), np.zeros((3, 1), np.int64), "1-D"),
    (np.zeros((0, 2)), np.zeros(0, np.int64), "no embeddings"),
])
def test_embeddings_errors(tmp_path, features, labels, message):
    np.savez(tmp_path / "bad.npz", features=features, labels=labels)
    with pytest.raises(ValueError, match=message):
        load_embeddings(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match=message):
        save_embeddings(tmp_path / "out.npz", features, labels)
    assert not (tmp_path / "out.npz").exists()


def test_embeddings_file_errors(tmp_path):
    features, labels = _embeddings()
    with pytest.raises(ValueError, match=r"suffix '\.csv'; supported: \.npz, \.pt"):
        load_embeddings(tmp_path / "emb.csv")
    with pytest.raises(ValueError, match=r"suffix '\.npy'"):
        save_embeddings(tmp_path / "emb.npy", features, labels)
    with pytest.raises(ValueError, match="does not exist"):
        save_embeddings(tmp_path / "missing" / "emb.pt", features, labels)
    with pytest.raises(ValueError, match="does not exist"):
        load_embeddings(tmp_path / "emb.pt")
    torch.save([features, labels], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="holds a list; expected a dict"):
        load_embeddings(tmp_path / "list.pt")
    torch.save({"feats": features, "labels": labels}, tmp_path / "keys.pt")
    with pytest.raises(ValueError, match=r"lacks \['features'\]"):
        load_embeddings(tmp_path / "keys.pt")
    np.savez(tmp_path / "keys.npz", feats=features.numpy(), labels=labels.numpy())
    with pytest.raises(ValueError, match=r"lacks \['features'\]"):
        load_embeddings(tmp_path / "keys.npz")


@pytest.mark.parametrize("suffix", [".npz", ".pt", pytest.param(".safetensors", marks=NEEDS_SAFETENSORS)])
def test_corrupt_files(tmp_path, suffix):
    features, labels = _embeddings()
    data = save_embeddings(tmp_path / f"good{suffix}", features, labels).read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
    (tmp_path / f"junk{suffix}").write_bytes(b"not a data file" * 4)
    for name in ("cut", "junk"):
        with pytest.raises(ValueError, match="cannot read"):
            load_embeddings(tmp_path / f"{name}{suffix}")
        if suffix == ".npz":
            with pytest.raises(ValueError, match="cannot read"):
                load_image_npz(tmp_path / f"{name}{suffix}")
    np.save(tmp_path / "single.npy", np.zeros((2, 8, 8)))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    with pytest.raises(ValueError, match="single .npy array"):
        load_image_npz(tmp_path / "single.npz")
