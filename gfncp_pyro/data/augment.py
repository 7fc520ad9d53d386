"""Batched data augmentations for instance discrimination (Sec. 4.3 and App. A.1 in [1]).

A training cluster is one anchor from the pool plus augmentations of it (Sec. 5.1 in [1]).
For images: a random resized crop with a random aspect ratio and a random rotation, applied as
ONE affine resampling of the whole batch (``affine_grid`` + bilinear ``grid_sample``, zeros
outside the image = background), then brightness and contrast jitter, a Gaussian blur of
per-image width and additive Gaussian pixel noise, clamped to ``[0, 1]`` in floating point (never
wrapped). For embedding vectors (e.g. DINO features of ImageNet): Gaussian noise relative to
each vector's scale and dropout of features.

Randomness: every per-image parameter is drawn on the CPU from the given CPU
``torch.Generator`` (in float64) and moved to the images' device. Per-pixel (per-feature) noise
is drawn with that generator on a CPU device; on another device a device generator is seeded
with an integer drawn from the CPU generator, so the output is a deterministic function of the
generator's state on every device (though not the same on different devices).

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._checks import finite_float as _finite
from .._checks import float_in_range as _in_range
from .._checks import make_generator
from ..jsonable import JsonDataclass

__all__ = ["ImageAugment", "EmbeddingAugment", "augment_images", "augment_embeddings"]


def _interval(value, name: str, low: float, high: float) -> tuple[float, float]:
    """``(lo, hi)`` as floats with ``low < lo <= hi <= high``."""
    try:
        lo, hi = (_finite(v, name) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (lo, hi) of finite numbers, got {value!r}") from None
    if not low < lo <= hi <= high:
        raise ValueError(f"{name} must satisfy {low} < lo <= hi <= {high}, got {value!r}")
    return lo, hi


@dataclass(frozen=True)
class ImageAugment(JsonDataclass):
    """Strengths of the image augmentations; the defaults suit 28x28 digits or characters.

    :param crop_scale: range of the crop's area as a fraction of the image, ``0 < lo <= hi <= 1``.
    :param crop_ratio: range of the crop's aspect ratio (width / height); drawn log-uniformly.
    :param rotation: maximal absolute rotation in degrees (uniform in ``[-rotation, rotation]``);
        positive angles turn the content counter-clockwise as displayed (row 0 at the top).
    :param brightness: pixel values are multiplied by a factor uniform in ``1 +- brightness``.
    :param contrast: deviations from the image's mean are scaled by a factor uniform in
        ``1 +- contrast``.
    :param blur_prob: probability that an image is blurred.
    :param blur_sigma: range of the blur's standard deviation in pixels; the kernel is truncated
        at ``ceil(4 * blur_sigma[1])`` pixels.
    :param noise_std: standard deviation of the additive Gaussian pixel noise.
    """

    crop_scale: tuple[float, float] = (0.6, 1.0)
    crop_ratio: tuple[float, float] = (0.8, 1.25)
    rotation: float = 15.0
    brightness: float = 0.2
    contrast: float = 0.2
    blur_prob: float = 0.2
    blur_sigma: tuple[float, float] = (0.1, 1.0)
    noise_std: float = 0.03

    def __post_init__(self) -> None:
        checked = {
            "crop_scale": _interval(self.crop_scale, "crop_scale", 0.0, 1.0),
            "crop_ratio": _interval(self.crop_ratio, "crop_ratio", 0.0, math.inf),
            "rotation": _in_range(self.rotation, "rotation", 0.0, 180.0),
            "brightness": _in_range(self.brightness, "brightness", 0.0, 1.0),
            "contrast": _in_range(self.contrast, "contrast", 0.0, 1.0),
            "blur_prob": _in_range(self.blur_prob, "blur_prob", 0.0, 1.0),
            "blur_sigma": _interval(self.blur_sigma, "blur_sigma", 0.0, 100.0),
            "noise_std": _in_range(self.noise_std, "noise_std", 0.0, math.inf),
        }
        for key, value in checked.items():
            object.__setattr__(self, key, value)


@dataclass(frozen=True)
class EmbeddingAugment(JsonDataclass):
    """Strengths of the embedding augmentations: Gaussian noise and feature dropout.

    :param noise_std: noise standard deviation relative to each vector's RMS value
        ``sqrt(mean_j x_j^2)``: ``x + noise_std * rms(x) * eps`` with ``eps ~ N(0, I)``.
    :param dropout: probability that a feature is zeroed, ``0 <= dropout < 1``; the kept
        features are scaled by ``1 / (1 - dropout)`` (inverted dropout, mean preserving).
    """

    noise_std: float = 0.1
    dropout: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise_std", _in_range(self.noise_std, "noise_std", 0.0, math.inf))
        object.__setattr__(self, "dropout", _in_range(self.dropout, "dropout", 0.0, 1.0, high_open=True))


def _check_generator(generator) -> torch.Generator:
    """The package's RNG rule (:func:`~gfncp_pyro._checks.make_generator`: ``None`` is torch's
    global RNG, an ``int`` a fresh seeded stream), restricted to CPU generators."""
    generator = make_generator(generator)
    if generator.device.type != "cpu":
        raise ValueError(
            f"generator must be a CPU torch.Generator (or an int seed, or None for torch's global RNG), "
            f"got one on {generator.device}; pass torch.Generator().manual_seed(seed)"
        )
    return generator


def _device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """``generator`` itself on the CPU, else a generator on ``device`` seeded from it."""
    if device.type == "cpu":
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


def _describe(value) -> str:
    """``dtype ..., shape (...)`` of a tensor, else its type (for error messages)."""
    if isinstance(value, torch.Tensor):
        return f"dtype {value.dtype}, shape {tuple(value.shape)}"
    return repr(type(value))


def _check_float_tensor(value, name: str, ndim: int, shape_text: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.ndim != ndim:
        raise ValueError(f"{name} must be a floating-point tensor of shape {shape_text}, got {_describe(value)}")
    return value


def _affine_theta(area: torch.Tensor, log_ratio: torch.Tensor, centre: torch.Tensor,
                  angle: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``theta`` ``(M, 2, 3)`` for ``F.affine_grid`` (normalised coordinates, output -> input).

    The crop has width fraction ``sqrt(area * ratio)`` and height fraction
    ``sqrt(area / ratio)`` (each capped at 1), its centre ``centre`` ``(M, 2)`` in units of the
    room left, ``[-1, 1]``; the output is the crop rotated by ``angle`` ``(M,)`` degrees,
    counter-clockwise as displayed, about the image centre, in pixel space (so non-square images
    rotate without shear).
    """
    ratio = torch.exp(log_ratio)
    scale_x = torch.sqrt(area * ratio).clamp(max=1.0)
    scale_y = torch.sqrt(area / ratio).clamp(max=1.0)
    radians = torch.deg2rad(angle)
    cos, sin = torch.cos(radians), torch.sin(radians)
    # output pixel offset p (from the centre, y down) reads the input at shift + S R(angle) p
    return torch.stack([
        torch.stack([scale_x * cos, -scale_x * sin * (height / width), centre[:, 0] * (1 - scale_x)], -1),
        torch.stack([scale_y * sin * (width / height), scale_y * cos, centre[:, 1] * (1 - scale_y)], -1),
    ], dim=1)


