"""Generator input and target of S2K: LR amplitude spectrum → kernel map (paper §3.2–3.3, Table 3).

* Input (§3.3): "the 256×256 single-channel amplitude spectrum of the LR image". By the convolution
  theorem (Eq. 4, G = F ⊙ S) the kernel's frequency response F multiplies the image spectrum, so the
  log amplitude is log|F| + log|S|: the kernel's shape appears additively, and for a Gaussian the
  spectral widths are inversely proportional to the spatial ones (Eq. 9–10).
  `amplitude_spectrum` computes it for any LR size on a fixed normalised-frequency axis;
  `spatial_input` is the spatial-domain input of the Table 3 ablation.
* Output (Table 3, "Kernel↑"): the kernel matrix interpolated up to the generator's output size.
  `kernel_to_map` / `map_to_kernel` are that interpolation and its least-squares inverse.
* The amplitude spectrum cannot tell a kernel from its 180° rotation or from a shifted copy, so
  motion kernels need `canonical_kernel` (a unique representative) or `kernel_distance(…, flip_invariant=True)` (a
  loss/metric that does not care).

Conventions (decisions and measurements) are listed in docs/conventions.md.
"""
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from s2k_jax import color

_HIGHEST = jax.lax.Precision.HIGHEST
# Floor of the normalised amplitude (relative to its RMS) before the log: float32 FFT round-off
# reaches 2e-5 of the RMS next to DC and 8e-6 elsewhere (measured against float64), so bins below
# 1e-4 are not to be trusted and must not stretch the log range. Unblurred natural images stay above ~1e-3.
_AMPLITUDE_FLOOR = 1e-4
# Per-map standard scores are divided by this and clipped to [-1, 1] (`_normalise_log_amplitude`).
_STANDARD_SCORE_RANGE = 3.0
SPECTRUM_MODES = ('crop', 'welch')
DEFAULT_MODE = 'crop'  # configs/common.py's spectrum.mode; other modes need model.input='dft'.

# Stored with checkpoints so that inference decodes generator outputs the way they were trained.
KERNEL_MAP_CONVENTION = (
    'kernel_to_map v1: separable linear interpolation of the k×k kernel to S×S with half-pixel '
    'centres (jax.image.resize "linear"), scaled per kernel so that max → 1 and 0 → -1; '
    'map_to_kernel: pseudo-inverse of that interpolation, clipped at 0, normalised to sum 1.')


# ----------------------------------------------------------------------------------------------
# Shapes.


def _add_batch(x: jnp.ndarray, single_ndim: int, name: str,
               expected: str) -> tuple[jnp.ndarray, bool]:
  """Returns x with a leading batch axis and whether the caller passed one."""
  x = jnp.asarray(x)
  if x.ndim == single_ndim + 1:
    return x, True
  if x.ndim == single_ndim:
    return x[None], False
  raise ValueError(f'{name} must have shape {expected}, got {x.shape}.')


def _luma(lr: jnp.ndarray) -> jnp.ndarray:
  """(B, H, W, C) in [0, 1] → (B, H, W) BT.601 luma; a single channel is taken as luma already."""
  if lr.shape[-1] == 3:
    return color.rgb_to_y(lr)
  if lr.shape[-1] == 1:
    return lr[..., 0].astype(jnp.float32)
  raise ValueError(f'LR images must have 3 (RGB) or 1 (luma) channels last, got shape {lr.shape}.')


# ----------------------------------------------------------------------------------------------
# Amplitude spectrum (generator input).


