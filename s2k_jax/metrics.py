"""Evaluation metrics: SR fidelity (paper §4.1, Table 1) and kernel distances (Eq. 13, Figure 6).

* PSNR / SSIM as SR papers report them (BasicSR `calculate_psnr` / `calculate_ssim` and the MATLAB
  scripts they copy): images rounded to 8-bit levels, optionally reduced to BT.601 luma (the
  formula of `color.rgb_to_y`) on the [0, 255] scale, `crop_border` pixels (usually the scale)
  removed on every side, peak 255. SSIM (Wang et al. 2004) uses the 11×11 Gaussian window with
  σ = 1.5 over the valid region only, C1 = (0.01·255)², C2 = (0.03·255)², averaged over the map
  (and over RGB channels).
* Kernel distances of Eq. 13: D_v = mean |K_est − K_gt|, D_s = Σ K_est log(K_est / K_gt) (ε-clamped,
  renormalised), and the kernel PSNR of FKP (Liang et al. 2021), 10·log10(1 / mse). With
  `flip_invariant=True` each estimate is scored against whichever of K_gt and its 180° rotation is
  closer in D_v, since the amplitude spectrum cannot tell them apart (§3.2).
* Kernel width (not in the paper): the RMS spread per axis, √(tr Σ / 2) in HR pixels with Σ the
  kernel's second-moment covariance (σ for an isotropic Gaussian of σ), and its error K_est − K_gt:
  signed, so that a mean over a test set shows whether an estimator reads too little blur or too much.

Conventions (decisions and measurements) are listed in docs/conventions.md.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from s2k_jax import color
from s2k_jax import spectrum

PEAK = 255.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * PEAK) ** 2
SSIM_C2 = (0.03 * PEAK) ** 2
# Floor for both kernels in D_s: ground-truth disk and motion kernels are exactly zero off their
# support, where any estimated mass would make log(K_est / K_gt) infinite. With ε = 1e-10 the mass an
# estimate puts where the truth has none costs log(1/ε) ≈ 23 nats per unit. 1e-10 is a normal
# float32 (≥ 1.2e-38) and adds at most k²·ε ≈ 2e-8 of mass to a 15×15 kernel.
KL_EPS = 1e-10


def gaussian_taps(size: int, sigma: float) -> np.ndarray:
  """Normalised 1-D Gaussian, the factor of MATLAB's fspecial('gaussian') / OpenCV's 2-D window."""
  offsets = np.arange(size) - (size - 1) / 2
  taps = np.exp(-offsets ** 2 / (2 * sigma ** 2))
  return (taps / taps.sum()).astype(np.float32)


_SSIM_TAPS = gaussian_taps(SSIM_WINDOW, SSIM_SIGMA)


# ----------------------------------------------------------------------------------------------
# Images → the values SR papers score.


def to_levels(x: jnp.ndarray) -> jnp.ndarray:
  """8-bit levels {0, …, 255} as float32: uint8 as is, floats as round(clip(x, 0, 1)·255).

  This is what saving an SR result to PNG does (BasicSR `tensor2img`), so metrics see the image a
  paper's evaluation script reads back. Rounding is half-to-even, like numpy and torch.

  Args:
    x: any shape, uint8 levels or floats in [0, 1] (values outside are clipped).

  Returns:
    Same shape, float32 whole numbers in [0, 255].
  """
  x = jnp.asarray(x)
  if x.dtype == jnp.uint8:
    return x.astype(jnp.float32)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f'Images must be uint8 levels or floats in [0, 1], got dtype {x.dtype}; '
                     'cast integer images holding 0..255 to uint8 first.')
  return jnp.round(jnp.clip(x.astype(jnp.float32), 0.0, 1.0) * PEAK)


def _y_of_levels(levels: jnp.ndarray) -> jnp.ndarray:
  """(..., 3) levels → (...) BT.601 luma on [16, 235], unrounded (BasicSR `to_y_channel`)."""
  r, g, b = (levels[..., i] for i in range(3))
  w = color.Y_WEIGHTS
  return (w[0] * r + w[1] * g + w[2] * b) / PEAK + color.Y_OFFSET


def to_y255(x: jnp.ndarray) -> jnp.ndarray:
  """BT.601 luma of the 8-bit image, on the [0, 255] scale: the channel SR papers score.

  Y = 16 + 65.481 R + 128.553 G + 24.966 B with R, G, B = levels/255 (MATLAB `rgb2ycbcr`, BasicSR
  `bgr2ycbcr(y_only=True)`), computed after rounding to levels and not rounded itself.

  Args:
    x: (..., 3) RGB, uint8 levels or floats in [0, 1].

  Returns:
    (...) float32 in [16, 235].
  """
  x = jnp.asarray(x)
  if x.ndim < 1 or x.shape[-1] != 3:
    raise ValueError(f'to_y255 expects RGB with 3 channels last, got shape {x.shape}.')
  return _y_of_levels(to_levels(x))


def _scored_pair(a: jnp.ndarray, b: jnp.ndarray, crop_border: int, y_channel: bool, name: str,
                 min_size: int) -> tuple[jnp.ndarray, bool]:
  """Checks two images; returns them stacked, (2, B, H', W', C') float32 on [0, 255], and if batched.

  After rounding, both go through the same elementwise operations as one stacked array, so equal
  levels give equal values: identical images score exactly inf dB and SSIM 1.
  """
  a, b = jnp.asarray(a), jnp.asarray(b)
  if a.shape != b.shape or a.ndim not in (3, 4) or a.shape[-1] not in (1, 3):
    raise ValueError(f'{name} needs two images of the same shape (B, H, W, C) or (H, W, C) with C = 1 '
                     f'or 3, got {a.shape} and {b.shape}.')
  if (isinstance(crop_border, bool) or not isinstance(crop_border, (int, np.integer))
      or crop_border < 0):
    raise ValueError(f'crop_border must be a non-negative int (pixels removed on each side; SR papers '
                     f'use the scale factor), got {crop_border!r}.')
  height, width = a.shape[-3] - 2 * crop_border, a.shape[-2] - 2 * crop_border
  if min(height, width) < min_size:
    raise ValueError(f'{name}: {a.shape[-3]}×{a.shape[-2]} images leave {height}×{width} after '
                     f'crop_border={crop_border}; at least {min_size}×{min_size} are needed.')
  batched = a.ndim == 4
  pair = jnp.stack([to_levels(a), to_levels(b)])
  if not batched:
    pair = pair[:, None]
  if y_channel and pair.shape[-1] == 3:
    pair = _y_of_levels(pair)[..., None]
  return pair[:, :, crop_border:crop_border + height, crop_border:crop_border + width], batched


@functools.partial(jax.jit, static_argnames=('crop_border', 'y_channel'))
def psnr(a: jnp.ndarray, b: jnp.ndarray, *, crop_border: int = 0,
         y_channel: bool = True) -> jnp.ndarray:
  """PSNR in dB on 8-bit levels, peak 255, as in SR papers (BasicSR `calculate_psnr`).

  Args:
    a, b: (B, H, W, C) or (H, W, C) images, C = 3 (RGB) or 1 (taken as luma), each uint8 levels or
      floats in [0, 1] (rounded to levels first; the two may differ in dtype).
    crop_border: pixels dropped on each side before scoring (the scale factor in SR papers).
    y_channel: score BT.601 luma (`to_y255`) instead of the RGB channels (MSE over all channels).

  Returns:
    (B,) or () float32; +inf where the scored pixels are identical.
  """
  pair, batched = _scored_pair(a, b, crop_border, y_channel, 'psnr', min_size=1)
  mse = jnp.mean((pair[0] - pair[1]) ** 2, axis=(1, 2, 3))
  out = 10.0 * jnp.log10(PEAK ** 2 / mse)  # mse = 0 → PEAK²/0 = inf → inf dB.
  return out if batched else out[0]


def psnr_rgb(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  """Per-image PSNR (dB) of float RGB on [0, 1], no rounding or border crop: the restorers' training
  monitor, jittable (paper-style scores are `psnr` on Y levels). (B, H, W, C) → (B,)."""
  mse = jnp.mean((a - b) ** 2, axis=(1, 2, 3))
  return 10.0 * jnp.log10(1.0 / jnp.maximum(mse, 1e-10))


@functools.partial(jax.jit, static_argnames=('crop_border',))
def chroma_error(a: jnp.ndarray, b: jnp.ndarray, *, crop_border: int = 0) -> jnp.ndarray:
  """Mean |ΔCb| and |ΔCr| (BT.601, 8-bit levels, averaged over both) of (B, H, W, 3) RGB in [0, 1]: (B,)."""
  a, b = (x[:, crop_border:x.shape[1] - crop_border, crop_border:x.shape[2] - crop_border] for x in (a, b))
  return jnp.mean(jnp.abs(color.rgb_to_cbcr(a) - color.rgb_to_cbcr(b)), axis=(1, 2, 3))


# Below this mean HSV saturation a reference is grey (a grayscale photo stored as RGB): no ratio.
GREY_SATURATION = 0.01


@functools.partial(jax.jit, static_argnames=('crop_border',))
def saturation_ratio(a: jnp.ndarray, b: jnp.ndarray, *, crop_border: int = 0) -> jnp.ndarray:
  """Mean HSV saturation of a over that of b ((B, H, W, 3) RGB in [0, 1]): (B,); 1 = colours as vivid.
  NaN where b is grey (mean saturation < GREY_SATURATION; averages leave it out)."""
  a, b = (x[:, crop_border:x.shape[1] - crop_border, crop_border:x.shape[2] - crop_border] for x in (a, b))
  reference = jnp.mean(color.saturation(b), axis=(1, 2))
  return jnp.where(reference < GREY_SATURATION, jnp.nan,
                   jnp.mean(color.saturation(a), axis=(1, 2)) / jnp.maximum(reference, GREY_SATURATION))


def correlate_valid(x: jnp.ndarray, taps: np.ndarray, axis: int) -> jnp.ndarray:
  """1-D correlation of `x` with `taps` along `axis` at every valid position, as a weighted sum of
  shifted slices: that axis shrinks by len(taps) − 1."""
  n = x.shape[axis] - len(taps) + 1
  return sum(float(w) * jax.lax.slice_in_dim(x, i, i + n, axis=axis) for i, w in enumerate(taps))


def _gaussian_valid(x: jnp.ndarray) -> jnp.ndarray:
  """(..., H, W) → (..., H − 10, W − 10): the separable 11×11 Gaussian at every valid position."""
  return correlate_valid(correlate_valid(x, _SSIM_TAPS, x.ndim - 2), _SSIM_TAPS, x.ndim - 1)


def _ssim_per_channel(pair: jnp.ndarray) -> jnp.ndarray:
  """(2, B, C, H, W) image pair on [0, 255] → (B, C) mean SSIM over the valid region."""
  # Local (co)variances are E[xy] − E[x]E[y]. Taking each image's mean out first makes float32 lose
  # digits relative to the local contrast rather than to 255² (2e-5 → 1e-7 on bright flat images);
  # the window sums to 1, so the local means are the shifted ones plus that mean.
  offset = jnp.mean(pair, axis=(-2, -1), keepdims=True)
  x, y = pair - offset
  mu_x, mu_y, xx, yy, xy = _gaussian_valid(jnp.stack([x, y, x * x, y * y, x * y]))
  var_x, var_y, cov = xx - mu_x ** 2, yy - mu_y ** 2, xy - mu_x * mu_y
  mu_x, mu_y = mu_x + offset[0], mu_y + offset[1]
  ssim_map = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
              / ((mu_x ** 2 + mu_y ** 2 + SSIM_C1) * (var_x + var_y + SSIM_C2)))
  return jnp.mean(ssim_map, axis=(-2, -1))


@functools.partial(jax.jit, static_argnames=('crop_border', 'y_channel'))
def ssim(a: jnp.ndarray, b: jnp.ndarray, *, crop_border: int = 0,
         y_channel: bool = True) -> jnp.ndarray:
  """SSIM as in SR papers (BasicSR `calculate_ssim`, Wang et al.'s MATLAB `ssim_index`).

  11×11 Gaussian window (σ = 1.5), no padding: the map covers the (H' − 10) × (W' − 10) positions
  where the window fits inside the cropped image, and its mean is returned (per channel, then
  averaged over channels when `y_channel=False`).

  Args:
    a, b: (B, H, W, C) or (H, W, C) images, C = 3 (RGB) or 1 (taken as luma), each uint8 levels or
      floats in [0, 1] (rounded to levels first).
    crop_border: pixels dropped on each side before scoring; at least 11×11 must remain.
    y_channel: score BT.601 luma (`to_y255`) instead of the RGB channels.

  Returns:
    (B,) or () float32 in [−1, 1]; 1 for identical images.
  """
  pair, batched = _scored_pair(a, b, crop_border, y_channel, 'ssim', min_size=SSIM_WINDOW)
  per_channel = _ssim_per_channel(jnp.moveaxis(pair, -1, 2))
  out = jnp.mean(per_channel, axis=1)
  return out if batched else out[0]


# ----------------------------------------------------------------------------------------------
# Kernels (Eq. 13).


def _kernel_pair(est: jnp.ndarray, gt: jnp.ndarray, name: str) -> tuple[jnp.ndarray, jnp.ndarray]:
  est, gt = jnp.asarray(est, jnp.float32), jnp.asarray(gt, jnp.float32)
  if est.shape != gt.shape or est.ndim not in (2, 3):
    raise ValueError(f'{name} needs estimated and true kernels of the same shape (B, k, k) or (k, k), '
                     f'got {est.shape} and {gt.shape}.')
  return est, gt


def _mean_abs(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  return jnp.mean(jnp.abs(a - b), axis=(-2, -1))


def _reference(est: jnp.ndarray, gt: jnp.ndarray, flip_invariant: bool,
               name: str) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Checked kernels and the truth they are scored against (rotated per kernel if flip-invariant)."""
  est, gt = _kernel_pair(est, gt, name)
  return est, (spectrum.align_orientation(est, gt) if flip_invariant else gt)


@functools.partial(jax.jit, static_argnames=('flip_invariant',))
def kernel_mae(est: jnp.ndarray, gt: jnp.ndarray, *, flip_invariant: bool = False) -> jnp.ndarray:
  """D_v of Eq. 13: mean |K_est − K_gt| over the k×k entries.

  Args:
    est, gt: (B, k, k) or (k, k) estimated and true kernels.
    flip_invariant: compare with the closer of K_gt and its 180° rotation (motion kernels).

  Returns:
    (B,) or () float32 ≥ 0.
  """
  est, gt = _reference(est, gt, flip_invariant, 'kernel_mae')
  return _mean_abs(est, gt)


def _normalised_floor(k: jnp.ndarray, eps: float) -> jnp.ndarray:
  k = jnp.maximum(k, eps)
  return k / jnp.sum(k, axis=(-2, -1), keepdims=True)


@functools.partial(jax.jit, static_argnames=('flip_invariant', 'eps'))
def kernel_kl(est: jnp.ndarray, gt: jnp.ndarray, *, flip_invariant: bool = False,
              eps: float = KL_EPS) -> jnp.ndarray:
  """D_s of Eq. 13: Σ X log(X / Y), X the estimate, Y the truth: KL(K_est ‖ K_gt) in nats.

  Both kernels are clamped to ≥ eps (ground-truth disk and motion kernels have exact zeros; negative
  estimates count as eps) and renormalised to sum 1, so D_s is a true KL divergence: ≥ 0, and 0 only
  for equal kernels.

  Args:
    est, gt: (B, k, k) or (k, k) estimated and true kernels.
    flip_invariant: compare with the rotation of K_gt chosen by D_v (see `spectrum.align_orientation`).
    eps: floor of both kernels, > 0.

  Returns:
    (B,) or () float32 ≥ 0 (up to float32 round-off), at most about log(1/eps).
  """
  if not eps > 0:
    raise ValueError(f'kernel_kl needs eps > 0 (the floor that keeps log(K_est/K_gt) finite), '
                     f'got {eps}.')
  est, gt = _reference(est, gt, flip_invariant, 'kernel_kl')
  x, y = _normalised_floor(est, eps), _normalised_floor(gt, eps)
  return jnp.sum(x * (jnp.log(x) - jnp.log(y)), axis=(-2, -1))


@functools.partial(jax.jit, static_argnames=('flip_invariant',))
def kernel_psnr(est: jnp.ndarray, gt: jnp.ndarray, *, flip_invariant: bool = False) -> jnp.ndarray:
  """Kernel PSNR as FKP reports it (`calculate_psnr(k_gt, k_est, is_kernel=True)`): 10·log10(1 / mse).

  The peak is 1, not the kernel's maximum, and the kernels are compared as given (sum 1).

  Args:
    est, gt: (B, k, k) or (k, k) estimated and true kernels.
    flip_invariant: compare with the rotation of K_gt chosen by D_v (see `spectrum.align_orientation`).

  Returns:
    (B,) or () float32 dB; +inf for identical kernels.
  """
  est, gt = _reference(est, gt, flip_invariant, 'kernel_psnr')
  mse = jnp.mean((est - gt) ** 2, axis=(-2, -1))
  return 10.0 * jnp.log10(1.0 / mse)


def kernel_covariance(kernel: jnp.ndarray) -> jnp.ndarray:
  """(…, k, k) non-negative kernels → (…, 2, 2) covariance of their mass in (row, col), pixels²."""
  kernel = jnp.asarray(kernel, jnp.float32)
  kernel = kernel / jnp.sum(kernel, axis=(-2, -1), keepdims=True)
  rows = jnp.arange(kernel.shape[-2], dtype=jnp.float32)[:, None]
  cols = jnp.arange(kernel.shape[-1], dtype=jnp.float32)[None, :]
  d = [x - jnp.sum(kernel * x, axis=(-2, -1), keepdims=True) for x in (rows, cols)]  # offsets from the centroid
  return jnp.stack([jnp.stack([jnp.sum(kernel * a * b, axis=(-2, -1)) for b in d], -1) for a in d], -2)


def kernel_width(kernel: jnp.ndarray) -> jnp.ndarray:
  """(…, k, k) → (…,) RMS spread per axis √(tr Σ / 2), pixels: σ for an isotropic Gaussian of σ."""
  cov = kernel_covariance(kernel)
  return jnp.sqrt(jnp.maximum((cov[..., 0, 0] + cov[..., 1, 1]) / 2, 0.0))


def kernel_metrics(est: jnp.ndarray, gt: jnp.ndarray, *, flip_invariant: bool = False,
                   eps: float = KL_EPS) -> dict[str, jnp.ndarray]:
  """All kernel scores against one orientation of the truth, each (B,) or (): {'D_v', 'D_s', 'psnr',
  'width_error'} (the last, `kernel_width(est) − kernel_width(gt)`, is the same for either orientation)."""
  est, gt = _reference(est, gt, flip_invariant, 'kernel_metrics')
  return dict(D_v=kernel_mae(est, gt), D_s=kernel_kl(est, gt, eps=eps), psnr=kernel_psnr(est, gt),
              width_error=kernel_width(est) - kernel_width(gt))
