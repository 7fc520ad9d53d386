"""Batched image and embedding augmentations against scipy and slow per-pixel references."""

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import ndimage

from gfncp_pyro.data.augment import (
    EmbeddingAugment,
    ImageAugment,
    _affine_theta,
    _warp,
    augment_embeddings,
    augment_images,
)

IDENTITY = ImageAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), rotation=0.0, brightness=0.0,
                        contrast=0.0, blur_prob=0.0, noise_std=0.0)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def slow_warp(image, area, ratio, centre, angle):
    """Python-loop reference of the crop + rotation in pixel coordinates: output pixel ``p``
    (offset from the image centre) reads the input at ``centre + shift + S R(angle) p``, where
    ``S = diag(sqrt(area ratio), sqrt(area / ratio))`` and the y axis points down; bilinear, zero
    outside the image."""
    h, w = image.shape
    sx, sy = min(math.sqrt(area * ratio), 1.0), min(math.sqrt(area / ratio), 1.0)
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    shift_x, shift_y = centre[0] * (1 - sx) * w / 2, centre[1] * (1 - sy) * h / 2
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            px, py = j - (w - 1) / 2, i - (h - 1) / 2
            x = (w - 1) / 2 + shift_x + sx * (cos * px - sin * py)
            y = (h - 1) / 2 + shift_y + sy * (sin * px + cos * py)
            x0, y0 = math.floor(x), math.floor(y)
            value = 0.0
            for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                    if 0 <= yy < h and 0 <= xx < w:
                        value += wy * wx * image[yy, xx]
            out[i, j] = value
    return out


def theta_for(area, ratio, centre, angle, h, w):
    f64 = dict(dtype=torch.float64)
    return _affine_theta(torch.tensor([area], **f64), torch.tensor([math.log(ratio)], **f64),
                         torch.tensor([centre], **f64), torch.tensor([angle], **f64), h, w)


# ----------------------------------------------------------------------------- configs

@pytest.mark.parametrize("kwargs", [
    dict(crop_scale=(0.0, 1.0)), dict(crop_scale=(0.8, 0.6)), dict(crop_scale=(0.5, 1.5)),
    dict(crop_ratio=(0.0, 1.0)), dict(crop_ratio=(1.0,)), dict(rotation=-1.0), dict(rotation=float("nan")),
    dict(brightness=1.5), dict(contrast=-0.1), dict(blur_prob=2.0), dict(blur_sigma=(0.0, 1.0)),
    dict(noise_std=-0.1), dict(noise_std="a"),
])
def test_image_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ImageAugment(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(noise_std=-1.0), dict(dropout=1.0), dict(dropout=-0.1)])
def test_embedding_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        EmbeddingAugment(**kwargs)


@pytest.mark.parametrize("config", [ImageAugment(), ImageAugment(crop_scale=[0.3, 0.9], rotation=3),
                                    EmbeddingAugment(), EmbeddingAugment(noise_std=0.5, dropout=0)])
def test_config_json_round_trip(config):
    d = json.loads(json.dumps(config.to_dict()))
    assert type(config).from_dict(d) == config
    assert all(not isinstance(v, tuple) for v in d.values())
    assert isinstance(ImageAugment(crop_scale=[0.3, 0.9]).crop_scale, tuple)


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown keys"):
        ImageAugment.from_dict({"rotate": 3})


# ----------------------------------------------------------------------------- images

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fill", ["zeros", "ones", "random"])
def test_images_stay_in_unit_interval(dtype, fill):
    shape = (64, 2, 12, 10)
    fills = {"zeros": torch.zeros(shape), "ones": torch.ones(shape), "random": torch.rand(shape, generator=gen(1))}
    images = fills[fill].to(dtype)
    strong = ImageAugment(crop_scale=(0.2, 1.0), rotation=90, brightness=1.0, contrast=1.0, blur_prob=0.5,
                          noise_std=0.5)
    for config in (ImageAugment(), strong):
        out = augment_images(images, config, gen())
        assert out.shape == images.shape and out.dtype == dtype and out.device == images.device
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        assert bool(torch.isfinite(out).all())


def test_images_deterministic_given_seed():
    images = torch.rand(16, 1, 28, 28, generator=gen(1))
    a = augment_images(images, ImageAugment(), gen(5))
    b = augment_images(images, ImageAugment(), gen(5))
    c = augment_images(images, ImageAugment(), gen(6))
    assert torch.equal(a, b)
    assert (a - c).abs().amax(dim=(1, 2, 3)).min() > 1e-3  # every image changed with the seed


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_images_identity_when_all_strengths_zero(dtype):
    images = torch.rand(8, 3, 9, 13, generator=gen(2), dtype=dtype)
    out = augment_images(images, IDENTITY, gen())
    assert torch.allclose(out, images, atol=1e-6, rtol=0)


