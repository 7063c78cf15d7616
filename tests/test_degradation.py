"""Tests for s2k_jax/degradation.py (paper Eq. 1) against scipy, Pillow and hand-derived values."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from configs.common import get_degradation_config
from s2k_jax import degradation

# docs/conventions.md (Degradation, Blur): the FFT blur equals scipy.ndimage.correlate(mode='mirror') to
# ≤ 6e-7, float32 FFT round-off. Measured ≤ 3.4e-7 for random and Gaussian kernels and ≤ 5.4e-7 for a
# delta (the worst case: nothing averages the round-off out) over random images up to 120×97 and
# k = 3, 15, 23; ≤ 4.2e-7 on the cases below.
BLUR_ATOL = 6e-7


def _random_kernels(rng, batch, size):
  """Asymmetric, non-negative kernels summing to 1: a flip or transpose would change results."""
  kernels = rng.random((batch, size, size)) ** 3
  kernels[:, 0, :] += 0.5  # heavier top row breaks any symmetry left by chance
  return (kernels / kernels.sum(axis=(1, 2), keepdims=True)).astype(np.float32)


def _scipy_blur(images, kernels):
  """Reference: scipy's 'mirror' mode is numpy/PyTorch 'reflect' (edge pixel not repeated)."""
  out = np.empty(images.shape, np.float64)
  for b in range(images.shape[0]):
    for c in range(images.shape[3]):
      out[b, :, :, c] = ndimage.correlate(images[b, :, :, c].astype(np.float64),
                                          kernels[b].astype(np.float64), mode='mirror')
  return out


def _degradation_config(**overrides):
  config = get_degradation_config('gaussian')
  for name, value in overrides.items():
    config[name] = value
  return config


# --- blur --------------------------------------------------------------------------------------------


@pytest.mark.parametrize('ksize', [3, 15, 23])
def test_blur_matches_scipy_correlate(ksize):
  rng = np.random.default_rng(ksize)
  images = rng.random((2, 37, 50, 3)).astype(np.float32)  # non-square, odd and even sides
  kernels = _random_kernels(rng, 2, ksize)                 # a different kernel per image
  out = np.asarray(degradation.blur(images, kernels))
  assert out.shape == images.shape and out.dtype == np.float32
  np.testing.assert_allclose(out, _scipy_blur(images, kernels), atol=BLUR_ATOL)  # measured ≤ 2.6e-7