def _tile_starts(n: int, size: int, mode: str) -> tuple[tuple[int, ...], int]:
  """Start offsets and length of the analysis tiles along one image axis of length n.

  Short axes (n ≤ size) are one tile of the whole axis, zero-padded later by the FFT. Long axes
  are one centred tile ('crop') or tiles with 50% overlap whose grid is centred ('welch').
  """
  if n <= size:
    return (0,), n
  if mode == 'crop':
    return ((n - size) // 2,), size
  step = size // 2
  count = (n - size) // step + 1
  first = (n - (count - 1) * step - size) // 2
  return tuple(first + i * step for i in range(count)), size


@functools.lru_cache(maxsize=None)
def _sine_squared_window(n: int) -> np.ndarray:
  """Hann window sampled at half-integer positions: symmetric, all taps > 0, sums to n/2."""
  return (np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2).astype(np.float32)


@functools.partial(jax.jit, static_argnames=('size', 'mode', 'window'))
def power_spectrum(lr: jnp.ndarray, size: int = 256, mode: str = 'crop',
                   window: bool = True) -> jnp.ndarray:
  """Centred (fftshift) power spectral density of the LR luma on a size×size frequency grid.

  Bin (i, j) is the normalised frequency ((i − size/2)/size, (j − size/2)/size) cycles/pixel for
  every LR size: axes shorter than `size` are zero-padded to `size` (which samples the same
  continuous spectrum on the finer grid), longer axes are cropped or split into tiles.
  Each tile has its (window-weighted) mean removed, is multiplied by the window, and its
  periodogram |FFT|²/Σw² is averaged over tiles, so white noise of variance v has E[P] = v.

  Args:
    lr: (B, H, W, C) or (H, W, C) images in [0, 1], C = 3 (RGB) or 1 (luma); any H, W ≥ 2.
    size: side of the output grid (256 in the paper).
    mode: 'crop' (one centred size×size tile) or 'welch' (mean over tiles with 50% overlap).
    window: taper each tile with a Hann window (suppresses the cross from the image borders).

  Returns:
    (B, size, size) or (size, size) float32 power, DC at index (size//2, size//2).
  """
  if mode not in SPECTRUM_MODES:
    raise ValueError(f'mode must be one of {SPECTRUM_MODES}, got {mode!r}.')
  lr, batched = _add_batch(lr, 3, 'lr', '(B, H, W, C) or (H, W, C)')
  y = _luma(lr)
  h, w = y.shape[1:]
  if min(h, w) < 2:
    raise ValueError(f'LR images must be at least 2×2 pixels, got {h}×{w}.')
  rows, th = _tile_starts(h, size, mode)
  cols, tw = _tile_starts(w, size, mode)
  tiles = jnp.stack([y[:, r:r + th, c:c + tw] for r in rows for c in cols], axis=1)
  if window:
    taper = jnp.asarray(np.outer(_sine_squared_window(th), _sine_squared_window(tw)))
  else:
    taper = jnp.ones((th, tw), jnp.float32)
  # Removing the weighted mean makes the DC bin exactly 0, so the zero-padded box of a bright
  # image does not leak a sinc cross into the low frequencies.
  mean = jnp.sum(tiles * taper, axis=(-2, -1), keepdims=True) / jnp.sum(taper)
  spectra = jnp.fft.fft2((tiles - mean) * taper, s=(size, size))
  power = jnp.mean(jnp.abs(spectra) ** 2, axis=1) / jnp.sum(taper ** 2)
  # The mean carries no kernel information (every kernel sums to 1); zero its round-off too.
  power = jnp.fft.fftshift(power.at[:, 0, 0].set(0.0), axes=(-2, -1))
  return power if batched else power[0]


def _normalise_log_amplitude(power: jnp.ndarray) -> jnp.ndarray:
  """(B, S, S) power → log amplitude standardised per map, scaled by 1/3 and clipped to [-1, 1].

  The log turns G = F ⊙ S into a sum, so the kernel's shape is an additive pattern whose contrast
  does not depend on the image's brightness or contrast. Dividing by the RMS first and then
  standardising makes the map invariant to the image's gain and offset; ±3 standard deviations
  fill the [-1, 1] range of pix2pix inputs (measured on 24 uint8 LR images from skimage.data:
  0.5% of the bins clipped on average, 1.2% at most: the strongest low frequencies, the DC bin
  and the deepest notches).
  """
  amplitude = jnp.sqrt(power)
  rms = jnp.sqrt(jnp.mean(power, axis=(-2, -1), keepdims=True))
  log_amp = jnp.log(amplitude / jnp.maximum(rms, 1e-30) + _AMPLITUDE_FLOOR)
  mean = jnp.mean(log_amp, axis=(-2, -1), keepdims=True)
  std = jnp.std(log_amp, axis=(-2, -1), keepdims=True)
  score = (log_amp - mean) / jnp.maximum(std, 1e-6)
  return jnp.clip(score / _STANDARD_SCORE_RANGE, -1.0, 1.0)


def check_training_crop(config: Any) -> None:
  """Raises ValueError when a config's Welch spectra would read a single tile of its LR training crops
  (config.spectrum.size / .mode, config.data.hr_crop, config.degradation.scale)."""
  size, lr_crop = int(config.spectrum.size), int(config.data.hr_crop) // int(config.degradation.scale)
  if config.spectrum.mode == 'welch' and lr_crop < size + size // 2:
    raise ValueError(f"spectrum.mode='welch' averages {size}² tiles with 50% overlap, but the LR training "
                     f'crop is {lr_crop}² (data.hr_crop={config.data.hr_crop} / scale '
                     f'{config.degradation.scale}): one tile, the same as crop mode. Set --config.data.hr_crop '
                     f'to at least {(size + size // 2) * int(config.degradation.scale)} (e.g. '
                     f'{2 * size * int(config.degradation.scale)}: 3×3 tiles), or leave spectrum.mode unset.')


@functools.partial(jax.jit, static_argnames=('size', 'mode', 'window'))
def amplitude_spectrum(lr: jnp.ndarray, size: int = 256, mode: str = 'crop',
                       window: bool = True) -> jnp.ndarray:
  """The generator input: normalised log amplitude spectrum of the LR luma (paper §3.3).

  Args:
    lr: (B, H, W, C) or (H, W, C) images in [0, 1], C = 3 (RGB) or 1 (luma); any H, W ≥ 2.
    size: output side (256 in the paper).
    mode: 'crop' or 'welch', see `power_spectrum`.
    window: Hann taper before the FFT, see `power_spectrum`.

  Returns:
    (B, size, size, 1) or (size, size, 1) float32 in [-1, 1]: per map, the standard score of
    log(|FFT| / RMS + 1e-4) divided by 3 and clipped; DC at (size//2, size//2), frequency axis in
    normalised units (bin i ↔ (i − size/2)/size cycles/pixel) for every LR size.
  """
  power = power_spectrum(lr, size=size, mode=mode, window=window)
  return _normalise_log_amplitude(power)[..., None]


@functools.partial(jax.jit, static_argnames=('size',))
def spatial_input(lr: jnp.ndarray, size: int = 256) -> jnp.ndarray:
  """Spatial-domain generator input for the Table 3 ablation: the LR luma on a size×size canvas.

  Larger images are centre-cropped, smaller ones reflect-padded (symmetrically about the centre);
  the luma range [16/255, 235/255] is mapped linearly onto [-1, 1].

  Args:
    lr: (B, H, W, C) or (H, W, C) images in [0, 1], C = 3 (RGB) or 1 (luma).
    size: output side.

  Returns:
    (B, size, size, 1) or (size, size, 1) float32, in [-1, 1] for RGB inputs in [0, 1].
  """
  lr, batched = _add_batch(lr, 3, 'lr', '(B, H, W, C) or (H, W, C)')
  y = _luma(lr)
  h, w = y.shape[1:]
  top, left = max(h - size, 0) // 2, max(w - size, 0) // 2
  y = y[:, top:top + min(h, size), left:left + min(w, size)]
  ph, pw = size - y.shape[1], size - y.shape[2]
  y = jnp.pad(y, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), mode='reflect')
  out = (2.0 * (y - color.Y_MIN) / (color.Y_MAX - color.Y_MIN) - 1.0)[..., None]
  return out if batched else out[0]


