"""USRNet: a deep-unfolding non-blind restorer (Zhang, Van Gool & Timofte, CVPR 2020), the kernel-exact
restorer S2K's estimates go into (paper §3.4; DPSR, the paper's ref. [34], is its plug-and-play form).

The degradation y = (x ⊗ k)↓s + n (paper Eq. 1, direct s-fold subsampling) is inverted by alternating,
for `iterations` rounds (USRNet Eq. 6–7):

    data step   x_i = argmin_x ‖y − (x ⊗ k)↓s‖² + α_i ‖x − z_{i−1}‖²   (closed form, Fourier domain)
    prior step  z_i = x_i + ResUNet(x_i, β_i)                          (a learned denoiser)

starting from z_0 = bicubic upsampling of y on its grid (USRNet starts from nearest-neighbour
upsampling, which cannot be placed on the direct grid without a bias at even scales). A small hyper-network maps (noise σ, scale s) to
the per-round α_i and β_i, so one set of weights serves every kernel, kernel size, scale and noise level.

The data step (`data_step`) is the analytic solution of Zhao et al. (TIP 2016) for circular
convolution: with B the blur, S the s-fold subsampling, F the 2-D DFT and ⇓s the mean of the s×s
blocks of a spectrum (the DFT of S·Sᵀ-aliasing),

    x = F⁻¹[ (R − B̄ ⊙ ((B ⊙ R)⇓s / (|B|²⇓s + α))⇑s) / α ],   R = B̄ ⊙ F(Sᵀy) + α F(z),

where ⇑s tiles an LR-sized spectrum s×s times. Blur here is cross-correlation with k, as
`degradation.blur` (PyTorch `conv2d` convention), so B = conj(F(k centred at the origin)).

Borders: the data step is exact for circular blur, real photos are not circular. `USRNet` reflect-pads
the LR image by `border` pixels (then up to an FFT-friendly size), restores the padded canvas and crops
it: the wrap-around seam sits in the padding, where its ringing decays before reaching the photo.

Design choices beyond the USRNet paper (docs/conventions.md, "USRNet"): the prior is residual
(z = x + net) rather than direct, so an untrained prior leaves the data step's output (and its
colours) untouched; the ResUNet's 2×2 stride-2 down/up convolutions are written as space-to-depth /
depth-to-space around 1×1 convolutions (the same linear maps; XLA:CPU runs them as matrix products).
"""
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from s2k_jax import degradation

# ---------------------------------------------------------------------------------------------------
# The closed-form data step (planes: (B, C, H, W), FFTs over the two minor axes).


