"""LR synthesis LR = (HR ⊗ k)↓s + n (paper §3.1, Eq. 1), with the settings of §4.

Images are float32 NHWC in [0, 1]; every image in a batch has its own kernel.

* `blur` applies a (B, k, k) kernel batch as cross-correlation (PyTorch `F.conv2d` convention) with
  reflect boundary handling (`numpy.pad(mode='reflect')` = `ReflectionPad2d`, edge pixel not
  repeated), computed with real FFTs on a canvas of a fast ("smooth", 2^a·3^b·5^c) size.
* `downsample` is 'direct' s-fold subsampling `x[:, ::s, ::s]` (SRMD/USRNet/KernelGAN/FKP) or
  'bicubic', MATLAB `imresize(x, 1/s)` with antialiasing, as two matrix products.
* `blur_downsample` = `downsample(blur(x, k), s, 'direct')`, computing only the kept rows and columns.
* `add_noise` adds Gaussian noise with σ ~ U[0, noise_max] per image, clips to [0, 1] and can round
  to uint8 levels.
* `degrade` draws kernels (`kernels.sample_kernels`) and runs the whole pipeline in one jitted call;
  `degrade_with_kernels` does the same for given kernels (saved test sets, true-kernel evaluation).

    out = degrade(hr, key, config.degradation)   # out['lr'], out['kernel'], out['noise_sigma']

`config` is the `degradation` section of `configs/common.py`. It is static: each distinct config and
batch shape compiles once, and `degrade` can be called inside another jitted function.
"""
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from s2k_jax import kernels as kernels_lib

SCALES = (2, 3, 4)
DOWNSAMPLE_METHODS = ('direct', 'bicubic')