# ----------------------------------------------------------------------------------------------
# Kernel map (generator output, "Kernel↑").


@functools.lru_cache(maxsize=None)
def upsampling_matrix(size: int, ksize: int) -> np.ndarray:
  """(size, ksize) linear interpolation, half-pixel centres (as jax.image.resize 'linear' does).

  Output pixel i samples the kernel at x = (i + ½)·ksize/size − ½, clamped to the kernel's extent,
  so the kernel's centre lands on the map's centre and the operator commutes with flipping.
  """
  if ksize < 1 or size < ksize:
    raise ValueError(
        f'kernel maps upsample: need 1 ≤ ksize ≤ size, got ksize={ksize}, size={size}.')
  x = np.clip((np.arange(size) + 0.5) * ksize / size - 0.5, 0.0, ksize - 1)
  left = np.minimum(np.floor(x).astype(int), max(ksize - 2, 0))
  frac = x - left
  a = np.zeros((size, ksize))
  rows = np.arange(size)
  a[rows, left] += 1.0 - frac
  if ksize > 1:
    a[rows, left + 1] += frac
  return a


@functools.lru_cache(maxsize=None)
def _upsampling_pinv(size: int, ksize: int) -> np.ndarray:
  return np.linalg.pinv(upsampling_matrix(size, ksize))


