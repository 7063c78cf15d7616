"""LR synthesis LR = (HR ⊗ k)↓s + n (paper §3.1, Eq. 1), with the settings of §4.

Images are float32 NHWC in [0, 1]; every image in a batch has its own kernel.

* `blur` applies a (B, k, k) kernel batch as cross-correlation (PyTorch `F.conv2d` convention) with
  reflect boundary handling (`numpy.pad(mode='reflect')` = `ReflectionPad2d`, edge pixel not
  repeated), computed with real FFTs on a canvas of a fast ("smooth", 2^a·3^b·5^c) size.
* `downsample` is 'direct' s-fold subsampling `x[:, ::s, ::s]` (SRMD/USRNet/KernelGAN/FKP) or one of
  the `RESIZERS` as MATLAB `imresize(x, 1/s, method)` with antialiasing ('bicubic', 'area' = s×s means,
  'bilinear', 'lanczos' = Lanczos3; PIL and OpenCV INTER_AREA agree away from the borders), as matrix
  products. Training data can also draw a resizer per image (`RANDOM_RESIZER`), as users' photos
  come from any resizer.
  Where each puts its LR pixels on the HR grid (`grid_offset`: the 'direct' or the 'centre' grid), the
  kernel a resizer's LR shows (`effective_kernel`) and the bicubic baseline on the LR's own grid
  (`bicubic_upsample`) are the pixel-grid convention of docs/conventions.md.
* `blur_downsample` = `downsample(blur(x, k), s, 'direct')`, computing only the kept rows and columns.
* `add_noise` adds Gaussian noise with σ ~ U[0, noise_max] per image, clips to [0, 1] and can round
  to uint8 levels.
* `jpeg` is baseline JPEG as libjpeg (Pillow) does it, batched, jittable, one traced quality per image;
  `add_jpeg` applies it with probability jpeg_prob, quality ~ U{jpeg_quality_range}: LR =
  JPEG_q((HR ⊗ k)↓s + n), the LR images users have (off by default, the paper's setting).
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
RESIZERS = ('bicubic', 'area', 'bilinear', 'lanczos')   # antialiased, on the 'centre' grid
DOWNSAMPLE_METHODS = ('direct',) + RESIZERS
# Training LR only: each image shrunk by one of RESIZERS drawn at random (key-driven, per image). An
# estimator trained on it still learns the blur, and its kernels are read as blurs before a bicubic
# resize; a USRNet trained on it is told 'bicubic' whatever the resizer, as on photos
# (`nominal_downsample`; why: docs/conventions.md, "Random resizer").
RANDOM_RESIZER = 'random_resizer'


# Fields of each kernel family (kernels.sample_kernels reads them); other families' are absent.
FAMILY_FIELDS = {
    # σx, σy ~ U[sigma_range], θ ~ U[0, 2π) (BasicSR's bivariate Gaussian; docs/conventions.md);
    # sigma_prior 'log_uniform' draws ln σ uniformly instead (kernels.SIGMA_PRIORS); isotropic_prob > 0
    # sets σy = σx on that share of the kernels.
    'gaussian': dict(kernel_size=15, sigma_range=(1.0, 3.0), sigma_prior='uniform', isotropic_prob=0.0),
    # r ~ U[radius_range] (MATLAB fspecial('disk', r)) in a 15×15 canvas.
    'disk': dict(kernel_size=15, radius_range=(1.0, 3.0)),
    # Boracchi & Foi (2012) trajectories. The paper draws from a fixed bank of 500 kernels
    # (motion_bank_size; 0 draws a fresh kernel each time); motion_bank_path '' builds it from the seed.
    # Trajectories: exposure_range (0.15, 0.3), motion_canvas 64, motion_samples 2000, motion_max_length 60,
    # motion_anxiety 0.005 (kernels.MOTION_TRAJECTORY_DEFAULTS; not read with motion_bank_path).
    'motion': dict(kernel_size=23, **kernels_lib.MOTION_TRAJECTORY_DEFAULTS, motion_bank_size=500,
                   **kernels_lib.MOTION_BANK_DEFAULTS),  # motion_bank_seed=0, motion_bank_path=''
}
# Each kernel from one of the three families, equally likely, all on the motion canvas (23×23; a
# Gaussian or disk of the ranges above has no mass outside 15×15, so it is the same kernel padded).
FAMILY_FIELDS[kernels_lib.MIXED] = {**FAMILY_FIELDS['gaussian'], **FAMILY_FIELDS['disk'],
                                    **FAMILY_FIELDS['motion']}


def default_config(family: str) -> ml_collections.ConfigDict:
  """The degradation section of an experiment config: kernel family and LR synthesis, LR =
  (HR ⊗ k)↓s + n (paper Eq. 1, §4), with the paper's settings."""
  if family not in FAMILY_FIELDS:
    raise ValueError(f'unknown kernel family {family!r}; choose one of {sorted(FAMILY_FIELDS)}.')
  d = ml_collections.ConfigDict()
  d.family = family                # 'gaussian' | 'motion' | 'disk' | 'mixed' (all three, equally)
  d.scale = 4                      # 2, 3 or 4
  d.downsample = 'direct'          # 'direct' (x[::s]) | a resizer: 'bicubic' (MATLAB imresize) | 'area'
                                   # (s×s means) | 'bilinear' | 'lanczos' | 'random_resizer' (estimators, USRNet)
  d.noise_max = 0.0                # σ ~ U[0, noise_max] per image, on the [0, 1] scale
  d.noise_prob = 1.0               # share of LR images that get that noise (the others: σ = 0)
  d.quantize = False               # round LR to uint8 levels after the noise
  d.jpeg_prob = 0.0                # share of LR images saved as JPEG after the noise (0: none, the paper)
  d.jpeg_quality_range = tuple(JPEG_DEFAULTS['jpeg_quality_range'])  # quality ~ U{q_min..q_max}
  d.update(FAMILY_FIELDS[family])
  return d


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
  for rows in held_rows(kernels):  # several processes: each checks the rows it holds
    kernels_lib.validate_kernel(rows)


