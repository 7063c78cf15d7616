"""Kernel-family classifier: the LR amplitude spectrum (paper §3.3's generator input) → which family's
estimator to run. Not in the paper, which trains one estimator per family and leaves the choice to the
user; one network for every family measured worse than the per-family ones at this project's size
(docs/results.md §5), so `s2k-sr --family auto` recognises the family instead (docs/conventions.md,
"Family recognition").

A plain convolutional encoder: per level a 3×3 convolution and a stride-2 3×3 convolution, each with
GroupNorm (no batch statistics: a photo is classified alone) and GELU; then the mean and the maximum
of the last features over the map (a family's signature, e.g. a disk's dark rings or a motion blur's
streaks, may sit anywhere in the spectrum), a hidden layer and the logits.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class FamilyClassifier(nn.Module):
  """(B, S, S, 1) spectra → (B, num_families) float32 logits.

  Attributes:
    features: channels per level; each level halves the map.
    hidden: width of the hidden dense layer.
    num_families: number of logits (kernels.FAMILIES).
    groups: GroupNorm groups (divides every entry of `features`).
    dtype: computation dtype (None: the input's); parameters and logits are float32.
  """
  features: Sequence[int] = (16, 32, 64, 128)
  hidden: int = 64
  num_families: int = 3
  groups: int = 8
  dtype: Any = None

  @nn.compact
  def __call__(self, spectra: jax.Array) -> jax.Array:
    if spectra.ndim != 4 or spectra.shape[-1] != 1:
      raise ValueError(f'the family classifier reads (B, S, S, 1) spectra, got shape {spectra.shape}.')
    x = spectra
    for width in self.features:
      for stride in (1, 2):
        x = nn.Conv(width, (3, 3), strides=stride, dtype=self.dtype)(x)
        x = nn.gelu(nn.GroupNorm(num_groups=self.groups, dtype=self.dtype)(x))
    pooled = jnp.concatenate([jnp.mean(x, axis=(1, 2)), jnp.max(x, axis=(1, 2))], axis=-1)
    hidden = nn.gelu(nn.Dense(self.hidden, dtype=self.dtype)(pooled))
    return nn.Dense(self.num_families, dtype=self.dtype)(hidden).astype(jnp.float32)