def grid_phase(size: int, offset: float) -> jax.Array:
  """(size,) complex: the DFT of moving a kernel by `offset` pixels, e^(−2πi f·offset), with the
  Nyquist bin of an even size kept real (cos) so that a real kernel stays real."""
  freq = jnp.fft.fftfreq(size)
  phase = jnp.exp(-2j * jnp.pi * freq * offset)
  if size % 2 == 0:
    phase = phase.at[size // 2].set(jnp.cos(jnp.pi * offset))
  return phase


def kernel_spectrum(kernels: jax.Array, height: int, width: int, offset: float = 0.0) -> jax.Array:
  """B of the data step: (B, k, k) kernels → (B, 1, H, W) complex, the DFT of cross-correlation with
  k on an H×W circular canvas (k centred at the origin, `psf2otf` with a flip).

  `offset` is the LR grid's (`degradation.grid_offset`): LR pixel i samples the blurred image at HR
  s·i + offset, which is direct decimation (S) of the blur by k moved by `offset` (a phase ramp;
  band-limited for half-pixel offsets). 0 is the papers' direct decimation."""
  k = kernels.shape[-1]
  if k > height or k > width:
    raise ValueError(f'a {k}×{k} kernel does not fit an HR canvas of {height}×{width}.')
  dtype = jnp.promote_types(kernels.dtype, jnp.float32)  # float64 kernels stay float64 (tests)
  canvas = jnp.zeros((kernels.shape[0], height, width), dtype).at[:, :k, :k].set(kernels.astype(dtype))
  canvas = jnp.roll(canvas, (-(k // 2), -(k // 2)), axis=(1, 2))
  spectrum = jnp.fft.fft2(canvas)
  if offset:
    spectrum = spectrum * (grid_phase(height, offset)[:, None] * grid_phase(width, offset)[None, :])
  return jnp.conj(spectrum)[:, None]


def block_mean(spectra: jax.Array, scale: int) -> jax.Array:
  """⇓s: (…, s·h, s·w) → (…, h, w), the mean of the s×s blocks (the spectrum of S after aliasing)."""
  *lead, height, width = spectra.shape
  h, w = height // scale, width // scale
  return spectra.reshape(*lead, scale, h, scale, w).mean(axis=(-4, -2))


def zero_upsample(planes: jax.Array, scale: int) -> jax.Array:
  """Sᵀ: (B, C, h, w) → (B, C, s·h, s·w) with the LR pixels at (s·i, s·j) and zeros elsewhere."""
  b, c, h, w = planes.shape
  out = jnp.zeros((b, c, h, scale, w, scale), planes.dtype)
  return out.at[:, :, :, 0, :, 0].set(planes).reshape(b, c, h * scale, w * scale)


def data_step(z: jax.Array, fb: jax.Array, fbfy: jax.Array, alpha: jax.Array, scale: int) -> jax.Array:
  """argmin_x ‖y − S B x‖² + α ‖x − z‖² for circular blur, exactly (USRNet Eq. 7).

  z (B, C, H, W) real, fb = `kernel_spectrum` (B, 1, H, W), fbfy = conj(fb)·F(Sᵀy) (B, C, H, W),
  alpha (B,) > 0 → x (B, C, H, W) real.
  """
  alpha = alpha.reshape(-1, 1, 1, 1).astype(z.dtype)
  fr = fbfy + alpha * jnp.fft.fft2(z)
  lr_term = block_mean(fb * fr, scale) / (block_mean(jnp.abs(fb) ** 2, scale) + alpha)
  fx = (fr - jnp.conj(fb) * jnp.tile(lr_term, (1, 1, scale, scale))) / alpha
  return jnp.real(jnp.fft.ifft2(fx))


def degrade_circular(planes: jax.Array, fb: jax.Array, scale: int) -> jax.Array:
  """S B x with circular blur: the forward model the data step inverts ((B, C, H, W) → (B, C, h, w))."""
  return jnp.real(jnp.fft.ifft2(fb * jnp.fft.fft2(planes)))[:, :, ::scale, ::scale]


# ---------------------------------------------------------------------------------------------------
# The learned parts.


def space_to_depth(x: jax.Array) -> jax.Array:
  """(B, H, W, C) → (B, H/2, W/2, 4C), each 2×2 block's pixels in (row, column) order."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // 2, w // 2, 4 * c)


def depth_to_space(x: jax.Array) -> jax.Array:
  """Inverse of `space_to_depth`."""
  b, h, w, c4 = x.shape
  c = c4 // 4
  x = x.reshape(b, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, 2 * h, 2 * w, c)


class ResBlock(nn.Module):
  """x + conv3×3(relu(conv3×3(x))), no bias (USRNet's ResUNet block)."""
  features: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = nn.Conv(self.features, (3, 3), padding='SAME', use_bias=False, dtype=self.dtype)(x)
    y = nn.Conv(self.features, (3, 3), padding='SAME', use_bias=False, dtype=self.dtype)(nn.relu(y))
    return x + y


class ResUNet(nn.Module):
  """The prior: a U-Net of residual blocks (USRNet's ResUNet), residual on its first `out_channels`
  inputs. Input (B, H, W, C_in) with H, W multiples of 2^(len(features)−1). `dtype`: the convolutions'
  computation dtype (None: the input's); parameters and the residual sum are float32."""
  features: Sequence[int] = (64, 128, 256, 512)
  num_blocks: int = 2
  out_channels: int = 3
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = self.dtype
    h = nn.Conv(self.features[0], (3, 3), padding='SAME', use_bias=False, name='head', dtype=dtype)(x)
    skips = [h]
    for level, width in enumerate(self.features[1:]):
      for i in range(self.num_blocks):
        h = ResBlock(self.features[level], dtype, name=f'down{level}_block{i}')(h)
      h = nn.Dense(width, use_bias=False, name=f'down{level}', dtype=dtype)(space_to_depth(h))  # 2×2/2 conv
      skips.append(h)
    for i in range(self.num_blocks):
      h = ResBlock(self.features[-1], dtype, name=f'body_block{i}')(h)
    for level in reversed(range(len(self.features) - 1)):
      h = h + skips.pop()
      h = depth_to_space(nn.Dense(4 * self.features[level], use_bias=False, name=f'up{level}', dtype=dtype)(h))
      for i in range(self.num_blocks):
        h = ResBlock(self.features[level], dtype, name=f'up{level}_block{i}')(h)
    h = h + skips.pop()
    out = nn.Conv(self.out_channels, (3, 3), padding='SAME', use_bias=False, name='tail', dtype=dtype,
                  kernel_init=nn.initializers.zeros)(h)  # Starts as the identity prior.
    return x[..., :self.out_channels] + out.astype(x.dtype)


def _widened(kernel: Any, key: jax.Array, old_in: int, new_in: int, old_out: int, new_out: int,
             in_groups: int = 1, out_groups: int = 1) -> np.ndarray:
  """A kernel (…, in_groups·old_in, out_groups·old_out) grown to (…, in_groups·new_in, out_groups·new_out).

  Channel c of group p sits at p·n + c on either axis (space-to-depth / depth-to-space order). The old
  weights keep their places, the weights from new inputs to old outputs are 0 (so old channels compute
  what they did), and the rest is drawn as flax's default init (LeCun normal over the new fan-in), so
  the new channels start with activations and the zeros receive gradients.
  """
  kernel = np.asarray(kernel, np.float32)
  spatial = kernel.shape[:-2]
  fan_in = math.prod(spatial) * in_groups * new_in
  grown = np.asarray(jax.random.normal(key, spatial + (in_groups * new_in, out_groups * new_out)),
                     np.float32) / math.sqrt(fan_in)
  rows = (np.arange(in_groups)[:, None] * new_in + np.arange(old_in)[None, :]).ravel()
  cols = (np.arange(out_groups)[:, None] * new_out + np.arange(old_out)[None, :]).ravel()
  new_rows = np.setdiff1d(np.arange(in_groups * new_in), rows)
  grown[..., new_rows[:, None], cols[None, :]] = 0.0
  grown[..., rows[:, None], cols[None, :]] = kernel
  return grown


def widen_prior(params: Any, features: Sequence[int], key: jax.Array) -> dict:
  """USRNet parameters with the ResUNet prior grown to `features` (one width per level, each at least
  the old one), computing the same function: a larger network to fine-tune from a trained smaller one
  (issue 32: "larger models where the budget allows") instead of from scratch.

  `params` is a USRNet's {'HyperNet_0': …, 'prior': …} (the hyper-network is kept as it is). Only
  `restorer.features` changes; the number of levels and of blocks per level stay.
  """
  prior = params['prior']
  old = [prior['head']['kernel'].shape[-1]] + [prior[f'down{i}']['kernel'].shape[-1]
                                               for i in range(len(features) - 1) if f'down{i}' in prior]
  features = [int(f) for f in features]
  if f'down{len(features) - 1}' in prior or len(old) != len(features) or any(n < o for n, o in zip(features, old)):
    raise ValueError(f'USRNet prior of widths {tuple(old)} can only grow to as many levels, each at least as '
                     f'wide; got features {tuple(features)}.')
  keys = iter(jax.random.split(key, len(jax.tree.leaves(prior))))
  grown = {}
  for name, layer in prior.items():
    if '_block' in name:  # {down,up}{L}_block{i} / body_block{i}: two convs at one level's width
      level = len(old) - 1 if name.startswith('body') else int(name.split('_')[0].lstrip('downup'))
      grown[name] = {conv: {'kernel': _widened(layer[conv]['kernel'], next(keys), old[level], features[level],
                                               old[level], features[level])} for conv in layer}
      continue
    kernel = layer['kernel']
    if name == 'head':
      args = (kernel.shape[-2], kernel.shape[-2], old[0], features[0])
    elif name == 'tail':
      args = (old[0], features[0], kernel.shape[-1], kernel.shape[-1])
    elif name.startswith('down'):  # 2×2 stride-2 conv as a Dense on space-to-depth: level L → L+1
      level = int(name[len('down'):])
      args = (old[level], features[level], old[level + 1], features[level + 1], 4, 1)
    else:  # up{L}: level L+1 → 4 × level L, depth-to-space after it
      level = int(name[len('up'):])
      args = (old[level + 1], features[level + 1], old[level], features[level], 1, 4)
    grown[name] = {'kernel': _widened(kernel, next(keys), *args)}
  return {**params, 'prior': grown}


# Kernels up to this side are restored whole (the HR canvas of the smallest accepted LR, 16 px plus
# the border, at ×2 is larger); tests use up to 31×31, the families here 15–23.
MAX_KERNEL_SIZE = 63

# Where the hyper-network starts: α (data step weight) and β (prior strength) of every round.
ALPHA_INIT = 0.01
BETA_INIT = 0.02
ALPHA_MIN = 1e-4   # Keeps 1/α finite in float32 (the data step divides by it).
NOISE_UNIT = 0.05  # σ is fed as σ / NOISE_UNIT (the 5% noise the release is trained up to → 1).


def _inverse_softplus(y: float) -> float:
  return math.log(math.expm1(y))


class HyperNet(nn.Module):
  """(σ, s) → (α_1..α_n, β_1..β_n) > 0: three 1×1 layers (USRNet's HyperNet), softplus outputs."""
  iterations: int
  features: int = 64

  @nn.compact
  def __call__(self, noise_sigma: jax.Array, scale: int) -> tuple[jax.Array, jax.Array]:
    inputs = jnp.stack([noise_sigma / NOISE_UNIT, jnp.full_like(noise_sigma, scale / 4.0)], axis=-1)
    h = nn.relu(nn.Dense(self.features)(inputs))
    h = nn.relu(nn.Dense(self.features)(h))
    bias = jnp.array([_inverse_softplus(ALPHA_INIT)] * self.iterations
                     + [_inverse_softplus(BETA_INIT)] * self.iterations, jnp.float32)
    out = nn.softplus(nn.Dense(2 * self.iterations, kernel_init=nn.initializers.zeros,
                               bias_init=lambda *_: bias)(h))
    return out[:, :self.iterations] + ALPHA_MIN, out[:, self.iterations:]


def padded_lr_size(size: int, border: int) -> int:
  """LR canvas side for an LR side `size`: ≥ size + 2·border, a multiple of 8 (so every s·side fits
  the ResUNet's three halvings) and FFT-friendly (2^a·3^b·5^c)."""
  return degradation.fast_fft_size(size + 2 * border, multiple_of=8)


class USRNet(nn.Module):
  """lr (B, h, w, 3) in [0, 1], kernels (B, k, k), noise σ (B,), static scale → SR (B, s·h, s·w, 3).

  One set of weights for every scale in {2, 3, 4}, kernel and noise level (σ on the [0, 1] scale).
  `downsample` (static, `degradation.DOWNSAMPLE_METHODS`) is how the LR image was made from the
  blurred one: 'direct' decimation (the paper's Eq. 1) or a resizer ('bicubic', 'area'), whose filter
  joins the blur (`degradation.effective_kernel`) and whose LR pixels sit at HR s·i + (s − 1)/2. `grid`
  (static, `degradation.LR_GRIDS`; None = the downsampler's) overrides where the LR pixels sit, for a
  kernel that already includes the resizer's filter (an estimate from directly decimated training LR,
  used on a photo).
  """
  iterations: int = 8
  features: Sequence[int] = (64, 128, 256, 512)
  num_blocks: int = 2
  border: int = 16
  hyper_features: int = 64
  dtype: Any = None  # the prior's computation dtype (None: the input's); data step and FFTs stay float32

  @nn.compact
  def __call__(self, lr: jax.Array, kernels: jax.Array, noise_sigma: jax.Array, scale: int,
               clip: bool = True, downsample: str = 'direct', grid: str | None = None) -> jax.Array:
    degradation.check_scale(scale)
    b, h, w, _ = lr.shape
    pad = self.border
    rows, cols = padded_lr_size(h, pad), padded_lr_size(w, pad)
    y = degradation.reflect_canvas(lr, pad, rows, cols)  # (B, C, rows, cols)
    hr_rows, hr_cols = scale * rows, scale * cols
    grid = grid or degradation.lr_grid(downsample)
    if downsample != 'direct':
      kernels = degradation.effective_kernel(kernels, scale, downsample)
    fb = kernel_spectrum(kernels, hr_rows, hr_cols, degradation.grid_offset(scale, grid))
    fbfy = jnp.conj(fb) * jnp.fft.fft2(zero_upsample(y, scale))
    alphas, betas = HyperNet(self.iterations, self.hyper_features)(noise_sigma.astype(jnp.float32), scale)

    # The start: bicubic upsampling on the LR image's grid (planes: NHWC for the resize).
    z = jnp.transpose(degradation.bicubic_upsample(jnp.transpose(y, (0, 2, 3, 1)), scale, grid), (0, 3, 1, 2))
    prior = ResUNet(self.features, self.num_blocks, out_channels=lr.shape[-1], dtype=self.dtype, name='prior')
    for i in range(self.iterations):
      x = data_step(z, fb, fbfy, alphas[:, i], scale)
      x = jnp.transpose(x, (0, 2, 3, 1))  # NHWC for the convolutions
      strength = jnp.broadcast_to(betas[:, i].reshape(b, 1, 1, 1), x.shape[:3] + (1,))
      z = jnp.transpose(prior(jnp.concatenate([x, strength], axis=-1)), (0, 3, 1, 2))
    top, left = scale * pad, scale * pad
    sr = jnp.transpose(z[:, :, top:top + scale * h, left:left + scale * w], (0, 2, 3, 1))
    return jnp.clip(sr, 0.0, 1.0) if clip else sr