@functools.partial(jax.jit, static_argnames=('size',))
def kernel_to_map(kernel: jnp.ndarray, size: int = 256) -> jnp.ndarray:
  """Kernel↑ (Table 3): the kernel interpolated to size×size, scaled to the generator range [-1, 1].

  map = 2·(A k Aᵀ)/max(A k Aᵀ) − 1 with A = `upsampling_matrix(size, k)`. Linear interpolation
  keeps non-negative kernels non-negative (no ringing), so the background is exactly −1 and the
  peak exactly 1; the per-kernel scale is irrelevant because `map_to_kernel` renormalises.

  Args:
    kernel: (B, k, k) or (k, k) non-negative kernels, k ≤ size.
    size: map side (the generator's output size).

  Returns:
    (B, size, size, 1) or (size, size, 1) float32 in [-1, 1] (all −1 for an all-zero kernel).
  """
  kernel, batched = _add_batch(kernel, 2, 'kernel', '(B, k, k) or (k, k)')
  if kernel.shape[1] != kernel.shape[2]:
    raise ValueError(f'kernels must be square, got shape {kernel.shape}.')
  a = jnp.asarray(upsampling_matrix(size, kernel.shape[1]), jnp.float32)
  up = jnp.einsum('ij,bjk,lk->bil', a, kernel.astype(jnp.float32), a, precision=_HIGHEST)
  peak = jnp.max(up, axis=(1, 2), keepdims=True)
  # The clip only removes float round-off, so that the peak is exactly 1.
  out = jnp.clip(2.0 * (up / jnp.maximum(peak, 1e-30)) - 1.0, -1.0, 1.0)[..., None]
  return out if batched else out[0]