@pytest.mark.parametrize("angle", [30.0, -47.0, 90.0, 12.5])
@pytest.mark.parametrize("shape", [(21, 21), (15, 23)])
def test_rotation_matches_scipy_rotate(angle, shape):
    """Positive angles turn the content counter-clockwise, as ``scipy.ndimage.rotate``."""
    image = torch.rand(1, 1, *shape, generator=gen(3), dtype=torch.float64)
    theta = theta_for(1.0, 1.0, (0.0, 0.0), angle, *shape)
    out = _warp(image, theta)[0, 0].numpy()
    ref = ndimage.rotate(image[0, 0].numpy(), angle, reshape=False, order=1, mode="constant", cval=0.0)
    # compare where all four bilinear neighbours lie inside (scipy's border handling differs)
    interior = _warp(torch.ones_like(image), theta)[0, 0].numpy() > 1 - 1e-12
    assert interior.sum() > 0.4 * interior.size
    assert np.abs(out - ref)[interior].max() < 1e-9


def test_rotation_direction_is_counter_clockwise():
    image = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    image[0, 0, 2, 4] = 1.0  # middle of the right edge
    out = _warp(image, theta_for(1.0, 1.0, (0.0, 0.0), 90.0, 5, 5))
    assert float(out[0, 0, 0, 2]) == pytest.approx(1.0)  # now at the middle of the top edge


@given(area=st.floats(0.1, 1.0), ratio=st.floats(0.5, 2.0), cx=st.floats(-1, 1), cy=st.floats(-1, 1),
       angle=st.floats(-180, 180))
def test_crop_and_rotation_match_slow_reference(area, ratio, cx, cy, angle):
    image = torch.rand(1, 1, 7, 9, generator=gen(4), dtype=torch.float64)
    out = _warp(image, theta_for(area, ratio, (cx, cy), angle, 7, 9))[0, 0].numpy()
    ref = slow_warp(image[0, 0].numpy(), area, ratio, (cx, cy), angle)
    assert np.abs(out - ref).max() < 1e-9


@pytest.mark.parametrize("sigma", [0.4, 1.0, 1.7])
def test_blur_matches_scipy_gaussian_filter(sigma):
    config = ImageAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), rotation=0.0, brightness=0.0,
                          contrast=0.0, blur_prob=1.0, blur_sigma=(sigma, sigma), noise_std=0.0)
    images = torch.rand(3, 2, 16, 19, generator=gen(5), dtype=torch.float64)
    out = augment_images(images, config, gen())
    for m in range(3):
        for c in range(2):
            ref = ndimage.gaussian_filter(images[m, c].numpy(), sigma, mode="constant", cval=0.0,
                                          radius=math.ceil(4 * sigma))
            assert np.abs(out[m, c].numpy() - ref)[3:-3, 3:-3].max() < 1e-9


def test_blur_sigma_varies_per_image_and_probability():
    config = ImageAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), rotation=0.0, brightness=0.0,
                          contrast=0.0, blur_prob=0.5, blur_sigma=(0.5, 1.5), noise_std=0.0)
    images = torch.zeros(1000, 1, 15, 15, dtype=torch.float64)
    images[:, 0, 7, 7] = 1.0  # a point: the blurred centre value is 1 / (2 pi sigma^2) approx
    out = augment_images(images, config, gen(6))
    centre = out[:, 0, 7, 7]
    blurred = centre < 1.0 - 1e-9
    assert abs(float(blurred.double().mean()) - 0.5) < 5 * math.sqrt(0.25 / 1000)
    assert torch.allclose(out[~blurred], images[~blurred], atol=1e-12, rtol=0)
    sigma = torch.sqrt(1.0 / (2 * math.pi * centre[blurred]))  # close to sigma for sigma >= 0.5
    assert 0.45 < float(sigma.min()) < 0.6 and 1.4 < float(sigma.max()) < 1.6


def test_brightness_and_contrast_factors():
    images = 0.2 + 0.4 * torch.rand(500, 1, 6, 6, generator=gen(7), dtype=torch.float64)  # no clamping
    base = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), rotation=0.0, blur_prob=0.0, noise_std=0.0)
    out = augment_images(images, ImageAugment(brightness=0.2, contrast=0.0, **base), gen())
    factor = out / images
    per_image = factor.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), atol=1e-12)
    assert 0.8 <= float(factor.min()) < 0.82 and 1.18 < float(factor.max()) <= 1.2
    out = augment_images(images, ImageAugment(brightness=0.0, contrast=0.2, **base), gen())
    dev_in = (images - images.mean(dim=(1, 2, 3), keepdim=True)).flatten(1)
    dev_out = (out - out.mean(dim=(1, 2, 3), keepdim=True)).flatten(1)
    ratio = (dev_out * dev_in).sum(1) / (dev_in * dev_in).sum(1)
    assert torch.allclose(dev_out, ratio.unsqueeze(1) * dev_in, atol=1e-12)
    assert 0.8 <= float(ratio.min()) < 0.82 and 1.18 < float(ratio.max()) <= 1.2


