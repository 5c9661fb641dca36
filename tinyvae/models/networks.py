"""The convolutional encoder and decoder of ``arch="conv"``: the network of the image VAEs people learn from
(the DCGAN-style stack of the PyTorch VAE examples' successors, pythae, the VQ-VAE papers), for square
one-channel images whose side is divisible by 4 (MNIST's 28 → 14 → 7):

    encoder  x (B, 1, 28, 28) → Conv(1→32, 4, s2, p1) → ReLU → Conv(32→64, 4, s2, p1) → ReLU    (B, 64, 7, 7)
             → flatten → Linear(3136 → out)
    decoder  z → Linear(in → 3136) → ReLU → reshape (B, 64, 7, 7) → ConvT(64→32, 4, s2, p1) → ReLU
             → ConvT(32→1, 4, s2, p1) → logits (B, 1, 28, 28), flattened to (B, 784)

Each 4×4 convolution with stride 2 and padding 1 halves the side exactly ((28 + 2 − 4)/2 + 1 = 14), and each
transposed one doubles it ((14 − 1)·2 − 2 + 4 = 28). The models keep their flat interface: x is (B, x_dim)
and the decoder's output (..., x_dim); the reshapes to images happen here.

The VQ-VAE keeps a spatial code grid instead of a flat latent (van den Oord et al. 2017 Sec. 4.1): its encoder
ends in a 1×1 convolution to D channels, and each of the 7 × 7 positions is one latent vector
(:class:`CodeGridEncoder`, :class:`CodeGridDecoder`).
"""

from __future__ import annotations

import math

import tinyvae.functional as F
from tinyvae import nn

ARCHITECTURES = ("mlp", "conv")
CHANNELS = (32, 64)  # the two convolutions' output channels
KERNEL, STRIDE, PADDING = 4, 2, 1


def image_side(x_dim):
    """The side of the square one-channel image of ``x_dim`` pixels, or None if there is none the conv
    networks can take (a square whose side the two stride-2 convolutions divide: a multiple of 4)."""
    side = math.isqrt(x_dim)
    return side if side * side == x_dim and side % 4 == 0 and side >= 4 else None


def check_conv_arch(config):
    """``arch="conv"`` needs a square one-channel image, its side divisible by 4 (else a ValueError)."""
    if config.arch == "conv" and image_side(config.x_dim) is None:
        raise ValueError(
            f"{type(config).__name__}: arch 'conv' needs square one-channel images whose side is a multiple "
            f"of 4 (28×28 = 784 pixels for MNIST); got x_dim={config.x_dim}"
        )


def _flat(t):
    """(..., C, H, W) → (..., C·H·W): what a Linear layer reads."""
    return t.reshape(*t.shape[:-3], t.shape[-3] * t.shape[-2] * t.shape[-1])