@functools.partial(jax.jit, static_argnames=('ksize',))
def map_to_kernel(kernel_map: jnp.ndarray, ksize: int) -> jnp.ndarray:
  """Inverse of `kernel_to_map`: least-squares k×k kernel, clipped at 0 and normalised to sum 1.

  k = A⁺ ((map + 1)/2) A⁺ᵀ with A⁺ the pseudo-inverse of the upsampling: exact on maps that
  `kernel_to_map` produced and the least-squares fit for anything else (a generator output).
  A map whose fit has no positive mass decodes to the identity kernel (a centred delta), i.e.
  "no blur", instead of dividing by zero.

  Args:
    kernel_map: (B, S, S, 1) or (S, S, 1) maps in [-1, 1].
    ksize: side of the kernel to return (≤ S).

  Returns:
    (B, ksize, ksize) or (ksize, ksize) float32, non-negative, each summing to 1.
  """
  kernel_map, batched = _add_batch(kernel_map, 3, 'kernel_map', '(B, S, S, 1) or (S, S, 1)')
  if kernel_map.shape[-1] != 1 or kernel_map.shape[1] != kernel_map.shape[2]:
    raise ValueError(f'kernel maps must be square with one channel, got shape {kernel_map.shape}.')
  pinv = jnp.asarray(_upsampling_pinv(kernel_map.shape[1], ksize), jnp.float32)
  up = (kernel_map[..., 0].astype(jnp.float32) + 1.0) / 2.0
  kernel = jnp.maximum(jnp.einsum('ij,bjk,lk->bil', pinv, up, pinv, precision=_HIGHEST), 0.0)
  total = jnp.sum(kernel, axis=(1, 2), keepdims=True)
  delta = jnp.zeros((ksize, ksize), jnp.float32).at[ksize // 2, ksize // 2].set(1.0)
  kernel = jnp.where(total > 0, kernel / jnp.where(total > 0, total, 1.0), delta)
  return kernel if batched else kernel[0]


# ----------------------------------------------------------------------------------------------
# Ambiguities of the amplitude spectrum: shift and 180° rotation.


# ----------------------------------------------------------------------------------------------
# The 180° ambiguity: |F(k)| = |F(rot180 k)|, so the spectrum cannot tell a kernel from its rotation.
# Its one home: losses (maps), metrics (kernels) and evaluation use these.


def rot180(x: jnp.ndarray, axes: tuple[int, int] = (-2, -1)) -> jnp.ndarray:
  """x rotated by 180° in the plane of `axes` (kernels (…, k, k): the last two; maps (B, S, S, 1): (1, 2))."""
  return jnp.flip(x, axis=axes)


def _orientation_distances(a: jnp.ndarray, b: jnp.ndarray, axes: tuple[int, int],
                           squared: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Mean |a − b| and mean |a − rot180(b)| (their squares' means if `squared`) over the axes from the
  first rotated one to the last."""
  first = min(ax % a.ndim for ax in axes)
  reduce = tuple(range(first, a.ndim))
  error = jnp.square if squared else jnp.abs
  return (jnp.mean(error(a - b), axis=reduce),
          jnp.mean(error(a - rot180(b, axes)), axis=reduce))


def align_orientation(est: jnp.ndarray, ref: jnp.ndarray,
                      axes: tuple[int, int] = (-2, -1)) -> jnp.ndarray:
  """Per sample, `ref` or its 180° rotation, whichever is closer to `est` in mean |·| (a tie keeps `ref`)."""
  direct, rotated = _orientation_distances(est, ref, axes)
  use_rotated = (rotated < direct).reshape(direct.shape + (1,) * (ref.ndim - direct.ndim))
  return jnp.where(use_rotated, rot180(ref, axes), ref)


def kernel_distance(a: jnp.ndarray, b: jnp.ndarray, flip_invariant: bool,
                    axes: tuple[int, int] = (-2, -1), squared: bool = False) -> jnp.ndarray:
  """Mean |a − b| per sample (over the axes from the first of `axes` to the last; mean (a − b)² if
  `squared`); with `flip_invariant`, the smaller of that and the distance to rot180(b): the one distance
  of losses (maps, axes (1, 2)), training evaluation and metrics (kernels). Whether a family needs it:
  `kernels.flip_invariant`."""
  if a.shape != b.shape:
    raise ValueError(f'kernel_distance needs two arrays of the same shape, got {a.shape} and {b.shape}.')
  direct, rotated = _orientation_distances(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), axes,
                                           squared)
  return jnp.minimum(direct, rotated) if flip_invariant else direct


def _shift_matrix(shift: jnp.ndarray, n: int) -> jnp.ndarray:
  """(B, n, n) linear interpolation moving a signal by −shift: out[i] = in(i + shift), 0 outside."""
  pos = jnp.arange(n, dtype=jnp.float32)
  offset = pos[None, :, None] + shift[:, None, None] - pos[None, None, :]
  return jnp.maximum(0.0, 1.0 - jnp.abs(offset))


def _centre_on_mass(kernel: jnp.ndarray) -> jnp.ndarray:
  """Moves the centre of mass onto the centre pixel by a separable linear-interpolation shift."""
  n = kernel.shape[-1]
  pos = jnp.arange(n, dtype=jnp.float32) - (n - 1) / 2
  com_row = jnp.einsum('bij,i->b', kernel, pos, precision=_HIGHEST)
  com_col = jnp.einsum('bij,j->b', kernel, pos, precision=_HIGHEST)
  moved = jnp.einsum('bij,bjk,blk->bil', _shift_matrix(com_row, n), kernel,
                     _shift_matrix(com_col, n), precision=_HIGHEST)
  return moved / jnp.sum(moved, axis=(1, 2), keepdims=True)


def _third_moment(kernel: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Σ_p k(p)·|p|²·p about the centre, from k − rot180(k) so that it is exactly odd under rot180."""
  n = kernel.shape[-1]
  pos = jnp.arange(n, dtype=jnp.float32) - (n - 1) / 2
  rows, cols = jnp.meshgrid(pos, pos, indexing='ij')
  odd = kernel - rot180(kernel)
  weight = rows ** 2 + cols ** 2
  m_row = jnp.einsum('bij,ij->b', odd, weight * rows, precision=_HIGHEST)
  m_col = jnp.einsum('bij,ij->b', odd, weight * cols, precision=_HIGHEST)
  return m_row, m_col


@jax.jit
def canonical_kernel(kernel: jnp.ndarray) -> jnp.ndarray:
  """A unique representative of {k, rot180(k), shifted copies}: what the spectrum can identify.

  1. Normalise to sum 1 and move the centre of mass exactly onto the centre pixel with a
     sub-pixel linear-interpolation shift (mass shifted past the border is dropped and the rest
     renormalised; kernels with a margin lose nothing). A shifted copy has the same fractional
     offset, so it lands on the same kernel; a centred kernel is left as it is.
  2. Of the centred kernel c and rot180(c), keep the one whose third-moment vector
     m = Σ k(p)|p|²p (p = offset from the centre in (row, col)) points down, i.e. m_row > 0, or
     m_row = 0 and m_col ≥ 0. m is odd under 180° rotation, so exactly one of the two qualifies
     unless m = 0 (point-symmetric kernels, which are their own rotation).
  Any rule choosing between k and rot180(k) must jump somewhere; this one jumps only where the
  kernel's third moment is horizontal, and a loss on canonical targets should still use
  `kernel_distance(…, flip_invariant=True)` near there.

  Args:
    kernel: (B, k, k) or (k, k) non-negative kernels with positive sum, k odd.

  Returns:
    Same shape, float32, non-negative, sum 1, centre of mass at the centre pixel.
  """
  kernel, batched = _add_batch(kernel, 2, 'kernel', '(B, k, k) or (k, k)')
  if kernel.shape[1] != kernel.shape[2] or kernel.shape[1] % 2 == 0:
    raise ValueError(
        f'canonical_kernel needs square kernels of odd size, got shape {kernel.shape}.')
  kernel = kernel.astype(jnp.float32)
  kernel = _centre_on_mass(kernel / jnp.sum(kernel, axis=(1, 2), keepdims=True))
  m_row, m_col = _third_moment(kernel)
  flip = (m_row < 0) | ((m_row == 0) & (m_col < 0))
  kernel = jnp.where(flip[:, None, None], rot180(kernel), kernel)
  return kernel if batched else kernel[0]
