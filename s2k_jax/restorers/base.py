"""What every restorer offers inference: restore LR images given their kernels and noise level (§3.4).

`Restorer` is the one interface the blind SR pipeline, the evaluation and the CLI use, whatever the
network (SFTMD, one family and scale per model; USRNet, any family and scale); each restorer module's
`load` returns one.
"""
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from s2k_jax import degradation
from s2k_jax import images
from s2k_jax import noise


# The noise σ a restorer was trained told (restorer.told_noise): the σ added, or the one read off each LR
# by `noise.estimate_sigmas`, as s2k-sr reads it off a photo (docs/conventions.md, "Told noise").
TOLD_NOISE = ('true', 'estimate')


def told_noise(config: ml_collections.ConfigDict) -> str:
  """restorer.told_noise of a restorer's config; 'true' for restorers without the field (SFTMD, and
  USRNet configs saved before it)."""
  return str(config.restorer.get('told_noise', 'true')) if 'restorer' in config else 'true'


@dataclasses.dataclass(frozen=True)
class Restorer:
  """A loaded restorer.

  Attributes:
    name: display name in reports ('SFTMD').
    config: the training config saved with the model (family, scale, sizes).
    state: what `apply` reads (parameters, a kernel-code basis, ...), replicated over the devices.
    step: training step the parameters come from.
    directory: the checkpoints directory or bundle file it was loaded from.
    apply: jitted (state, lr (B, h, w, 3), kernels (B, k, k), noise_sigma (B,), scale, downsample,
      grid) → SR (B, h·s, w·s, 3); `scale` (one of `scales`), `downsample`
      (`degradation.DOWNSAMPLE_METHODS`) and `grid` (`degradation.LR_GRIDS` or None) are static.
    receptive_field: LR pixels on each side that one output pixel depends on; tiles overlapping by
      this much reproduce the untiled result.
    kernel_size: the largest kernel side the restorer represents without cutting tails.
    takes_noise: whether it reads the noise level (trained with noise).
    scales: the scale factors it restores.
    families: the kernel families it was trained on.
  """
  name: str
  config: ml_collections.ConfigDict
  state: Any
  step: int
  directory: str
  apply: Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]
  receptive_field: int
  kernel_size: int
  takes_noise: bool
  scales: tuple[int, ...]
  families: tuple[str, ...]

  @property
  def scale(self) -> int | None:
    """The one scale of a single-scale restorer, None for one that serves several."""
    return self.scales[0] if len(self.scales) == 1 else None

  @property
  def told_noise(self) -> str:
    """The noise σ it was trained told: 'true' (the σ added) or 'estimate' (read off the LR)."""
    return told_noise(self.config)

  @property
  def family(self) -> str:
    return str(self.config.degradation.family)

  def describe(self, scale: int) -> str:
    """'gaussian kernels, ×4, SFTMD' / 'gaussian, motion, disk kernels, ×2, USRNet'."""
    return f'{", ".join(self.families)} kernels, ×{scale}, {self.name}'

  def resolve_scale(self, scale: int | None) -> int:
    """The scale to restore at: `scale` if this restorer serves it, its only scale if None."""
    if scale is None:
      if self.scale is None:
        raise ValueError(f'the {self.name} restorer in {self.directory} serves scales '
                         f'{", ".join(f"×{s}" for s in self.scales)}: say which one.')
      return self.scale
    if int(scale) not in self.scales:
      raise ValueError(f'the {self.name} restorer in {self.directory} restores '
                       f'{", ".join(f"×{s}" for s in self.scales)}, not ×{scale}.')
    return int(scale)

  def restore(self, lr: Any, kernels: Any, noise_sigma: Any = None, scale: int | None = None, *,
              downsample: str, grid: str | None = None) -> jax.Array:
    """Non-blind SR: LR (B, h, w, 3) in [0, 1] (uint8 is rescaled), kernels (B, k, k) of any odd k,
    noise σ (B,) on the [0, 1] scale (None = 0), scale (None: the only one) → (B, h·s, w·s, 3) in [0, 1].

    `downsample` (required: it decides where every output pixel goes) is how the LR image was made from
    the blurred HR one (Eq. 1's ↓s): 'bicubic' (photos and images shrunk by a resizer, LR pixels at the
    centres of s×s HR blocks; what `pipeline.super_resolve` assumes by default), 'area',
    or 'direct' (LR = (HR ⊗ k)[::s, ::s], the papers' synthetic LR); docs/conventions.md, "Pixel grid".
    `grid` ('centre' or 'direct'; None = the downsampler's) says where the LR pixels sit when that
    differs from the downsampler the kernel was defined with (an estimator's, `pipeline.estimate`)."""
    scale = self.resolve_scale(scale)
    degradation.lr_grid(downsample)  # a known downsampler, or a clear error
    if grid is not None:
      degradation.check_grid(grid)
    degradation.check_kernels(kernels)  # finite, ≥ 0, positive mass, odd square: or a clear error
    if np.shape(kernels)[-1] > self.kernel_size:
      raise ValueError(f'{np.shape(kernels)[-1]}×{np.shape(kernels)[-1]} kernels are larger than the '
                       f'{self.kernel_size}×{self.kernel_size} the {self.name} restorer in {self.directory} '
                       'represents; crop their zero border (kernels.resize_canvas) or use a larger restorer.')
    if noise_sigma is not None:
      held = degradation.held_rows(noise_sigma)  # several processes: the rows held here
      for sigma in np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in held]):
        noise.check_sigma(sigma)
    lr = jnp.asarray(lr)
    if lr.dtype == jnp.uint8:
      lr = images.to_float(lr)
    sigma = jnp.zeros((lr.shape[0],), jnp.float32) if noise_sigma is None else jnp.asarray(noise_sigma)
    return self.apply(self.state, lr, jnp.asarray(kernels, jnp.float32), sigma, scale, downsample, grid)