def held_rows(x: Any) -> list[Any]:
  """The parts of an array this process holds: an array sharded over several processes' devices gives
  its addressable shards (a process can read no other part), anything else itself whole."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return [shard.data for shard in x.addressable_shards]
  return [x]


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


def _check_downsample(scale: int, method: str, random_ok: bool = False) -> None:
  check_scale(scale)
  if not (method in DOWNSAMPLE_METHODS or (random_ok and method == RANDOM_RESIZER)):
    lr_grid(method)  # the error that says what each choice is for


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


def box(x: np.ndarray) -> np.ndarray:
  """MATLAB `imresize`'s 'box' kernel: 1 on [-0.5, 0.5), 0 elsewhere (at integer factors: area
  averaging, as OpenCV INTER_AREA and PIL BOX)."""
  return ((x >= -0.5) & (x < 0.5)).astype(np.float64)


def triangle(x: np.ndarray) -> np.ndarray:
  """MATLAB `imresize`'s 'bilinear' (triangle) kernel, PIL BILINEAR's filter."""
  return np.maximum(1.0 - np.abs(x), 0.0)


def lanczos3(x: np.ndarray) -> np.ndarray:
  """MATLAB `imresize`'s 'lanczos3' kernel, PIL LANCZOS's filter: sinc(x)·sinc(x/3) on |x| < 3."""
  return np.where(np.abs(x) < 3, np.sinc(x) * np.sinc(x / 3), 0.0)


# Resizer → (MATLAB kernel, its support in input pixels before widening by the scale).
_RESIZE_KERNELS = {'bicubic': (cubic, 4.0), 'area': (box, 1.0), 'bilinear': (triangle, 2.0),
                   'lanczos': (lanczos3, 6.0)}
assert tuple(_RESIZE_KERNELS) == RESIZERS


# Where LR pixels sit on the HR grid (docs/conventions.md): 'centre' — LR pixel i covers HR pixels
# [s·i, s·i + s) and sits at their centre, as for every resizer (MATLAB, PIL, OpenCV) and camera;
# 'direct' — LR pixel i is HR pixel s·i, the papers' direct decimation x[::s].
LR_GRIDS = ('centre', 'direct')


def nominal_downsample(method: str) -> str:
  """The one downsampler a model trained on LR from `method` assumes: for RANDOM_RESIZER 'bicubic' (a
  photo's resizer is unknown; bicubic's filter is close to every resizer's), else `method` itself."""
  return 'bicubic' if method == RANDOM_RESIZER else method


def lr_grid(method: str) -> str:
  """The grid of LR images made by a downsampler: 'direct' for direct decimation, else 'centre'."""
  if method == RANDOM_RESIZER:
    raise ValueError(f"downsample='{RANDOM_RESIZER}' (a resizer drawn per image) is for training kernel "
                     f'estimators and USRNet; here one downsampler is needed: one of {DOWNSAMPLE_METHODS}.')
  if method not in DOWNSAMPLE_METHODS:
    raise ValueError(f'downsample method must be one of {DOWNSAMPLE_METHODS} (or {RANDOM_RESIZER!r} for '
                     f'training estimators and USRNet), got {method!r}.')
  return 'direct' if method == 'direct' else 'centre'


def check_grid(grid: str) -> None:
  if grid not in LR_GRIDS:
    raise ValueError(f'LR grid must be one of {LR_GRIDS} (centre: resized images and photos; direct: '
                     f'LR = HR[::s, ::s] after blur), got {grid!r}.')


def grid_offset(scale: int, grid: str) -> float:
  """HR position of LR pixel 0 along each axis: LR pixel i sits at HR s·i + offset, with offset
  (s − 1)/2 on the 'centre' grid and 0 on the 'direct' grid."""
  check_scale(scale)
  check_grid(grid)
  return (scale - 1) / 2 if grid == 'centre' else 0.0


def _resize_matrix(in_size: int, positions: np.ndarray, kernel, support: float) -> np.ndarray:
  """MATLAB's `contributions` for one axis: row r holds the weights kernel(positions[r] − j) of
  input pixels j (0-based input coordinates; `support` = the kernel's width in input pixels), each row
  normalised to sum 1; taps outside the image mirror with the edge pixel repeated ('symmetric')."""
  taps = int(np.ceil(support)) + 2
  first = np.floor(positions - support / 2)  # MATLAB's floor(u − width/2), 0-based
  index = first[:, None] + np.arange(taps)[None, :]
  weights = kernel(positions[:, None] - index)
  weights /= weights.sum(axis=1, keepdims=True)
  mirrored = np.concatenate([np.arange(in_size), np.arange(in_size - 1, -1, -1)])
  columns = mirrored[np.mod(index.astype(np.int64), 2 * in_size)]
  matrix = np.zeros((positions.size, in_size), np.float64)
  np.add.at(matrix, (np.repeat(np.arange(positions.size), taps), columns.ravel()), weights.ravel())
  return matrix


@functools.lru_cache(maxsize=64)
def downsample_matrix(in_size: int, scale: int, method: str = 'bicubic') -> np.ndarray:
  """(ceil(in_size/scale), in_size) float32 matrix of MATLAB `imresize(·, 1/scale, method)` on one
  axis, antialiased: the kernel widened by `scale`; LR pixel i is centred on HR coordinate
  s·i + (s − 1)/2 (pixel centres, `grid_offset`)."""
  _check_downsample(scale, method)
  if method == 'direct':
    raise ValueError("'direct' decimation has no resize matrix: it keeps HR pixels (s·i, s·j).")
  kernel, support = _RESIZE_KERNELS[method]
  positions = np.arange(-(-in_size // scale)) * scale + (scale - 1) / 2
  return _resize_matrix(in_size, positions, lambda x: kernel(x / scale) / scale, support * scale).astype(np.float32)


@functools.lru_cache(maxsize=64)
def upsample_matrix(in_size: int, scale: int, offset: float) -> np.ndarray:
  """(in_size·scale, in_size) float32 matrix of bicubic enlargement by `scale` (Keys a = −0.5, MATLAB
  `imresize` when enlarging, symmetric edges) for LR pixel i at HR position s·i + offset.

  With offset (s − 1)/2 this is MATLAB's `imresize(·, s)`; with offset 0 it is the bicubic
  interpolation of directly decimated LR, each LR pixel landing on the HR pixel it was taken from.
  """
  check_scale(scale)
  positions = (np.arange(in_size * scale) - offset) / scale
  return _resize_matrix(in_size, positions, cubic, 4.0).astype(np.float32)


def _separable(rows: np.ndarray, images: jnp.ndarray, cols: np.ndarray) -> jnp.ndarray:
  """rows (H', H) and cols (W', W) applied to (B, H, W, C) images: the one-axis resize matrices."""
  return jnp.einsum('ih,bhwc,jw->bijc', rows, images, cols, precision=jax.lax.Precision.HIGHEST)


@functools.partial(jax.jit, static_argnames=('scale', 'method'))
def _downsample(images, scale, method):
  images = images.astype(jnp.float32)
  if method == 'direct':
    return images[:, ::scale, ::scale]
  return _separable(downsample_matrix(images.shape[1], scale, method), images,
                    downsample_matrix(images.shape[2], scale, method))


def downsample(images: jnp.ndarray, scale: int, method: str = 'direct') -> jnp.ndarray:
  """↓s of Eq. 1: (B, H, W, C) -> (B, ceil(H/s), ceil(W/s), C) float32.

  'direct' keeps pixels (s·i, s·j) (grid offset 0); 'bicubic' is MATLAB `imresize(x, 1/s)` with
  antialiasing and 'area' the mean of each s×s block (MATLAB 'box', OpenCV INTER_AREA, PIL BOX), both
  on pixel centres (grid offset (s − 1)/2, `grid_offset`). H and W need not be multiples of s; crop
  HR to multiples of s when SR outputs must align with it (then LR side × s = HR side).
  """
  _check_images(images)
  _check_downsample(scale, method)
  return _downsample(images, scale, method)


@functools.partial(jax.jit, static_argnames='quantize')
def add_noise(lr: jnp.ndarray, key: jax.Array, noise_max: float, quantize: bool = False,
              prob: float = 1.0) -> tuple[jnp.ndarray, jnp.ndarray]:
  """+ n of Eq. 1: Gaussian noise with σ ~ U[0, noise_max] per image, then clip to [0, 1].

  Each image is noised with probability `prob` (σ = 0 otherwise; the draw comes from its own key, so
  prob = 1 gives the same images as before the option existed). Returns (noisy images, σ of shape
  (B,)), float32. With `quantize`, values are rounded to the 256 uint8 levels, round(x·255)/255, as if
  the LR image were saved as an 8-bit file.
  """
  sigma_key, noise_key = jax.random.split(key)
  sigma = noise_max * jax.random.uniform(sigma_key, (lr.shape[0],), jnp.float32)
  sigma = jnp.where(jax.random.uniform(jax.random.fold_in(key, 1), (lr.shape[0],)) < prob, sigma, 0.0)
  noise = jax.random.normal(noise_key, lr.shape, jnp.float32)
  noisy = jnp.clip(lr + sigma.reshape((-1,) + (1,) * (lr.ndim - 1)) * noise, 0.0, 1.0)
  if quantize:
    noisy = jnp.round(noisy * 255.0) / 255.0
  return noisy, sigma


JPEG_DEFAULTS = dict(jpeg_prob=0.0, jpeg_quality_range=(50, 95))


def _jpeg_fields(config: ml_collections.ConfigDict) -> tuple[float, tuple[int, int]]:
  """(probability, (q_min, q_max)) of the JPEG step, checked; configs without the fields: no JPEG."""
  prob = float(config.get('jpeg_prob', 0.0))
  low, high = (int(q) for q in config.get('jpeg_quality_range', JPEG_DEFAULTS['jpeg_quality_range']))
  if not 0.0 <= prob <= 1.0:
    raise ValueError(f'jpeg_prob must be in [0, 1] (the share of LR images saved as JPEG), got {prob}.')
  if not JPEG_QUALITIES[0] <= low <= high <= JPEG_QUALITIES[1]:
    raise ValueError(f'jpeg_quality_range must be (q_min, q_max) with {JPEG_QUALITIES[0]} ≤ q_min ≤ q_max ≤ '
                     f'{JPEG_QUALITIES[1]}, got {config.get("jpeg_quality_range")}.')
  if prob == 0 and (low, high) != JPEG_DEFAULTS['jpeg_quality_range']:
    raise ValueError(f'degradation.jpeg_quality_range={(low, high)} has no effect with degradation.jpeg_prob=0 '
                     '(no LR image is compressed): set --config.degradation.jpeg_prob, or leave the range unset.')
  return prob, (low, high)


def _noise_prob(config: ml_collections.ConfigDict) -> float:
  """The share of LR images that get noise, checked; configs without the field: every image."""
  prob = float(config.get('noise_prob', 1.0))
  if not 0.0 <= prob <= 1.0:
    raise ValueError(f'noise_prob must be in [0, 1] (the share of LR images that get noise), got {prob}.')
  if prob != 1.0 and not config.noise_max > 0:
    raise ValueError(f'degradation.noise_prob={prob} has no effect with degradation.noise_max=0 (no image is '
                     'noised): set --config.degradation.noise_max, or leave noise_prob unset.')
  return prob


def bicubic_upsample(lr: jnp.ndarray, scale: int, grid: str) -> jnp.ndarray:
  """The kernel-free baseline (Table 1's Bicubic row) on the LR image's own grid: Keys a = −0.5
  (MATLAB `imresize` when enlarging, symmetric edges), LR pixel i placed at HR s·i + `grid_offset`,
  clipped to [0, 1]; jittable. (B, h, w, C) → (B, h·s, w·s, C).

  `grid` is the LR image's (`LR_GRIDS`): 'centre' for resized images and photos (then this is MATLAB's
  `imresize(lr, s)`), 'direct' for direct decimation (each LR pixel lands on the HR pixel it was).
  """
  _, h, w, _ = lr.shape
  offset = grid_offset(scale, grid)
  up = _separable(upsample_matrix(h, scale, offset), lr.astype(jnp.float32), upsample_matrix(w, scale, offset))
  return jnp.clip(up, 0.0, 1.0)


@functools.lru_cache(maxsize=64)
def _translate_matrix(size: int, offset: float) -> np.ndarray:
  return _resize_matrix(size, np.arange(size) - offset, cubic, 4.0).astype(np.float32)


def translate(images: jnp.ndarray, offset: float) -> jnp.ndarray:
  """Moves (B, H, W, C) image content by `offset` pixels down and right: out(p) = in(p − offset),
  Keys cubic between pixels (exact for integer offsets), symmetric edges; jittable."""
  _check_images(images)
  if offset == 0:
    return images
  return _separable(_translate_matrix(images.shape[1], float(offset)), images,
                    _translate_matrix(images.shape[2], float(offset)))


def antialias_taps(scale: int, method: str) -> tuple[np.ndarray, np.ndarray]:
  """(positions, weights) of a downsampler's 1-D filter around the LR pixel's own position on the HR
  grid: HR pixels at s·i + grid_offset + position are averaged with these weights (sum 1). 'direct':
  one tap at 0; 'bicubic': the widened cubic (taps at half-pixel positions for even s); 'area': s taps."""
  offset = grid_offset(scale, lr_grid(method))
  if method == 'direct':
    return np.zeros(1), np.ones(1)
  kernel, support = _RESIZE_KERNELS[method]
  reach = int(np.ceil(support * scale / 2 + offset)) + 1
  positions = np.arange(-reach, reach + 1) - offset
  weights = kernel(positions / scale) / scale
  keep = weights != 0
  return positions[keep], weights[keep] / weights[keep].sum()


def effective_kernel(kernels: jnp.ndarray, scale: int, method: str, size: int | None = None) -> jnp.ndarray:
  """The kernel LR made by blurring with `kernels` and downsampling by `method` shows on its own grid:
  the blur ⊗ the downsampler's filter (`antialias_taps`), centred on the LR pixel (docs/conventions.md).

  (B, k, k) → (B, size, size) float32 summing to 1 (size defaults to k + the filter's reach, odd);
  jittable. With it, `method`'s LR is the blur by it sampled at HR s·i + `grid_offset` — exactly at ×3
  and for 'direct' (the blur itself), and as a band-limited kernel at ×2 and ×4, where LR pixels sit
  between HR pixels (the continuous convolution sampled at integer offsets, computed in the Fourier
  domain). Not clipped: the bicubic filter's negative lobes stay, since they are part of the resizer.
  """
  k = kernels.shape[-1]
  positions, weights = antialias_taps(scale, method)
  reach = int(np.ceil(np.abs(positions).max()))
  size = k + 2 * reach if size is None else int(size)
  if size % 2 == 0:
    raise ValueError(f'kernel canvas must have an odd side, got {size}.')
  if method == 'direct' and size == k:
    return kernels.astype(jnp.float32)
  n = fast_fft_size(2 * (k + size + reach) + 1)
  canvas = jnp.zeros((kernels.shape[0], n, n), jnp.float32).at[:, :k, :k].set(kernels.astype(jnp.float32))
  canvas = jnp.roll(canvas, (-(k // 2), -(k // 2)), axis=(1, 2))  # kernel centre at the origin
  freq = np.fft.fftfreq(n)
  # The filter's frequency response; real, since its taps are symmetric about the LR pixel's centre.
  response = np.sum(weights[None, :] * np.cos(2 * np.pi * freq[:, None] * positions[None, :]), axis=1)
  spectrum = jnp.fft.fft2(canvas) * jnp.asarray(response[:, None] * response[None, :], jnp.complex64)
  out = jnp.roll(jnp.real(jnp.fft.ifft2(spectrum)), (size // 2, size // 2), axis=(1, 2))[:, :size, :size]
  return out / jnp.sum(out, axis=(1, 2), keepdims=True)


def _fields(config: ml_collections.ConfigDict) -> tuple[tuple[float, float, float], dict[str, Any]]:
  """The degradation settings, checked once: the traced ones (noise_max, jpeg_prob, noise_prob) and, as
  hashable jit arguments, the ones that change the computed graph."""
  _check_downsample(config.scale, config.downsample, random_ok=True)
  if not config.noise_max >= 0:
    raise ValueError(f'noise_max must be ≥ 0 (σ on the [0, 1] scale), got {config.noise_max}.')
  noise_prob = _noise_prob(config)
  prob, quality_range = _jpeg_fields(config)
  static = dict(scale=int(config.scale), method=str(config.downsample), quantize=bool(config.quantize),
                jpeg_range=quality_range if prob > 0 else None)
  return (float(config.noise_max), prob, noise_prob), static


def add_jpeg(lr: jnp.ndarray, key: jax.Array, prob: float,
             quality_range: tuple[int, int]) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Saves each LR image as JPEG with probability `prob`, quality ~ U{q_min..q_max}: (images, (B,)
  quality, 0 where not compressed)."""
  quality_key, use_key = jax.random.split(key)
  quality = jax.random.randint(quality_key, (lr.shape[0],), quality_range[0], quality_range[1] + 1)
  use = jax.random.uniform(use_key, (lr.shape[0],)) < prob
  out = jnp.where(use[:, None, None, None], _jpeg(lr, jnp.where(use, quality, 100)), lr)
  return out, jnp.where(use, quality, 0)


def _blur_then_downsample(hr, kernels, scale, method):
  if method == 'direct':
    return _blur_downsample(hr, kernels, scale)
  return _downsample(_blur(hr, kernels), scale, method)


def _blur_then_random_resize(hr, kernels, key, scale):
  """Blur, then each image shrunk by one of RESIZERS drawn from `key`: (LR, (B,) resizer index). Each
  image gets its own resizer's pair of matrices, so every image is resized once."""
  _, height, width, _ = hr.shape
  choice = jax.random.randint(key, (hr.shape[0],), 0, len(RESIZERS))
  rows = jnp.asarray(np.stack([downsample_matrix(height, scale, m) for m in RESIZERS]))[choice]
  cols = jnp.asarray(np.stack([downsample_matrix(width, scale, m) for m in RESIZERS]))[choice]
  lr = jnp.einsum('bih,bhwc,bjw->bijc', rows, _blur(hr, kernels), cols, precision=jax.lax.Precision.HIGHEST)
  return lr, choice


def blur_then_downsample(hr: jnp.ndarray, kernels: jnp.ndarray, scale: int,
                         method: str = 'direct', grid: str | None = None) -> jnp.ndarray:
  """(HR ⊗ k)↓s of Eq. 1 without the noise, for any downsampling method: (B, H, W, C), (B, k, k)
  -> (B, ceil(H/s), ceil(W/s), C) float32 (what a restorer's output should reproduce).

  `grid` (None = the method's) samples the blurred, filtered image on another grid — what a restorer
  told (downsample, grid) assumes, e.g. a 'direct'-trained estimator's kernel on resized LR
  (`pipeline.kernel_downsample`): the blurred image is moved by the difference of the two grid offsets
  (Keys cubic between pixels at even scales), then downsampled by `method`."""
  _check_images(hr)
  check_kernels(kernels)
  _check_blur_shapes(hr.shape, kernels.shape)
  _check_downsample(scale, method)
  kernels = jnp.asarray(kernels, jnp.float32)
  if grid is None or grid == lr_grid(method):
    return _blur_then_downsample(hr, kernels, scale, method)
  moved = translate(_blur(hr, kernels), grid_offset(scale, lr_grid(method)) - grid_offset(scale, grid))
  return _downsample(moved, scale, method)


@functools.partial(jax.jit, static_argnames=('scale', 'method', 'quantize', 'jpeg_range'))
def _degrade_with_kernels(hr, kernels, key, noise_max, jpeg_prob=0.0, noise_prob=1.0, *, scale, method,
                          quantize, jpeg_range=None):
  kernels = kernels.astype(jnp.float32)
  extra = {}
  if method == RANDOM_RESIZER:  # Its own key, so that the noise and JPEG draws stay as without it.
    lr, extra['resizer'] = _blur_then_random_resize(hr, kernels, jax.random.fold_in(key, 2), scale)
  else:
    lr = _blur_then_downsample(hr, kernels, scale, method)
  if jpeg_range is None:  # The paper's setting: the noise key alone, as before JPEG existed.
    lr, sigma = add_noise(lr, key, noise_max, quantize, noise_prob)
    return {'lr': lr, 'kernel': kernels, 'noise_sigma': sigma, **extra}
  noise_key, jpeg_key = jax.random.split(key)
  lr, sigma = add_noise(lr, noise_key, noise_max, quantize, noise_prob)
  lr, quality = add_jpeg(lr, jpeg_key, jpeg_prob, jpeg_range)
  return {'lr': lr, 'kernel': kernels, 'noise_sigma': sigma, 'jpeg_quality': quality, **extra}


def degrade_with_kernels(hr: jnp.ndarray, kernels: jnp.ndarray, key: jax.Array,
                         config: ml_collections.ConfigDict) -> dict[str, jnp.ndarray]:
  """Eq. 1 with given kernels, jitted: hr (B, H, W, C) in [0, 1], kernels (B, k, k) -> dict of float32.

  lr (B, ceil(H/s), ceil(W/s), C) in [0, 1], kernel (B, k, k) (the input), noise_sigma (B,), and with
  JPEG on, jpeg_quality (B,) (0 = not compressed); with downsample = RANDOM_RESIZER, resizer (B,) int32,
  each image's index into RESIZERS. Reads config.scale, .downsample, .noise_max, .noise_prob,
  .quantize, .jpeg_prob and .jpeg_quality_range; `key` drives the noise (and the JPEG and resizer draws).
  """
  _check_images(hr)
  check_kernels(kernels)
  _check_blur_shapes(hr.shape, kernels.shape)
  traced, static = _fields(config)
  return _degrade_with_kernels(hr, kernels, key, *traced, **static)


@functools.partial(jax.jit, static_argnames=('config',))
def _degrade(hr, key, config):
  kernel_key, noise_key = jax.random.split(key)
  kernels = kernels_lib.sample_kernels(kernel_key, hr.shape[0], config)
  traced, static = _fields(config)
  return _degrade_with_kernels(hr, kernels, noise_key, *traced, **static)


def degrade(hr: jnp.ndarray, key: jax.Array,
            config: ml_collections.ConfigDict) -> dict[str, jnp.ndarray]:
  """Eq. 1 with kernels drawn from config.family; returns what `degrade_with_kernels` returns.

  Kernels come from `kernels.sample_kernels(kernel_key, B, config)` and noise from `noise_key`, where
  kernel_key, noise_key = jax.random.split(key): the same key and config give the same batch.
  """
  _check_images(hr)
  _check_blur_shapes(hr.shape, (hr.shape[0],) + (config.kernel_size,) * 2)
  _fields(config)
  return _degrade(hr, key, ml_collections.FrozenConfigDict(config))


# ---------------------------------------------------------------------------------------------------
# JPEG (baseline, as libjpeg writes and reads it), for LR images "as users have them".

# ITU-T T.81 Annex K tables (natural order), scaled by quality as libjpeg's jpeg_quality_scaling.
_JPEG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.float32).reshape(8, 8)
_JPEG_CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32, np.float32).reshape(8, 8)
JPEG_QUALITIES = (1, 100)


def _dct_matrix() -> np.ndarray:
  """The orthonormal 8-point DCT-II: the JPEG FDCT is C @ block @ Cᵀ (T.81 A.3.3)."""
  n = np.arange(8)
  c = np.sqrt(2 / 8) * np.cos((2 * n[None, :] + 1) * n[:, None] * np.pi / 16)
  c[0] /= np.sqrt(2)
  return c.astype(np.float32)


def jpeg_quant_tables(quality: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(B,) integer qualities → luma and chroma tables (B, 8, 8), libjpeg's scaling, baseline-clamped."""
  q = jnp.clip(jnp.asarray(quality).astype(jnp.int32), *JPEG_QUALITIES)
  scale = jnp.where(q < 50, 5000 // q, 200 - 2 * q)[:, None, None]
  return tuple(jnp.clip((jnp.asarray(t, jnp.int32)[None] * scale + 50) // 100, 1, 255).astype(jnp.float32)
               for t in (_JPEG_LUMA, _JPEG_CHROMA))


def _blocks(planes: jnp.ndarray) -> jnp.ndarray:
  b, h, w = planes.shape
  return planes.reshape(b, h // 8, 8, w // 8, 8).transpose(0, 1, 3, 2, 4)


def _unblocks(blocks: jnp.ndarray) -> jnp.ndarray:
  b, bh, bw = blocks.shape[:3]
  return blocks.transpose(0, 1, 3, 2, 4).reshape(b, bh * 8, bw * 8)


def _code_plane(plane: jnp.ndarray, table: jnp.ndarray) -> jnp.ndarray:
  """Level shift, FDCT, quantise (round to nearest), dequantise, IDCT, shift back, round, clamp."""
  c = jnp.asarray(_dct_matrix())
  blocks = _blocks(plane - 128.0)
  coef = jnp.einsum('ij,bxyjk,lk->bxyil', c, blocks, c, precision=jax.lax.Precision.HIGHEST)
  table = table[:, None, None]
  coef = jnp.round(coef / table) * table
  out = jnp.einsum('ji,bxyjk,kl->bxyil', c, coef, c, precision=jax.lax.Precision.HIGHEST)
  return jnp.clip(jnp.round(_unblocks(out) + 128.0), 0.0, 255.0)


def _downsample_h2v2(plane: jnp.ndarray) -> jnp.ndarray:
  """libjpeg's h2v2_downsample: (a + b + c + d + bias) >> 2, bias 1, 2, 1, 2, … along each row."""
  b, h, w = plane.shape
  s = plane.reshape(b, h // 2, 2, w // 2, 2).sum(axis=(2, 4))
  bias = jnp.where(jnp.arange(w // 2) % 2 == 0, 1.0, 2.0)
  return jnp.floor((s + bias) / 4.0)


def _upsample_h2v2_fancy(plane: jnp.ndarray) -> jnp.ndarray:
  """libjpeg's h2v2_fancy_upsample (triangle filter, 3/4 · nearer + 1/4 · farther on each axis, the
  edge samples replicated) with its rounding: (3·this + other + 8 or 7) >> 4 on column sums."""
  up = jnp.concatenate([plane[:, :1], plane[:, :-1]], axis=1)
  down = jnp.concatenate([plane[:, 1:], plane[:, -1:]], axis=1)
  rows = jnp.stack([3 * plane + up, 3 * plane + down], axis=2)  # (B, h, 2, w): output rows 2r, 2r+1
  left = jnp.concatenate([rows[..., :1], rows[..., :-1]], axis=-1)
  right = jnp.concatenate([rows[..., 1:], rows[..., -1:]], axis=-1)
  even = jnp.floor((3 * rows + left + 8) / 16)
  odd = jnp.floor((3 * rows + right + 7) / 16)
  b, h, _, w = rows.shape
  return jnp.stack([even, odd], axis=-1).reshape(b, 2 * h, 2 * w)


@jax.jit
def _jpeg(images, quality):
  b, height, width, _ = images.shape
  rows, cols = -(-height // 16) * 16, -(-width // 16) * 16  # whole 4:2:0 MCUs, edges replicated
  x = jnp.round(jnp.clip(images.astype(jnp.float32), 0.0, 1.0) * 255.0)
  x = jnp.pad(x, ((0, 0), (0, rows - height), (0, cols - width), (0, 0)), mode='edge')
  r, g, bl = x[..., 0], x[..., 1], x[..., 2]
  # jccolor.c (JFIF YCbCr, 16-bit fixed point): Y rounds, Cb/Cr round half down.
  y = jnp.floor(0.299 * r + 0.587 * g + 0.114 * bl + 0.5)
  cb = jnp.floor(-0.168735892 * r - 0.331264108 * g + 0.5 * bl + 128.0 + 0.5 - 1 / 65536)
  cr = jnp.floor(0.5 * r - 0.418687589 * g - 0.081312411 * bl + 128.0 + 0.5 - 1 / 65536)
  luma_table, chroma_table = jpeg_quant_tables(quality)
  y = _code_plane(y, luma_table)
  cb = _upsample_h2v2_fancy(_code_plane(_downsample_h2v2(cb), chroma_table)) - 128.0
  cr = _upsample_h2v2_fancy(_code_plane(_downsample_h2v2(cr), chroma_table)) - 128.0
  # jdcolor.c: R = Y + round(1.402 Cr), G = Y + round(−0.34414 Cb − 0.71414 Cr), B = Y + round(1.772 Cb).
  rgb = jnp.stack([y + jnp.round(1.402 * cr), y + jnp.floor(-0.344136286 * cb - 0.714136286 * cr + 0.5),
                   y + jnp.round(1.772 * cb)], axis=-1)
  return jnp.clip(rgb, 0.0, 255.0)[:, :height, :width] / 255.0


def jpeg(images: jnp.ndarray, quality: Any) -> jnp.ndarray:
  """Baseline JPEG compression and decompression of (B, H, W, 3) images in [0, 1], as libjpeg (and so
  Pillow's `save(quality=q)` / `open`) does it: 8-bit RGB → YCbCr, 4:2:0 chroma (2×2 averages), 8×8 DCT,
  the standard tables scaled by quality, rounding, and back with libjpeg's "fancy" chroma upsampling.

  `quality` (B,) integers in [1, 100], one per image, traced (one compiled function serves any quality).
  Any H, W (edges replicated to whole 16×16 blocks, then cropped). Returns float32 on the 256 levels.
  DCTs are computed in float32, not libjpeg's integer arithmetic: coefficients may differ by one
  quantisation step in rare blocks (measured ≥ 45 dB against Pillow in tests/test_degradation.py).
  """
  _check_images(images)
  if images.shape[-1] != 3:
    raise ValueError(f'jpeg needs RGB images (B, H, W, 3), got shape {images.shape}.')
  quality = jnp.broadcast_to(jnp.asarray(quality), (images.shape[0],))
  return _jpeg(images, quality)
