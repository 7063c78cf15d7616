"""S2K kernel generator: the pix2pix U-Net (paper §3.3, Fig. 4) and its Fig. 7 variants.

The generator maps the 256×256 amplitude spectrum of an LR image to a
single-channel kernel map in [-1, 1]: an input conv with stride 2, seven
stride-2 4×4 down convs, seven stride-2 4×4 transposed-conv ups with mirror skip
connections, and an output layer back to full size. This is pix2pix
``UnetGenerator(num_downs=8, ngf=64, norm_layer=BatchNorm2d, use_dropout=True)``
(``unet_256``), written as a flat encoder/decoder instead of nested blocks.

Fig. 7 compares ``unet-8-64``, ``unet-5-32`` and the encoder-decoders ``ed-8-64``,
``ed-5-32`` ("E-D denotes U-net removing the mirror skip connection");
`make_generator` builds them by name.
"""
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from s2k_jax.models import layers


def encoder_widths(num_downs: int, features: int, max_mult: int) -> tuple[int, ...]:
  """Output channels of each down conv: features·2^i, capped at features·max_mult."""
  return tuple(features * min(2**i, max_mult) for i in range(num_downs))


class UNet(nn.Module):
  """pix2pix U-Net generator (or, with ``skip=False``, the plain encoder-decoder).

  Down conv i (4×4, stride 2, pad 1, no bias) is preceded by LeakyReLU(0.2)
  except for i = 0 and followed by BatchNorm except for the outermost and the
  innermost. Every up step is ReLU → 4×4 stride-2 transposed conv → BatchNorm
  (→ dropout), then concatenation ``[skip, up]`` with the mirrored encoder
  feature (pix2pix's ``torch.cat([x, model(x)], 1)`` order). The output step is
  ReLU → transposed conv with bias → tanh.

  Dropout (rate ``dropout_rate``, the 'dropout' rng) follows the BatchNorm of the
  up steps whose pix2pix block is neither innermost nor outermost and has both
  widths at the cap ``features·max_mult``: the 3 blocks pix2pix builds with
  ``use_dropout`` in ``unet_256``, none for 5 downs. Unlike pix2pix, which also
  samples dropout at test time, ``train=False`` is deterministic.

  Attributes:
    num_downs: number of stride-2 down convs; inputs must be divisible by
      2**num_downs.
    features: width of the first conv (pix2pix ngf).
    skip: mirror skip connections (U-Net); False gives Fig. 7's E-D.
    max_mult: width cap as a multiple of ``features``.
    out_channels: channels of the tanh output.
    dropout_rate: 0 disables dropout.
    dtype: computation dtype (None: the input's); parameters and BatchNorm
      statistics are float32, and so is the output.
  """
  num_downs: int = 8
  features: int = 64
  skip: bool = True
  max_mult: int = 8
  out_channels: int = 1
  dropout_rate: float = 0.5
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """(B, H, W, C) float → (B, H, W, out_channels) in [-1, 1]."""
    self._check_input(x)
    widths = encoder_widths(self.num_downs, self.features, self.max_mult)
    innermost = self.num_downs - 1
    dtype = self.dtype
    x = x if dtype is None else x.astype(dtype)
    encoded = []
    for i, width in enumerate(widths):
      if i > 0:
        x = nn.leaky_relu(x, 0.2)
      x = layers.conv4x4(width, strides=2, use_bias=False, dtype=dtype)(x)
      if 0 < i < innermost:
        x = layers.batch_norm(train, dtype)(x)
      encoded.append(x)
    # Up step for block i restores the resolution (and width) of encoded[i - 1].
    for i in range(innermost, 0, -1):
      x = nn.relu(x)
      x = layers.ConvTranspose4x4S2(widths[i - 1], use_bias=False, dtype=dtype)(x)
      x = layers.batch_norm(train, dtype)(x)
      if self._has_dropout(i, widths):
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      if self.skip:
        x = jnp.concatenate([encoded[i - 1], x], axis=-1)
    x = nn.relu(x)
    x = layers.ConvTranspose4x4S2(self.out_channels, use_bias=True, dtype=dtype)(x)
    return jnp.tanh(x if dtype is None else x.astype(jnp.float32))

  def _has_dropout(self, block: int, widths: tuple[int, ...]) -> bool:
    cap = self.features * self.max_mult
    middle = 0 < block < self.num_downs - 1
    return self.dropout_rate > 0 and middle and widths[block - 1] == widths[block] == cap

  def _check_input(self, x: jax.Array) -> None:
    if self.num_downs < 1:
      raise ValueError(f'num_downs must be >= 1, got {self.num_downs}.')
    if x.ndim != 4:
      raise ValueError(f'UNet expects NHWC input (B, H, W, C), got shape {x.shape}.')
    factor = 2**self.num_downs
    if x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(
          f'UNet with num_downs={self.num_downs} needs H and W divisible by '
          f'{factor}, got {x.shape[1]}x{x.shape[2]}; resize/crop the spectrum or '
          f'use fewer downs.')


_GENERATOR_NAME = re.compile(r'(unet|ed)-(\d+)-(\d+)')


def make_generator(name: str, **kwargs) -> UNet:
  """Builds a Fig. 7 generator from its name: 'unet-8-64', 'ed-5-32', ...

  The name reads ``arch-downs-features``; ``unet`` keeps the mirror skips,
  ``ed`` removes them. ``kwargs`` go to `UNet` (e.g. ``out_channels``).
  """
  match = _GENERATOR_NAME.fullmatch(name.strip().lower())
  if match is None:
    raise ValueError(f"Unknown generator {name!r}: expected 'unet-<downs>-<features>' "
                     f"or 'ed-<downs>-<features>', e.g. 'unet-8-64' or 'ed-5-32'.")
  arch, num_downs, features = match.groups()
  return UNet(num_downs=int(num_downs), features=int(features), skip=arch == 'unet',
              **kwargs)