class ConvEncoder(nn.Module):
    """x → ``out_dim`` numbers through the two convolutions and a Linear layer (module docstring). The input
    may carry ``extra`` numbers after the image's side² pixels (the conditional VAE's one-hot label): they
    join the flattened features before the Linear layer, the only layer that can use them everywhere."""

    def __init__(self, side, out_dim, rng, dtype, extra=0):
        super().__init__()
        self.side, self.extra = side, extra
        first, second = CHANNELS
        self.conv1 = nn.Conv2d(1, first, KERNEL, STRIDE, PADDING, rng=rng, dtype=dtype)
        self.conv2 = nn.Conv2d(first, second, KERNEL, STRIDE, PADDING, rng=rng, dtype=dtype)
        features = second * (side // 4) ** 2  # 64 · 7 · 7 = 3136 for MNIST
        self.linear = nn.Linear(features + extra, out_dim, rng=rng, dtype=dtype)

    def forward(self, x):
        pixels = self.side * self.side
        image = x[:, :pixels].reshape(x.shape[0], 1, self.side, self.side)  # (B, 1, 28, 28)
        h = F.relu(self.conv1(image))  # (B, 32, 14, 14)
        h = _flat(F.relu(self.conv2(h)))  # (B, 3136)
        if self.extra:
            h = F.concatenate([h, x[:, pixels:]], axis=-1)  # (B, 3136 + extra)
        return self.linear(h)  # (B, out_dim)


class ConvDecoder(nn.Module):
    """z (..., in_dim) → logits or means (..., side²) through a Linear layer and two transposed convolutions
    (module docstring). Leading axes (the IWAE's k samples) are folded into the batch and restored."""

    def __init__(self, in_dim, side, rng, dtype):
        super().__init__()
        self.side = side
        first, second = CHANNELS
        self.linear = nn.Linear(in_dim, second * (side // 4) ** 2, rng=rng, dtype=dtype)
        self.deconv1 = nn.ConvTranspose2d(second, first, KERNEL, STRIDE, PADDING, rng=rng, dtype=dtype)
        self.deconv2 = nn.ConvTranspose2d(first, 1, KERNEL, STRIDE, PADDING, rng=rng, dtype=dtype)

    def forward(self, z):
        leading = z.shape[:-1]
        quarter = self.side // 4
        h = F.relu(self.linear(z.reshape(-1, z.shape[-1])))  # (N, 3136)
        h = h.reshape(h.shape[0], CHANNELS[1], quarter, quarter)  # (N, 64, 7, 7)
        h = F.relu(self.deconv1(h))  # (N, 32, 14, 14)
        out = self.deconv2(h)  # (N, 1, 28, 28)
        return out.reshape(*leading, self.side * self.side)  # (..., 784)


class CodeGridEncoder(nn.Module):
    """x → the VQ-VAE's grid of (side/4)² latent vectors of size D: the two convolutions, then a 1×1
    convolution to D channels; returns (B, L, D) with L = (side/4)², position by position."""

    def __init__(self, side, code_dim, rng, dtype):
        super().__init__()
        self.side = side
        first, second = CHANNELS
        self.conv1 = nn.Conv2d(1, first, KERNEL, STRIDE, PADDING, rng=rng, dtype=dtype)
        self.conv2 = nn.Conv2d(first, second, KERNEL, STRIDE, PADDING, rng=rng, dtype=dtype)
        self.to_codes = nn.Conv2d(second, code_dim, 1, rng=rng, dtype=dtype)

    def forward(self, x):
        image = x.reshape(x.shape[0], 1, self.side, self.side)  # (B, 1, 28, 28)
        h = F.relu(self.conv2(F.relu(self.conv1(image))))  # (B, 64, 7, 7)
        codes = self.to_codes(h)  # (B, D, 7, 7)
        grid = codes.reshape(codes.shape[0], codes.shape[1], -1)  # (B, D, L)
        return F.transpose(grid, (0, 2, 1))  # (B, L, D)


class CodeGridDecoder(nn.Module):
    """The VQ-VAE's grid of codes (B, L·D), L = (side/4)² positions, → logits (B, side²): a 1×1 convolution
    from D to 64 channels, then the two transposed convolutions."""

    def __init__(self, side, code_dim, rng, dtype):
        super().__init__()
        self.side, self.code_dim = side, code_dim
        first, second = CHANNELS
        self.from_codes = nn.Conv2d(code_dim, second, 1, rng=rng, dtype=dtype)
        self.deconv1 = nn.ConvTranspose2d(second, first, KERNEL, STRIDE, PADDING, rng=rng, dtype=dtype)
        self.deconv2 = nn.ConvTranspose2d(first, 1, KERNEL, STRIDE, PADDING, rng=rng, dtype=dtype)

    def forward(self, z):
        quarter = self.side // 4
        grid = z.reshape(z.shape[0], quarter * quarter, self.code_dim)  # (B, L, D)
        h = F.transpose(grid, (0, 2, 1)).reshape(z.shape[0], self.code_dim, quarter, quarter)  # (B, D, 7, 7)
        h = F.relu(self.from_codes(h))  # (B, 64, 7, 7)
        h = F.relu(self.deconv1(h))  # (B, 32, 14, 14)
        return self.deconv2(h).reshape(z.shape[0], self.side * self.side)  # (B, 784)


def conv_size_lower_bounds(side, latent_numbers):
    """``Model.size_lower_bounds`` of a model with the conv encoder: the two convolutions' weights and the
    Linear layer from the flattened features to at least ``latent_numbers`` outputs."""
    first, second = CHANNELS
    arrays = [first * KERNEL**2, first * second * KERNEL**2, second * (side // 4) ** 2 * latent_numbers]
    return max(arrays), sum(arrays)


__all__ = [
    "ARCHITECTURES",
    "CodeGridDecoder",
    "CodeGridEncoder",
    "ConvDecoder",
    "ConvEncoder",
    "check_conv_arch",
    "conv_size_lower_bounds",
    "image_side",
]