def _warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Bilinear resampling of ``images`` ``(M, C, H, W)`` under ``theta`` ``(M, 2, 3)``, zeros
    outside (pixel centres, ``align_corners=False``).

    The sampling grid is ``F.affine_grid``'s, built by broadcasting (``affine_grid``'s batched
    matrix product of ``(H W, 3)`` by ``(3, 2)`` per image is several times slower on CPU).
    """
    height, width = images.shape[-2:]
    options = {"device": images.device, "dtype": images.dtype}
    x = ((2 * torch.arange(width, **options) + 1) / width - 1).view(1, 1, width)
    y = ((2 * torch.arange(height, **options) + 1) / height - 1).view(1, height, 1)
    t = theta.reshape(-1, 6, 1, 1).unbind(1)
    grid = torch.empty((images.shape[0], height, width, 2), **options)
    torch.add(t[0] * x + t[2], t[1] * y, out=grid[..., 0])  # one full-size operation per axis
    torch.add(t[3] * x + t[5], t[4] * y, out=grid[..., 1])
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _blur(images: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Separable Gaussian blur of each image ``(M, C, H, W)`` with its own ``sigma`` ``(M,)``
    (pixels), kernel taps ``-radius..radius``, zeros outside.

    Each axis is a sum over the ``2 radius + 1`` taps of shifted images weighted per image (a
    loop over taps, vectorised over images and pixels; a grouped convolution would need a new
    kernel for every number of blurred images).
    """
    taps = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.softmax(-0.5 * (taps / sigma.unsqueeze(-1)) ** 2, dim=-1)  # normalised (M, 2r+1)
    kernel = kernel.view(-1, 1, 1, 1, 2 * radius + 1)
    height, width = images.shape[-2:]
    padded = F.pad(images, (radius, radius, 0, 0))
    rows = sum(kernel[..., t] * padded[..., t:t + width] for t in range(2 * radius + 1))
    padded = F.pad(rows, (0, 0, radius, radius))
    return sum(kernel[..., t] * padded[..., t:t + height, :] for t in range(2 * radius + 1))