@pytest.mark.parametrize('ksize', [3, 23])
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_blur_downsample_matches_scipy_then_subsampling(ksize, scale):
  rng = np.random.default_rng(10 * ksize + scale)
  images = rng.random((2, 38, 45, 3)).astype(np.float32)  # sides not multiples of the scale
  kernels = _random_kernels(rng, 2, ksize)
  out = np.asarray(degradation.blur_downsample(images, kernels, scale))
  expected = _scipy_blur(images, kernels)[:, ::scale, ::scale]
  assert out.shape == expected.shape == (2, -(-38 // scale), -(-45 // scale), 3)
  np.testing.assert_allclose(out, expected, atol=BLUR_ATOL)  # measured ≤ 2.6e-7


def test_delta_kernel_is_identity():
  rng = np.random.default_rng(1)
  images = rng.random((2, 30, 33, 3)).astype(np.float32)
  delta = np.zeros((2, 15, 15), np.float32)
  delta[:, 7, 7] = 1.0
  np.testing.assert_allclose(np.asarray(degradation.blur(images, delta)), images, atol=BLUR_ATOL)
  np.testing.assert_allclose(np.asarray(degradation.blur_downsample(images, delta, 3)),
                             images[:, ::3, ::3], atol=BLUR_ATOL)


def test_shifted_delta_moves_image_the_correlation_way():
  # F.conv2d is correlation: out[i, j] = Σ k[u, v] x[i+u-c, j+v-c]. A 1 at (c+1, c+2) therefore gives
  # out[i, j] = x[i+1, j+2]: content moves up 1 and left 2 (convolution would move it down/right).
  rng = np.random.default_rng(2)
  images = rng.random((1, 24, 28, 3)).astype(np.float32)
  kernel = np.zeros((1, 5, 5), np.float32)
  kernel[0, 3, 4] = 1.0
  out = np.asarray(degradation.blur(images, kernel))
  np.testing.assert_allclose(out[:, :-1, :-2], images[:, 1:, 2:], atol=BLUR_ATOL)
  # At the far borders the reads reflect: row H-1 reads row H (= row H-2), column W-1 reads W+1 (= W-3).
  np.testing.assert_allclose(out[:, -1, :-2], images[:, -2, 2:], atol=BLUR_ATOL)
  np.testing.assert_allclose(out[:, :-1, -1], images[:, 1:, -3], atol=BLUR_ATOL)


def test_no_wraparound_between_opposite_borders():
  # A bright first column and first row must not leak into the last columns / rows, as a circular FFT
  # without enough padding would make them.
  images = np.zeros((1, 40, 44, 3), np.float32)
  images[:, :, 0] = 1.0
  images[:, 0, :] = 1.0
  box = np.full((1, 23, 23), 1.0 / 23**2, np.float32)
  out = np.asarray(degradation.blur(images, box))
  assert out[:, :, 0].min() > 0.03  # the blur does spread the bright lines ...
  assert np.abs(out[:, 12:, 12:]).max() < 1e-6  # ... but only over the first 12 columns / rows
  lr = np.asarray(degradation.blur_downsample(images, box, 4))
  assert np.abs(lr[:, 3:, 3:]).max() < 1e-6


def test_blur_is_jittable_and_returns_float32():
  rng = np.random.default_rng(3)
  images = rng.random((2, 20, 20, 1))  # float64 in
  kernels = _random_kernels(rng, 2, 5)
  out = jax.jit(degradation.blur)(images, kernels)  # traced kernels: only shape checks run
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, _scipy_blur(images, kernels), atol=BLUR_ATOL)


# --- downsampling ------------------------------------------------------------------------------------


def test_direct_downsample_keeps_pixels_from_offset_zero():
  images = np.arange(2 * 10 * 7 * 3, dtype=np.float32).reshape(2, 10, 7, 3)
  out = np.asarray(degradation.downsample(images, 3, 'direct'))
  assert out.shape == (2, 4, 3, 3)  # ceil(10/3), ceil(7/3)
  np.testing.assert_array_equal(out[:, 1, 2], images[:, 3, 6])
  np.testing.assert_array_equal(out, images[:, 0::3, 0::3])


def test_bicubic_matches_matlab_example_derived_by_hand():
  # MATLAB imresize(A, 1/2) with A = [0 1 2 3; 4 5 6 7; 8 9 10 11; 12 13 14 15] (bicubic, antialiasing).
  # Kernel h(x) = cubic(x/2)/2 (a = -0.5); output x (1-based) centred at u = 2x - 0.5; taps at
  # u ± 0.5, ± 1.5, ± 2.5, ± 3.5 get cubic(0.25)/2 = 0.43359375, cubic(0.75)/2 = 0.11328125,
  # cubic(1.25)/2 = -0.03515625, cubic(1.75)/2 = -0.01171875 (they sum to 1, no renormalisation).
  # On a row [0 1 2 3], MATLAB 'symmetric' padding repeats the edge: positions -2..5 read
  # [2 1 0 | 0 1 2 3 | 3] for x = 1 and positions 0..7 read [0 | 0 1 2 3 | 3 2 1] for x = 2:
  #   a1 = -0.01171875·2 - 0.03515625·1 + 0.43359375·1 + 0.11328125·2 - 0.03515625·3 - 0.01171875·3
  #      = 0.4609375,  a2 = 3 - a1 = 2.5390625 (mirror symmetry of the row).
  # The filter is linear and separable and A = 4·row + column, so out = 4·a_i + a_j.
  a = np.array([0.4609375, 2.5390625])
  expected = 4 * a[:, None] + a[None, :]  # [[2.3046875, 4.3828125], [10.6171875, 12.6953125]]
  image = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
  out = np.asarray(degradation.downsample(image, 2, 'bicubic'))[0, :, :, 0]
  np.testing.assert_allclose(out, expected, rtol=1e-6)  # measured: exact


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_bicubic_interior_matches_pillow(scale):
  # Pillow's BICUBIC is the same a = -0.5 cubic widened by the scale, centred at (x + 0.5)·s - 0.5;
  # only its borders differ (truncated instead of mirrored), so compare away from them.
  rng = np.random.default_rng(scale)
  image = rng.random((48, 60)).astype(np.float32)
  pil = np.asarray(Image.fromarray(image).resize((60 // scale, 48 // scale), Image.Resampling.BICUBIC))
  out = np.asarray(degradation.downsample(image[None, :, :, None], scale, 'bicubic'))[0, :, :, 0]
  assert out.shape == pil.shape
  np.testing.assert_allclose(out[2:-2, 2:-2], pil[2:-2, 2:-2], atol=1e-6)  # measured ≤ 1.2e-7 (both float32)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_bicubic_properties(scale):
  constant = np.full((1, 25, 31, 2), 0.3, np.float32)
  out = np.asarray(degradation.downsample(constant, scale, 'bicubic'))
  assert out.shape == (1, -(-25 // scale), -(-31 // scale), 2)
  np.testing.assert_allclose(out, 0.3, atol=1e-6)
  # A ramp stays a ramp in the interior: output i sits at input coordinate (i + 0.5)·s - 0.5.
  ramp = np.broadcast_to(np.arange(48, dtype=np.float32)[None, :, None, None], (1, 48, 48, 1))
  out = np.asarray(degradation.downsample(ramp, scale, 'bicubic'))[0, :, 0, 0]
  centres = (np.arange(out.shape[0]) + 0.5) * scale - 0.5
  np.testing.assert_allclose(out[2:-2], centres[2:-2], rtol=1e-6)  # measured ≤ 4e-8 relative


# --- pixel grid: area, bicubic enlargement, effective kernels ----------------------------------------


def _matlab_imresize_axis(x, out_size, scale, kernel, width, antialias=True):
  """Independent float64 reference of MATLAB `imresize` along axis 0, written from its documented
  algorithm one output pixel at a time: output x (1-based) maps to u = x/scale + 0.5·(1 − 1/scale);
  when shrinking with antialiasing the kernel is scale·h(scale·t) of width/scale; the taps
  floor(u − w/2) + (0 … ceil(w) + 1) are weighted, normalised, and mirrored ('symmetric') at the edges."""
  n = x.shape[0]
  shrink = scale < 1 and antialias
  w = width / scale if shrink else width
  out = np.zeros((out_size,) + x.shape[1:])
  for i in range(1, out_size + 1):
    u = i / scale + 0.5 * (1 - 1 / scale)
    left = int(np.floor(u - w / 2))
    for j in range(left, left + int(np.ceil(w)) + 2):
      t = u - j
      weight = scale * kernel(scale * t) if shrink else kernel(t)
      src = j - 1
      while not 0 <= src < n:  # symmetric: -1 → 0, n → n − 1
        src = -src - 1 if src < 0 else 2 * n - src - 1
      out[i - 1] += weight * x[src]
  norm = np.zeros(out_size)
  for i in range(1, out_size + 1):  # the same weights without the pixels: each row's sum
    u = i / scale + 0.5 * (1 - 1 / scale)
    left = int(np.floor(u - w / 2))
    norm[i - 1] = sum(scale * kernel(scale * (u - j)) if shrink else kernel(u - j)
                      for j in range(left, left + int(np.ceil(w)) + 2))
  return out / norm.reshape((-1,) + (1,) * (x.ndim - 1))


def _keys(t):
  t = abs(t)
  return (1.5 * t**3 - 2.5 * t**2 + 1) if t <= 1 else (-0.5 * t**3 + 2.5 * t**2 - 4 * t + 2) if t <= 2 else 0.0


def _box(t):
  return 1.0 if -0.5 <= t < 0.5 else 0.0


def _triangle(t):
  return max(1.0 - abs(t), 0.0)


def _lanczos3(t):  # MATLAB's lanczos3: sin(πt)·sin(πt/3) / (π²t²/3) on |t| < 3
  if t == 0:
    return 1.0
  return np.sin(np.pi * t) * np.sin(np.pi * t / 3) / (np.pi ** 2 * t ** 2 / 3) if abs(t) < 3 else 0.0


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_resizers_equal_a_float64_matlab_imresize_reference(scale):
  rng = np.random.default_rng(10 + scale)
  hr = rng.random((13 * scale + 1, 11 * scale, 2))  # not a multiple of the scale on one axis
  for method, kernel, width in (('bicubic', _keys, 4.0), ('area', _box, 1.0), ('bilinear', _triangle, 2.0),
                                ('lanczos', _lanczos3, 6.0)):
    ref = _matlab_imresize_axis(hr, -(-hr.shape[0] // scale), 1 / scale, kernel, width)
    ref = _matlab_imresize_axis(ref.transpose(1, 0, 2), -(-hr.shape[1] // scale), 1 / scale, kernel, width)
    out = np.asarray(degradation.downsample(hr[None].astype(np.float32), scale, method))[0]
    np.testing.assert_allclose(out, ref.transpose(1, 0, 2), atol=1e-6)
  lr = rng.random((9, 7, 2))  # enlarging: bicubic on the pixel-centre grid is MATLAB imresize(lr, s)
  ref = _matlab_imresize_axis(lr, 9 * scale, scale, _keys, 4.0)
  ref = _matlab_imresize_axis(ref.transpose(1, 0, 2), 7 * scale, scale, _keys, 4.0).transpose(1, 0, 2)
  out = np.asarray(degradation.bicubic_upsample(jnp.asarray(lr[None], jnp.float32), scale, 'centre'))[0]
  np.testing.assert_allclose(out, np.clip(ref, 0, 1), atol=1e-6)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_area_is_the_mean_of_each_block(scale):
  x = np.random.default_rng(scale).random((2, 6 * scale, 5 * scale, 3)).astype(np.float32)
  blocks = x.reshape(2, 6, scale, 5, scale, 3).mean(axis=(2, 4))
  np.testing.assert_allclose(np.asarray(degradation.downsample(x, scale, 'area')), blocks, atol=1e-6)


def test_grid_offsets_and_bad_grids():
  assert [degradation.grid_offset(s, 'centre') for s in (2, 3, 4)] == [0.5, 1.0, 1.5]
  assert [degradation.grid_offset(s, 'direct') for s in (2, 3, 4)] == [0.0, 0.0, 0.0]
  assert [degradation.lr_grid(m) for m in degradation.DOWNSAMPLE_METHODS] == ['direct'] + ['centre'] * 4
  with pytest.raises(ValueError, match=r"LR grid must be one of \('centre', 'direct'\).*got 'corner'"):
    degradation.grid_offset(2, 'corner')
  with pytest.raises(ValueError, match=r"downsample method must be one of \('direct', 'bicubic', 'area', "
                     r"'bilinear', 'lanczos'\).*got 'nearest'"):
    degradation.downsample(np.zeros((1, 8, 8, 1)), 2, 'nearest')
  with pytest.raises(ValueError, match="'random_resizer'.*is for training kernel estimators and USRNet"):
    degradation.downsample(np.zeros((1, 8, 8, 1)), 2, 'random_resizer')
  with pytest.raises(ValueError, match=r'scale must be one of \(2, 3, 4\).*got 5'):
    degradation.bicubic_upsample(np.zeros((1, 8, 8, 1)), 5, 'centre')


@pytest.mark.parametrize('grid', ['centre', 'direct'])
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_bicubic_upsampling_puts_each_lr_pixel_where_it_came_from(scale, grid):
  """A ramp sampled on the grid comes back as the HR ramp (cubic reproduces ramps), interior."""
  offset = degradation.grid_offset(scale, grid)
  hr = np.arange(16 * scale, dtype=np.float32) / (16 * scale)
  lr = hr[0] + (scale * np.arange(16) + offset) / (16 * scale)  # the ramp's value at each LR pixel
  image = np.broadcast_to(lr[:, None, None], (16, 4, 1))[None].astype(np.float32)
  up = np.asarray(degradation.bicubic_upsample(image, scale, grid))[0, :, 0, 0]
  np.testing.assert_allclose(up[3 * scale:-3 * scale], hr[3 * scale:-3 * scale], atol=1e-6)


def test_aligned_bicubic_beats_a_shifted_one_on_a_photo():
  import skimage.data  # pylint: disable=g-import-not-at-top
  photo = skimage.data.astronaut()[100:292, 150:342].astype(np.float32) / 255
  for method in ('direct', 'bicubic'):
    lr = degradation.downsample(photo[None], 4, method)
    grid = degradation.lr_grid(method)
    other = 'direct' if grid == 'centre' else 'centre'
    err = {g: float(np.mean((np.asarray(degradation.bicubic_upsample(lr, 4, g))[0] - photo)[8:-8, 8:-8] ** 2))
           for g in (grid, other)}
    assert 10 * np.log10(err[other] / err[grid]) > 1.0, (method, err)  # measured 2.9 / 2.6 dB


@pytest.mark.parametrize('method', ['bicubic', 'area'])
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_effective_kernel_reproduces_the_resizer(scale, method):
  """Blur with k then resize = blur with the effective kernel, sampled on the centre grid. At ×3 the
  LR pixels sit on HR pixels, so this is exact; at ×2 and ×4 they sit between, and a smooth image is
  sampled there by Fourier interpolation (periodic image: exact up to the band limit)."""
  rng = np.random.default_rng(scale)
  n = 48 * scale
  spectrum = np.fft.fft2(rng.standard_normal((n, n)))
  f = np.fft.fftfreq(n)
  spectrum *= np.exp(-(f[:, None] ** 2 + f[None, :] ** 2) / (2 * 0.06 ** 2))  # smooth: well below Nyquist
  hr = np.real(np.fft.ifft2(spectrum))
  hr = (hr - hr.min()) / (hr.max() - hr.min())
  k = np.asarray(degradation.kernels_lib.gaussian_kernel(15, 1.6, 1.1, 0.4))[None]
  lr = np.asarray(degradation.blur_then_downsample(hr[None, :, :, None].astype(np.float32), k, scale, method))[0, :, :, 0]
  k_eff = np.asarray(degradation.effective_kernel(jnp.asarray(k), scale, method, 31))[0].astype(np.float64)
  assert abs(k_eff.sum() - 1) < 1e-6
  # Periodic blur with k_eff, then the samples at s·i + offset via a Fourier phase shift.
  pad = np.zeros((n, n))
  pad[:31, :31] = k_eff
  pad = np.roll(pad, (-15, -15), axis=(0, 1))
  offset = degradation.grid_offset(scale, 'centre')
  phase = np.exp(2j * np.pi * f * offset)
  blurred = np.fft.ifft2(np.fft.fft2(hr) * np.conj(np.fft.fft2(pad)) * phase[:, None] * phase[None, :])
  expected = np.real(blurred)[::scale, ::scale]
  inner = slice(24 // scale, -24 // scale)  # away from the edges: reflect-padded blur, mirrored resizer
  np.testing.assert_allclose(lr[inner, inner], expected[inner, inner], atol=2e-5)


def test_effective_kernel_of_direct_decimation_is_the_blur():
  k = np.asarray(degradation.kernels_lib.gaussian_kernel(15, 2.0, 1.0, 0.3))[None]
  np.testing.assert_allclose(np.asarray(degradation.effective_kernel(jnp.asarray(k), 4, 'direct')), k, atol=1e-6)
  assert degradation.effective_kernel(jnp.asarray(k), 4, 'bicubic').shape == (1, 31, 31)  # 15 + 2 · 8
  with pytest.raises(ValueError, match='odd side, got 20'):
    degradation.effective_kernel(jnp.asarray(k), 4, 'bicubic', 20)


# --- noise -------------------------------------------------------------------------------------------


def test_noise_sigma_per_image_and_statistics():
  lr = jnp.full((6, 64, 64, 3), 0.5, jnp.float32)  # far from 0 and 1: no clipping at σ ≤ 0.05
  noisy, sigma = degradation.add_noise(lr, jax.random.key(0), noise_max=0.05)
  sigma = np.asarray(sigma)
  assert sigma.shape == (6,) and np.all((sigma >= 0) & (sigma <= 0.05))
  assert len(np.unique(sigma)) == 6
  measured = np.asarray(noisy - lr).reshape(6, -1).std(axis=1)
  np.testing.assert_allclose(measured, sigma, rtol=0.05, atol=1e-4)
  assert np.abs(np.asarray(noisy - lr).mean()) < 1e-3


def test_noise_is_clipped_and_quantised():
  lr = jnp.concatenate([jnp.zeros((2, 16, 16, 3)), jnp.ones((2, 16, 16, 3))]).astype(jnp.float32)
  noisy, _ = degradation.add_noise(lr, jax.random.key(1), noise_max=1.0)
  noisy = np.asarray(noisy)
  assert noisy.min() == 0.0 and noisy.max() == 1.0
  assert 0.0 < noisy[:2].mean() < 0.5 and 0.5 < noisy[2:].mean() < 1.0
  quantised, _ = degradation.add_noise(lr, jax.random.key(1), noise_max=1.0, quantize=True)
  levels = np.asarray(quantised) * 255.0
  np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
  assert len(np.unique(np.round(levels))) > 50


def test_noise_prob_leaves_a_share_of_images_clean_and_the_rest_as_before():
  """noise_prob p: about p of the images are noised, exactly as with p = 1; the others are untouched."""
  lr = jnp.full((64, 8, 8, 3), 0.5, jnp.float32)
  every, sigma_every = degradation.add_noise(lr, jax.random.key(3), 0.05)
  some, sigma_some = degradation.add_noise(lr, jax.random.key(3), 0.05, False, 0.5)
  noised = np.asarray(sigma_some) > 0
  assert 20 < noised.sum() < 44
  np.testing.assert_array_equal(np.asarray(sigma_some)[noised], np.asarray(sigma_every)[noised])
  np.testing.assert_array_equal(np.asarray(some)[noised], np.asarray(every)[noised])
  np.testing.assert_array_equal(np.asarray(some)[~noised], np.asarray(lr)[~noised])
  config = _degradation_config(noise_max=0.05, noise_prob=0.5)
  out = degradation.degrade(jnp.full((64, 32, 32, 3), 0.5), jax.random.key(4), config)
  assert 20 < (np.asarray(out['noise_sigma']) > 0).sum() < 44
  for prob, noise_max, match in ((1.5, 0.05, r'noise_prob must be in \[0, 1\]'),
                                 (0.5, 0.0, 'noise_prob=0.5 has no effect with degradation.noise_max=0')):
    with pytest.raises(ValueError, match=match):
      degradation.degrade(jnp.zeros((1, 32, 32, 3)), jax.random.key(0),
                          _degradation_config(noise_max=noise_max, noise_prob=prob))


def test_zero_noise_is_exact():
  lr = jnp.asarray(np.random.default_rng(4).random((3, 8, 8, 3)), jnp.float32)
  noisy, sigma = degradation.add_noise(lr, jax.random.key(2), noise_max=0.0)
  np.testing.assert_array_equal(np.asarray(sigma), 0.0)
  np.testing.assert_array_equal(np.asarray(noisy), np.asarray(lr))


# --- degrade -----------------------------------------------------------------------------------------


@pytest.mark.parametrize('scale', [2, 3, 4])
@pytest.mark.parametrize('method', ['direct', 'bicubic'])
def test_degrade_shapes(scale, method):
  config = _degradation_config(scale=scale, downsample=method, noise_max=0.02)
  hr = jnp.asarray(np.random.default_rng(5).random((2, 48, 36, 3)), jnp.float32)
  out = degradation.degrade(hr, jax.random.key(0), config)
  assert out['lr'].shape == (2, 48 // scale, 36 // scale, 3)
  assert out['kernel'].shape == (2, 15, 15)
  assert out['noise_sigma'].shape == (2,)
  assert all(v.dtype == jnp.float32 for v in out.values())
  lr = np.asarray(out['lr'])
  assert lr.min() >= 0.0 and lr.max() <= 1.0


def test_degrade_uses_the_kernels_it_returns():
  config = _degradation_config(scale=3)  # noise_max 0: LR = (HR ⊗ k)↓s exactly
  hr = np.random.default_rng(6).random((2, 33, 30, 3)).astype(np.float32)
  out = degradation.degrade(jnp.asarray(hr), jax.random.key(3), config)
  kernels = np.asarray(out['kernel'])
  np.testing.assert_allclose(kernels.sum(axis=(1, 2)), 1.0, atol=1e-6)  # measured ≤ 3.6e-7
  assert not np.allclose(kernels[0], kernels[1])
  expected = np.clip(_scipy_blur(hr, kernels)[:, ::3, ::3], 0, 1)
  np.testing.assert_allclose(np.asarray(out['lr']), expected, atol=BLUR_ATOL)


def test_degrade_is_deterministic_per_key_and_jittable():
  config = _degradation_config(noise_max=0.05)
  hr = jnp.asarray(np.random.default_rng(7).random((2, 32, 32, 3)), jnp.float32)
  first = degradation.degrade(hr, jax.random.key(4), config)
  again = degradation.degrade(hr, jax.random.key(4), config)
  other = degradation.degrade(hr, jax.random.key(5), config)
  jitted = jax.jit(lambda x, key: degradation.degrade(x, key, config))(hr, jax.random.key(4))
  for name in ('lr', 'kernel', 'noise_sigma'):
    np.testing.assert_array_equal(np.asarray(first[name]), np.asarray(again[name]))
    np.testing.assert_allclose(np.asarray(jitted[name]), np.asarray(first[name]), atol=1e-6)
    assert not np.allclose(np.asarray(first[name]), np.asarray(other[name]))


def test_degrade_with_kernels_bicubic_matches_pillow_interior():
  rng = np.random.default_rng(8)
  hr = rng.random((2, 48, 48, 1)).astype(np.float32)
  kernels = _random_kernels(rng, 2, 7)
  config = _degradation_config(scale=4, downsample='bicubic')
  out = degradation.degrade_with_kernels(hr, kernels, jax.random.key(0), config)
  blurred = _scipy_blur(hr, kernels).astype(np.float32)
  for b in range(2):
    pil = np.asarray(Image.fromarray(blurred[b, :, :, 0]).resize((12, 12), Image.Resampling.BICUBIC))
    np.testing.assert_allclose(np.asarray(out['lr'])[b, 2:-2, 2:-2, 0], np.clip(pil, 0, 1)[2:-2, 2:-2],
                               atol=1e-6)  # measured ≤ 1.2e-7
  np.testing.assert_array_equal(np.asarray(out['kernel']), kernels)


# --- validation --------------------------------------------------------------------------------------


def _kernels_with(value_at_centre=None, size=5, batch=2):
  kernels = np.full((batch, size, size), 1.0 / size**2, np.float32)
  if value_at_centre is not None:
    kernels[1, size // 2, size // 2] = value_at_centre
  return kernels


@pytest.mark.parametrize('kernels, message', [
    (_kernels_with(np.nan), 'NaN'),
    (_kernels_with(np.inf), 'NaN or inf'),
    (np.zeros((2, 5, 5), np.float32), 'sum'),
    (np.full((2, 4, 4), 1 / 16, np.float32), 'odd'),
    (np.full((5, 5), 1 / 25, np.float32), 'batch'),
    (_kernels_with(batch=3), 'one kernel per image'),
])
def test_bad_kernels_are_refused(kernels, message):
  images = np.zeros((2, 16, 16, 3), np.float32)
  with pytest.raises(ValueError, match=message):
    degradation.blur(images, kernels)
  with pytest.raises(ValueError, match=message):
    degradation.degrade_with_kernels(images, kernels, jax.random.key(0), _degradation_config())


def test_bad_images_and_settings_are_refused():
  images = np.zeros((2, 16, 16, 3), np.float32)
  kernels = _kernels_with()
  with pytest.raises(ValueError, match='too small'):
    degradation.blur(np.zeros((2, 11, 30, 3), np.float32), _kernels_with(size=23))
  with pytest.raises(ValueError, match='batch, height, width, channels'):
    degradation.blur(images[0], kernels)
  for scale in (1, 5, 8):
    with pytest.raises(ValueError, match='scale'):
      degradation.downsample(images, scale)
    with pytest.raises(ValueError, match='scale'):
      degradation.degrade_with_kernels(images, kernels, jax.random.key(0),
                                       _degradation_config(scale=scale))
  with pytest.raises(ValueError, match='downsample method'):
    degradation.downsample(images, 2, 'nearest')
  with pytest.raises(ValueError, match='noise_max'):
    degradation.degrade(images, jax.random.key(0), _degradation_config(noise_max=-0.1))


def test_fast_fft_size():
  sizes = [degradation.fast_fft_size(n) for n in (1, 7, 11, 13, 256, 257, 278)]
  assert sizes == [1, 8, 12, 15, 256, 270, 288]
  assert degradation.fast_fft_size(100, multiple_of=3) == 108
  assert degradation.fast_fft_size(278, multiple_of=4) == 288


# ---------------------------------------------------------------------------------------------------
# JPEG.


def _pillow_jpeg(x: np.ndarray, quality: int) -> np.ndarray:
  import io  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  Image.fromarray(x).save(buf, 'JPEG', quality=quality)  # Pillow's defaults: 4:2:0, libjpeg tables
  return np.asarray(Image.open(buf)).astype(np.float32)


@pytest.mark.parametrize('photo', ['chelsea', 'astronaut', 'coffee'])
def test_jpeg_matches_pillow(photo):
  """≥ 45 dB against Pillow (libjpeg-turbo) for qualities 30–95 and sizes that are not multiples of 8
  or 16 (measured 47.7–62.6 dB; float DCTs differ from libjpeg's integer ones by a step in rare blocks)."""
  import skimage.data  # pylint: disable=g-import-not-at-top
  image = getattr(skimage.data, photo)()
  for height, width in ((64, 64), (75, 113), (150, 203)):
    x = image[:height, :width]
    qualities = (30, 50, 75, 90, 95)
    batch = jnp.asarray(np.stack([x] * len(qualities)) / 255.0, jnp.float32)
    ours = np.asarray(degradation.jpeg(batch, jnp.asarray(qualities))) * 255  # one quality per image
    for got, q in zip(ours, qualities):
      mse = np.mean((got - _pillow_jpeg(x, q)) ** 2)
      assert 10 * np.log10(255 ** 2 / mse) >= 45.0, (photo, height, width, q)


def test_jpeg_quality_is_traced_and_output_is_on_the_256_levels():
  x = jax.random.uniform(jax.random.key(0), (2, 24, 40, 3))
  before = degradation._jpeg._cache_size()
  outs = [degradation.jpeg(x, q) for q in (40, 80, 95)]
  assert degradation._jpeg._cache_size() - before <= 1  # one compilation for every quality
  for out in outs:
    np.testing.assert_allclose(np.asarray(out) * 255, np.round(np.asarray(out) * 255), atol=1e-4)
  # Lower quality loses more.
  errors = [float(jnp.mean((o - x) ** 2)) for o in outs]
  assert errors[0] > errors[1] > errors[2]
  with pytest.raises(ValueError, match='RGB'):
    degradation.jpeg(x[..., :1], 90)


def test_jpeg_in_the_degradation_follows_its_probability_and_range():
  config = get_degradation_config('gaussian')
  config.jpeg_prob, config.jpeg_quality_range = 0.5, (60, 70)
  hr = jax.random.uniform(jax.random.key(0), (64, 32, 32, 3))
  out = degradation.degrade(hr, jax.random.key(1), config)
  q = np.asarray(out['jpeg_quality'])
  compressed = q > 0
  assert 20 < compressed.sum() < 44 and q[compressed].min() >= 60 and q[compressed].max() <= 70
  # Compressed images are JPEG of the noisy LR; the others are that LR itself.
  config.jpeg_prob = 0.0
  config.jpeg_quality_range = get_degradation_config('gaussian').jpeg_quality_range
  plain = degradation.degrade_with_kernels(hr, out['kernel'], jax.random.split(jax.random.split(jax.random.key(1))[1])[0],
                                           config)['lr']
  np.testing.assert_array_equal(np.asarray(out['lr'])[~compressed], np.asarray(plain)[~compressed])
  i = int(np.argmax(compressed))
  np.testing.assert_allclose(np.asarray(out['lr'])[i], np.asarray(degradation.jpeg(plain[i:i + 1], int(q[i])))[0],
                             atol=1e-6)


def test_jpeg_fields_are_checked():
  hr = jnp.zeros((1, 32, 32, 3))
  for prob, quality_range, match in ((1.5, (50, 95), r'jpeg_prob must be in \[0, 1\]'),
                                     (0.5, (90, 50), 'q_min ≤ q_max'),
                                     (0.5, (0, 50), '1 ≤ q_min'),
                                     (0.0, (30, 60), 'has no effect with degradation.jpeg_prob=0')):
    config = get_degradation_config('gaussian')
    config.jpeg_prob, config.jpeg_quality_range = prob, quality_range
    with pytest.raises(ValueError, match=match):
      degradation.degrade(hr, jax.random.key(0), config)


def test_resizers_agree_with_pillow_away_from_the_borders():
  """PIL's antialiased resizers use the same filters (Pillow rounds to 8 bits between its two passes and
  clips Lanczos overshoot there, so the agreement is to a few levels, not to float precision)."""
  import skimage.data  # pylint: disable=g-import-not-at-top
  photo = skimage.data.astronaut()[:240, :240]
  pil = {'bicubic': Image.Resampling.BICUBIC, 'area': Image.Resampling.BOX, 'bilinear': Image.Resampling.BILINEAR,
         'lanczos': Image.Resampling.LANCZOS}
  for method, resample in pil.items():
    for scale in (2, 4):
      ours = np.asarray(degradation.downsample(photo[None].astype(np.float32) / 255, scale, method))[0] * 255
      theirs = np.asarray(Image.fromarray(photo).resize((240 // scale,) * 2, resample), np.float32)
      err = np.abs(ours - theirs)[6:-6, 6:-6]
      assert err.mean() < 0.6 and np.percentile(err, 99) < 3, (method, scale, err.mean())


def test_random_resizer_shrinks_each_image_by_one_resizer_and_keeps_the_noise_draws():
  hr = np.random.default_rng(0).random((8, 48, 48, 3)).astype(np.float32)
  config = degradation.default_config('gaussian')
  config.update(scale=4, downsample='random_resizer', noise_max=0.02)
  key = jax.random.PRNGKey(3)
  out = degradation.degrade(hr, key, config)
  assert out['resizer'].shape == (8,) and set(np.asarray(out['resizer'])) <= set(range(4))
  assert len(set(np.asarray(out['resizer']).tolist())) > 1  # 8 draws of 4 resizers: not all the same
  clean = dict(config)
  clean.update(noise_max=0.0)
  clean_out = degradation.degrade(hr, key, ml_collections.ConfigDict(clean))
  for i, r in enumerate(np.asarray(out['resizer'])):
    expected = degradation.blur_then_downsample(hr[i:i + 1], np.asarray(out['kernel'][i:i + 1]), 4,
                                                degradation.RESIZERS[r])
    np.testing.assert_allclose(np.asarray(clean_out['lr'][i]), np.asarray(expected[0]), atol=1e-5)
  bicubic = ml_collections.ConfigDict(dict(config))
  bicubic.downsample = 'bicubic'
  np.testing.assert_array_equal(np.asarray(degradation.degrade(hr, key, bicubic)['noise_sigma']),
                                np.asarray(out['noise_sigma']))  # the resizer draw has its own key


@pytest.mark.parametrize('method', ['area', 'bilinear'])  # non-negative effective kernels
def test_a_direct_kernel_on_the_centre_grid_is_the_forward_model_of_an_effective_kernel(method):
  """At ×3 LR pixels of a resizer sit on HR pixels: blur ⊗ resizer filter as a 'direct' kernel, sampled
  on the centre grid, reproduces the resizer's LR exactly (up to the borders)."""
  hr = np.random.default_rng(1).random((1, 60, 60, 1)).astype(np.float32)
  k = np.asarray(degradation.kernels_lib.gaussian_kernel(9, 1.2, 0.8, 0.5))[None]
  k_eff = np.maximum(np.asarray(degradation.effective_kernel(jnp.asarray(k), 3, method)), 0)  # FFT round-off
  lr = np.asarray(degradation.blur_then_downsample(hr, k, 3, method))
  again = np.asarray(degradation.blur_then_downsample(hr, k_eff, 3, 'direct', grid='centre'))
  np.testing.assert_allclose(again[0, 3:-3, 3:-3], lr[0, 3:-3, 3:-3], atol=1e-5)
  # The other way round: the resizer on the direct grid = the resizer of the image moved by (s − 1)/2
  # (one whole HR pixel at ×3: a plain shift), i.e. the resizer's LR pixel i centred on HR pixel 3i.
  on_direct = np.asarray(degradation.blur_then_downsample(hr, k, 3, method, grid='direct'))
  blurred = np.asarray(degradation.blur(hr, k))
  shifted = np.concatenate([blurred[:, :1], blurred[:, :-1]], axis=1)
  shifted = np.concatenate([shifted[:, :, :1], shifted[:, :, :-1]], axis=2)
  expected = np.asarray(degradation.downsample(shifted, 3, method))
  np.testing.assert_allclose(on_direct[0, 3:-3, 3:-3], expected[0, 3:-3, 3:-3], atol=1e-5)