def fast_fft_size(n: int, multiple_of: int = 1) -> int:
  """Smallest 2^a·3^b·5^c multiple of `multiple_of` that is ≥ n.

  FFTs of such sizes are several times faster than of sizes with large prime factors (278 → 288
  halves the time of a 256² blur with a 23×23 kernel).
  """
  if n < 1:
    raise ValueError(f'FFT size must be positive, got {n}.')
  size = -(-n // multiple_of)
  while True:
    m = size
    for p in (2, 3, 5):
      while m % p == 0:
        m //= p
    if m == 1:
      return size * multiple_of
    size += 1


def check_scale(scale: int) -> None:
  if scale not in SCALES:
    raise ValueError(f"scale must be one of {SCALES} (the paper's ×2/×3/×4), got {scale!r}.")


def check_kernels(kernels: Any) -> None:
  """Raises ValueError unless `kernels` is a (B, k, k) batch of usable kernels.

  Shapes are always checked; values (finite, ≥ 0, positive sum: `kernels.validate_kernel`) only on
  concrete arrays, at the cost of one small device-to-host copy, since traced values are unknown.
  """
  shape = np.shape(kernels)
  if len(shape) != 3:
    raise ValueError(f'kernels must have shape (batch, k, k), one kernel per image; got {shape}.')
  if isinstance(kernels, jax.core.Tracer):
    if shape[1] != shape[2] or shape[1] % 2 == 0:
      raise ValueError(f'kernels must be square with an odd side, got {shape[1:]}.')
    return
  kernels_lib.validate_kernel(kernels)


def _check_images(images: Any) -> None:
  if np.ndim(images) != 4:
    raise ValueError(
        f'images must be a (batch, height, width, channels) array, got shape {np.shape(images)}.')


def _check_blur_shapes(image_shape: tuple[int, ...], kernel_shape: tuple[int, ...]) -> None:
  """Images (B, H, W, C) against kernels (B, k, k)."""
  batch, height, width = image_shape[:3]
  if kernel_shape[0] != batch:
    raise ValueError(f'need one kernel per image: {batch} images but {kernel_shape[0]} kernels.')
  pad = kernel_shape[-1] // 2
  if min(height, width) <= pad:
    size = kernel_shape[-1]
    raise ValueError(
        f'image {height}x{width} is too small for a {size}x{size} kernel: reflect padding by {pad} '
        f'needs height and width > {pad}. Use larger crops or a smaller kernel.')


def _check_downsample(scale: int, method: str) -> None:
  check_scale(scale)
  if method not in DOWNSAMPLE_METHODS:
    raise ValueError(f'downsample method must be one of {DOWNSAMPLE_METHODS}, got {method!r}.')


def _reflect_indices(size: int, pad: int, length: int) -> np.ndarray:
  """Source index of each of `length` positions of an axis reflect-padded by `pad` on both sides.

  Positions past size + 2·pad continue the reflection; the correlations below never read them into a
  kept output, they only fill the canvas up to a fast FFT size.
  """
  period = max(2 * (size - 1), 1)  # a 1-pixel axis (only with a 1×1 kernel) reflects onto itself
  j = np.mod(np.arange(length) - pad, period)
  return np.where(j < size, j, period - j)


def reflect_canvas(images: jnp.ndarray, pad: int, rows: int, cols: int) -> jnp.ndarray:
  """(B, H, W, C) -> (B, C, rows, cols) reflect-padded planes in one gather.

  Channels first because XLA:CPU computes FFTs over the two minor axes ~20x faster than over axes
  (1, 2) of NHWC.
  """
  row_index = _reflect_indices(images.shape[1], pad, rows)
  col_index = _reflect_indices(images.shape[2], pad, cols)
  planes = jnp.transpose(images.astype(jnp.float32), (0, 3, 1, 2))
  return planes[:, :, row_index[:, None], col_index[None, :]]


@jax.jit
def _blur(images, kernels):
  _, height, width, _ = images.shape
  pad = kernels.shape[-1] // 2
  fft_shape = (fast_fft_size(height + 2 * pad), fast_fft_size(width + 2 * pad))
  canvas = reflect_canvas(images, pad, *fft_shape)
  # Correlation = product with the conjugate kernel spectrum (convolution with the flipped kernel).
  kernel_spectrum = jnp.conj(jnp.fft.rfft2(kernels.astype(jnp.float32), s=fft_shape))
  product = jnp.fft.rfft2(canvas) * kernel_spectrum[:, None]
  blurred = jnp.fft.irfft2(product, s=fft_shape)[..., :height, :width]
  return jnp.transpose(blurred, (0, 2, 3, 1))


def blur(images: jnp.ndarray, kernels: jnp.ndarray) -> jnp.ndarray:
  """HR ⊗ k for a batch: (B, H, W, C) images, (B, k, k) kernels, k odd -> (B, H, W, C) float32.

  out[b, i, j, c] = Σ_{u,v} k[b, u, v] · x[b, i+u-k//2, j+v-k//2, c] with reflect padding, i.e.
  `F.conv2d(ReflectionPad2d(k//2)(x), k)` per image. Needs H, W > k//2.

  The padded image sits at the canvas origin; output pixel n reads canvas pixels n..n+k-1, all below
  H + 2·(k//2) ≤ canvas size, so the circular FFT correlation never wraps into a kept pixel.
  """
  _check_images(images)
  check_kernels(kernels)
  _check_blur_shapes(images.shape, kernels.shape)
  return _blur(images, kernels)


def _strided_row_correlation(row_spectra: jnp.ndarray, kernel_spectra: jnp.ndarray, stride: int,
                             out_rows: int) -> jnp.ndarray:
  """out[b, c, m, f] = Σ_u K[b, u, f] · X[b, c, stride·m + u, f]: the vertical half of the blur.

  Written on real and imaginary parts because XLA:CPU vectorises float32 arithmetic better than
  complex64 (measured ~20% faster here).
  """
  span = stride * (out_rows - 1) + 1
  x_re, x_im = jnp.real(row_spectra), jnp.imag(row_spectra)
  k_re = jnp.real(kernel_spectra)[:, None, :, None, :]
  k_im = jnp.imag(kernel_spectra)[:, None, :, None, :]
  out_re, out_im = 0.0, 0.0
  for u in range(kernel_spectra.shape[1]):
    rows = slice(u, u + span, stride)
    out_re = out_re + k_re[:, :, u] * x_re[:, :, rows] - k_im[:, :, u] * x_im[:, :, rows]
    out_im = out_im + k_re[:, :, u] * x_im[:, :, rows] + k_im[:, :, u] * x_re[:, :, rows]
  return jax.lax.complex(out_re, out_im)


def _decimating_irfft(spectra: jnp.ndarray, length: int, stride: int) -> jnp.ndarray:
  """irfft(spectra, n=length)[..., ::stride] through aliasing: subsampling folds the spectrum.

  The (length/stride)-point DFT of x[::stride] is (1/stride)·Σ_j X[g + j·length/stride] over the full
  Hermitian spectrum X, so one short inverse FFT suffices. `length` must be a multiple of `stride`.
  Built from slices and a reshape rather than a gather, which XLA:CPU fused into the preceding
  multiply-adds and ran 2.5x slower.
  """
  negative = jnp.conj(jnp.flip(spectra[..., 1:length - length // 2], axis=-1))
  full = jnp.concatenate([spectra, negative], axis=-1)
  short = length // stride
  folded = full.reshape(full.shape[:-1] + (stride, short)).sum(axis=-2)
  return jnp.fft.irfft(folded[..., :short // 2 + 1] / stride, n=short, axis=-1)


@functools.partial(jax.jit, static_argnames='scale')
def _blur_downsample(images, kernels, scale):
  _, height, width, _ = images.shape
  pad = kernels.shape[-1] // 2
  fft_width = fast_fft_size(width + 2 * pad, multiple_of=scale)
  canvas = reflect_canvas(images, pad, height + 2 * pad, fft_width)
  row_spectra = jnp.fft.rfft(canvas, axis=-1)
  kernel_spectra = jnp.conj(jnp.fft.rfft(kernels.astype(jnp.float32), n=fft_width, axis=-1))
  out_rows, out_cols = -(-height // scale), -(-width // scale)
  lr_spectra = _strided_row_correlation(row_spectra, kernel_spectra, scale, out_rows)
  lr = _decimating_irfft(lr_spectra, fft_width, scale)[..., :out_cols]
  return jnp.transpose(lr, (0, 2, 3, 1))


def blur_downsample(images: jnp.ndarray, kernels: jnp.ndarray, scale: int) -> jnp.ndarray:
  """(HR ⊗ k)↓s with direct subsampling: `downsample(blur(images, kernels), scale)`, but faster.

  (B, H, W, C), (B, k, k) -> (B, ceil(H/s), ceil(W/s), C) float32. Horizontally the correlation is a
  product of row spectra (FFT over W on a smooth canvas, inverse folded to the kept columns);
  vertically it is evaluated directly at the kept rows only, k complex multiply-adds per output.
  """
  _check_images(images)
  check_kernels(kernels)
  _check_blur_shapes(images.shape, kernels.shape)
  check_scale(scale)
  return _blur_downsample(images, kernels, scale)


def cubic(x: np.ndarray) -> np.ndarray:
  """Keys' cubic convolution kernel with a = -0.5, as MATLAB `imresize` 'bicubic'."""
  ax = np.abs(x)
  near = (1.5 * ax**3 - 2.5 * ax**2 + 1.0) * (ax <= 1)
  far = (-0.5 * ax**3 + 2.5 * ax**2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
  return near + far


@functools.lru_cache(maxsize=32)
def bicubic_matrix(in_size: int, scale: int) -> np.ndarray:
  """(ceil(in_size/scale), in_size) float32 matrix of MATLAB `imresize(·, 1/scale)` on one axis.

  As MATLAB's `contributions`: the cubic is widened by `scale` (antialiasing); output pixel x (1-based)
  is centred at input coordinate u = x·scale + 0.5·(1 - scale); each row is normalised to sum 1; taps
  outside the image are mirrored with the edge pixel repeated (MATLAB 'symmetric').
  """
  check_scale(scale)
  out_size = -(-in_size // scale)
  centres = np.arange(1, out_size + 1) * scale + 0.5 * (1 - scale)
  support = 4.0 * scale
  taps = int(np.ceil(support)) + 2
  positions = np.floor(centres - support / 2)[:, None] + np.arange(taps)[None, :]
  weights = cubic((centres[:, None] - positions) / scale) / scale
  weights /= weights.sum(axis=1, keepdims=True)
  mirrored = np.concatenate([np.arange(in_size), np.arange(in_size - 1, -1, -1)])
  columns = mirrored[np.mod(positions.astype(np.int64) - 1, 2 * in_size)]
  matrix = np.zeros((out_size, in_size), np.float64)
  np.add.at(matrix, (np.repeat(np.arange(out_size), taps), columns.ravel()), weights.ravel())
  return matrix.astype(np.float32)


@functools.partial(jax.jit, static_argnames=('scale', 'method'))
def _downsample(images, scale, method):
  images = images.astype(jnp.float32)
  if method == 'direct':
    return images[:, ::scale, ::scale]
  rows = bicubic_matrix(images.shape[1], scale)
  cols = bicubic_matrix(images.shape[2], scale)
  return jnp.einsum('ih,bhwc,jw->bijc', rows, images, cols, precision=jax.lax.Precision.HIGHEST)


def downsample(images: jnp.ndarray, scale: int, method: str = 'direct') -> jnp.ndarray:
  """↓s of Eq. 1: (B, H, W, C) -> (B, ceil(H/s), ceil(W/s), C) float32.

  'direct' keeps pixels (s·i, s·j), offset 0; 'bicubic' is MATLAB `imresize(x, 1/s)` with
  antialiasing. H and W need not be multiples of s; crop HR to multiples of s when SR outputs must
  align with it (then LR side × s = HR side).
  """
  _check_images(images)
  _check_downsample(scale, method)
  return _downsample(images, scale, method)


@functools.partial(jax.jit, static_argnames='quantize')
def add_noise(lr: jnp.ndarray, key: jax.Array, noise_max: float,
              quantize: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
  """+ n of Eq. 1: Gaussian noise with σ ~ U[0, noise_max] per image, then clip to [0, 1].

  Returns (noisy images, σ of shape (B,)), float32. With `quantize`, values are rounded to the 256
  uint8 levels, round(x·255)/255, as if the LR image were saved as an 8-bit file.
  """
  sigma_key, noise_key = jax.random.split(key)
  sigma = noise_max * jax.random.uniform(sigma_key, (lr.shape[0],), jnp.float32)
  noise = jax.random.normal(noise_key, lr.shape, jnp.float32)
  noisy = jnp.clip(lr + sigma.reshape((-1,) + (1,) * (lr.ndim - 1)) * noise, 0.0, 1.0)
  if quantize:
    noisy = jnp.round(noisy * 255.0) / 255.0
  return noisy, sigma


def _static_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The settings that change the computed graph, checked, as hashable jit arguments."""
  _check_downsample(config.scale, config.downsample)
  if not config.noise_max >= 0:
    raise ValueError(f'noise_max must be ≥ 0 (σ on the [0, 1] scale), got {config.noise_max}.')
  return dict(scale=int(config.scale), method=str(config.downsample), quantize=bool(config.quantize))


@functools.partial(jax.jit, static_argnames=('scale', 'method', 'quantize'))
def _degrade_with_kernels(hr, kernels, key, noise_max, *, scale, method, quantize):
  kernels = kernels.astype(jnp.float32)
  if method == 'direct':
    lr = _blur_downsample(hr, kernels, scale)
  else:
    lr = _downsample(_blur(hr, kernels), scale, method)
  lr, sigma = add_noise(lr, key, noise_max, quantize)
  return {'lr': lr, 'kernel': kernels, 'noise_sigma': sigma}


def degrade_with_kernels(hr: jnp.ndarray, kernels: jnp.ndarray, key: jax.Array,
                         config: ml_collections.ConfigDict) -> dict[str, jnp.ndarray]:
  """Eq. 1 with given kernels, jitted: hr (B, H, W, C) in [0, 1], kernels (B, k, k) -> dict of float32.

  lr (B, ceil(H/s), ceil(W/s), C) in [0, 1], kernel (B, k, k) (the input), noise_sigma (B,). Reads
  config.scale, .downsample, .noise_max and .quantize; `key` drives the noise only.
  """
  _check_images(hr)
  check_kernels(kernels)
  _check_blur_shapes(hr.shape, kernels.shape)
  return _degrade_with_kernels(hr, kernels, key, float(config.noise_max), **_static_fields(config))


@functools.partial(jax.jit, static_argnames=('config',))
def _degrade(hr, key, config):
  kernel_key, noise_key = jax.random.split(key)
  kernels = kernels_lib.sample_kernels(kernel_key, hr.shape[0], config)
  return _degrade_with_kernels(hr, kernels, noise_key, config.noise_max, **_static_fields(config))


def degrade(hr: jnp.ndarray, key: jax.Array,
            config: ml_collections.ConfigDict) -> dict[str, jnp.ndarray]:
  """Eq. 1 with kernels drawn from config.family; returns what `degrade_with_kernels` returns.

  Kernels come from `kernels.sample_kernels(kernel_key, B, config)` and noise from `noise_key`, where
  kernel_key, noise_key = jax.random.split(key): the same key and config give the same batch.
  """
  _check_images(hr)
  _check_blur_shapes(hr.shape, (hr.shape[0],) + (config.kernel_size,) * 2)
  _static_fields(config)
  return _degrade(hr, key, ml_collections.FrozenConfigDict(config))
