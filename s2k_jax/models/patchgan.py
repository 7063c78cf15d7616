"""S2K patch discriminator: conditional 70×70 PatchGAN (paper §3.3, Fig. 4).

pix2pix ``NLayerDiscriminator(input_nc=2, ndf=64, n_layers=3,
norm_layer=BatchNorm2d)`` applied to the channel concatenation ``(s; k)`` of the
spectrum and a (real or generated) kernel map, as in Eq. 11's ``D(s_i; G(s_i))``.
It returns raw patch scores for the LSGAN least-squares loss (no sigmoid); each
score sees a 70×70 input patch, and a 256×256 input gives 30×30 scores.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from s2k_jax.models import layers


class PatchDiscriminator(nn.Module):
  """Conditional PatchGAN: 4×4 convs, padding 1, LeakyReLU(0.2).

  Layer 0: conv(features, stride 2, bias), no norm. Layers 1..n_layers-1:
  conv(features·min(2^n, 8), stride 2, no bias) + BatchNorm. Then conv(features·
  min(2^n_layers, 8), stride 1, no bias) + BatchNorm, and conv(1, stride 1, bias).

  Attributes:
    features: width of the first conv (pix2pix ndf).
    n_layers: number of stride-2 convs; 3 gives the 70×70 receptive field.
    dtype: computation dtype (None: the input's); parameters, statistics and
      the logits are float32.
  """
  features: int = 64
  n_layers: int = 3
  dtype: Any = None

  @nn.compact
  def __call__(self, spectrum: jax.Array, kernel_map: jax.Array,
               train: bool) -> jax.Array:
    """(B, H, W, Cs), (B, H, W, Ck) → patch logits (B, H', W', 1)."""
    if spectrum.ndim != 4 or spectrum.shape[:3] != kernel_map.shape[:3]:
      raise ValueError(
          f'PatchDiscriminator needs NHWC spectrum and kernel map with the same '
          f'batch and spatial size, got {spectrum.shape} and {kernel_map.shape}.')
    if self.n_layers < 1:
      raise ValueError(f'n_layers must be >= 1 (3 gives the 70x70 PatchGAN), got {self.n_layers}.')
    dtype = self.dtype
    x = jnp.concatenate([spectrum, kernel_map], axis=-1)
    x = x if dtype is None else x.astype(dtype)
    x = layers.conv4x4(self.features, strides=2, use_bias=True, dtype=dtype)(x)
    x = nn.leaky_relu(x, 0.2)
    for n in range(1, self.n_layers + 1):
      stride = 2 if n < self.n_layers else 1
      x = layers.conv4x4(self.features * min(2**n, 8), strides=stride, use_bias=False, dtype=dtype)(x)
      x = layers.batch_norm(train, dtype)(x)
      x = nn.leaky_relu(x, 0.2)
    logits = layers.conv4x4(1, strides=1, use_bias=True, dtype=dtype)(x)
    return logits if dtype is None else logits.astype(jnp.float32)