def augment_images(images: torch.Tensor, config: ImageAugment,
                   generator: torch.Generator | int | None = None) -> torch.Tensor:
    """Independent random augmentations of a batch of images (Sec. 4.3 in [1]).

    Steps, all batched (no loop over images): random resized crop + aspect ratio + rotation as
    one affine resampling (zeros = background outside the image); brightness
    ``x <- b x``; contrast ``x <- m + c (x - m)`` with ``m`` the image's mean (clamped to
    ``[0, 1]`` after each); Gaussian blur with probability ``blur_prob``; additive Gaussian noise;
    a final clamp to ``[0, 1]``.

    :param torch.Tensor images: ``(M, C, H, W)`` floating point, values in ``[0, 1]``, any device.
    :param ImageAugment config: the augmentation strengths.
    :param generator: a CPU generator (see the module's note on devices), an ``int`` seed, or
        ``None`` (torch's global RNG).
    :returns: ``(M, C, H, W)`` on the images' device and in their dtype, values in ``[0, 1]``.
    :raises ValueError: on a bad shape or dtype, values outside ``[0, 1]`` or NaN, a bad config
        or a non-CPU generator.
    """
    images = _check_float_tensor(images, "images", 4, "(M, C, H, W)")
    if not isinstance(config, ImageAugment):
        raise ValueError(f"config must be an ImageAugment, got {type(config).__name__}")
    generator = _check_generator(generator)
    if min(images.shape[1:]) < 1:
        raise ValueError(f"images must have C, H, W >= 1, got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        return images.clone()
    low, high = torch.aminmax(images)
    if bool(torch.isnan(low) | torch.isnan(high)):
        raise ValueError("images contain NaN; pass finite pixel values in [0, 1]")
    if float(low) < 0.0 or float(high) > 1.0:
        raise ValueError(
            f"images must have values in [0, 1], got [{float(low)}, {float(high)}]; scale "
            "them (e.g. uint8 pixels: images.float() / 255)"
        )
    m, _, height, width = images.shape
    dtype, device = images.dtype, images.device
    u = torch.rand((m, 9), generator=generator, dtype=torch.float64)
    area = config.crop_scale[0] + (config.crop_scale[1] - config.crop_scale[0]) * u[:, 0]
    log_lo, log_hi = math.log(config.crop_ratio[0]), math.log(config.crop_ratio[1])
    log_ratio = log_lo + (log_hi - log_lo) * u[:, 1]
    centre = 2.0 * u[:, 2:4] - 1.0
    angle = config.rotation * (2.0 * u[:, 4] - 1.0)
    theta = _affine_theta(area, log_ratio, centre, angle, height, width)
    out = _warp(images, theta.to(device=device, dtype=dtype))

    shape = (m, 1, 1, 1)
    bright = (1.0 + config.brightness * (2.0 * u[:, 5] - 1.0)).to(device=device, dtype=dtype)
    out = (out * bright.view(shape)).clamp_(0.0, 1.0)
    contrast = (1.0 + config.contrast * (2.0 * u[:, 6] - 1.0)).to(device=device, dtype=dtype)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (mean + contrast.view(shape) * (out - mean)).clamp_(0.0, 1.0)

    blurred = (u[:, 7] < config.blur_prob).nonzero().squeeze(-1)
    if blurred.numel():
        lo, hi = config.blur_sigma
        sigma = (lo + (hi - lo) * u[blurred, 8]).to(device=device, dtype=dtype)
        index = blurred.to(device)
        out = out.index_copy(0, index, _blur(out.index_select(0, index), sigma, math.ceil(4.0 * hi)))

    if config.noise_std > 0:
        noise = torch.randn(out.shape, generator=_device_generator(generator, device), dtype=dtype, device=device)
        out = out.add_(noise, alpha=config.noise_std)
    return out.clamp_(0.0, 1.0)


def augment_embeddings(features: torch.Tensor, config: EmbeddingAugment,
                       generator: torch.Generator | int | None = None) -> torch.Tensor:
    """Independent random augmentations of embedding vectors (Sec. 4.3 in [1]).

    ``y = keep / (1 - p) * (x + noise_std * rms(x) * eps)`` with ``eps ~ N(0, I)``, ``rms(x) =
    sqrt(mean_j x_j^2)`` per vector and ``keep ~ Bernoulli(1 - p)`` per feature, so a dropped
    feature is exactly zero.

    :param torch.Tensor features: ``(M, d)`` floating point, finite, any device.
    :param EmbeddingAugment config: the augmentation strengths.
    :param generator: a CPU generator (see the module's note on devices), an ``int`` seed, or
        ``None`` (torch's global RNG).
    :returns: ``(M, d)`` on the features' device and in their dtype.
    :raises ValueError: on a bad shape or dtype, non-finite values, a bad config or a non-CPU
        generator.
    """
    features = _check_float_tensor(features, "features", 2, "(M, d)")
    if not isinstance(config, EmbeddingAugment):
        raise ValueError(f"config must be an EmbeddingAugment, got {type(config).__name__}")
    generator = _check_generator(generator)
    if not bool(torch.isfinite(features).all()):
        raise ValueError("features contain NaN or infinite values; pass finite embeddings")
    device_generator = _device_generator(generator, features.device)
    options = {"generator": device_generator, "dtype": features.dtype, "device": features.device}
    out = features
    if config.noise_std > 0:
        rms = features.pow(2).mean(dim=-1, keepdim=True).sqrt()
        out = out + config.noise_std * rms * torch.randn(features.shape, **options)
    if config.dropout > 0:
        keep = torch.rand(features.shape, **options) >= config.dropout
        out = out * keep.to(out.dtype) / (1.0 - config.dropout)
    return out