def test_noise_scale():
    images = torch.full((100, 1, 20, 20), 0.5, dtype=torch.float64)
    config = ImageAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), rotation=0.0, brightness=0.0,
                          contrast=0.0, blur_prob=0.0, noise_std=0.05)
    noise = augment_images(images, config, gen(8)) - images
    n = noise.numel()
    assert abs(float(noise.mean())) < 5 * 0.05 / math.sqrt(n)
    assert abs(float(noise.std()) / 0.05 - 1) < 5 / math.sqrt(2 * n)


@pytest.mark.parametrize("images, match", [
    (torch.rand(2, 28, 28), "images must be a floating-point"),
    (torch.zeros(2, 1, 4, 4, dtype=torch.uint8), "images must be a floating-point"),
    (torch.full((2, 1, 4, 4), 1.5), r"values in \[0, 1\]"),
    (torch.full((2, 1, 4, 4), -0.1), r"values in \[0, 1\]"),
    (torch.full((2, 1, 4, 4), float("nan")), "NaN"),
    (torch.zeros(2, 1, 0, 4), "C, H, W >= 1"),
])
def test_images_reject_bad_input(images, match):
    with pytest.raises(ValueError, match=match):
        augment_images(images, ImageAugment(), gen())


def test_images_empty_batch():
    images = torch.zeros(0, 1, 5, 5, dtype=torch.float64)
    out = augment_images(images, ImageAugment(), gen())
    assert out.shape == images.shape and out.dtype == images.dtype


def test_images_reject_bad_config_and_generator():
    images = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match="config must be an ImageAugment"):
        augment_images(images, EmbeddingAugment(), gen())
    with pytest.raises(ValueError, match="generator must be a torch.Generator, an int seed or None"):
        augment_images(images, ImageAugment(), "seed")
    # the RNG rule: an int is an explicit stream, None is torch's global RNG
    assert torch.equal(augment_images(images, ImageAugment(), 3), augment_images(images, ImageAugment(), gen(3)))
    torch.manual_seed(5)
    first = augment_images(images, ImageAugment())
    torch.manual_seed(5)
    assert torch.equal(first, augment_images(images, ImageAugment()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_images_on_cuda_deterministic_and_in_range():
    images = torch.rand(64, 1, 28, 28, generator=gen(9)).cuda()
    a = augment_images(images, ImageAugment(), gen(1))
    b = augment_images(images, ImageAugment(), gen(1))
    assert a.device == images.device and torch.equal(a, b)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    cpu = augment_images(images.cpu(), ImageAugment(noise_std=0.0), gen(1))
    gpu = augment_images(images, ImageAugment(noise_std=0.0), gen(1))
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-4)  # same parameters drawn on the CPU


# ----------------------------------------------------------------------------- embeddings

def test_embeddings_deterministic_given_seed():
    features = torch.randn(50, 16, generator=gen(1))
    a = augment_embeddings(features, EmbeddingAugment(), gen(3))
    assert torch.equal(a, augment_embeddings(features, EmbeddingAugment(), gen(3)))
    assert not torch.equal(a, augment_embeddings(features, EmbeddingAugment(), gen(4)))
    assert a.shape == features.shape and a.dtype == features.dtype


def test_embedding_dropout_fraction_and_scaling():
    p = 0.3
    features = torch.randn(200, 500, generator=gen(2), dtype=torch.float64) + 5.0  # no exact zeros
    out = augment_embeddings(features, EmbeddingAugment(noise_std=0.0, dropout=p), gen(5))
    dropped = out == 0
    n = dropped.numel()
    assert abs(float(dropped.double().mean()) - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert torch.allclose(out[~dropped], features[~dropped] / (1 - p), atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_embedding_noise_relative_to_rms(dtype):
    std, d = 0.2, 400
    scales = torch.logspace(-2, 2, 100, dtype=dtype).unsqueeze(1)
    features = scales * torch.randn(100, d, generator=gen(3), dtype=dtype)
    out = augment_embeddings(features, EmbeddingAugment(noise_std=std, dropout=0.0), gen(6))
    assert out.dtype == dtype
    rms = features.pow(2).mean(1, keepdim=True).sqrt()
    z = ((out - features) / rms).double()
    assert abs(float(z.std()) / std - 1) < 5 / math.sqrt(2 * z.numel())
    per_row = z.std(1) / std  # each row's noise scales with its own RMS
    assert float((per_row - 1).abs().max()) < 5 / math.sqrt(2 * d)


def test_embeddings_reject_bad_input():
    with pytest.raises(ValueError, match=r"features must be a floating-point tensor of shape \(M, d\)"):
        augment_embeddings(torch.randn(5), EmbeddingAugment(), gen())
    with pytest.raises(ValueError, match="NaN or infinite"):
        augment_embeddings(torch.tensor([[1.0, float("nan")]]), EmbeddingAugment(), gen())
    with pytest.raises(ValueError, match="config must be an EmbeddingAugment"):
        augment_embeddings(torch.randn(2, 3), ImageAugment(), gen())
