"""Tests for s2k_jax/spectrum.py and s2k_jax/color.py (paper §3.2–3.3, Eq. 4, Eq. 9–10, Table 3).

References are independent of the code: the BT.601 formula, closed-form spectra (a cosine's peak
position, the Gaussian's Fourier transform, the white-noise periodogram), scipy.ndimage for blurs,
scikit-image's resize for the kernel interpolation, numpy's pad, and float64 numpy moments.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage
from skimage.transform import resize

from s2k_jax import color
from s2k_jax import kernels
from s2k_jax import spectrum


# ----------------------------------------------------------------------------------------------
# Test kernels built here in float64 numpy, independent of s2k_jax/kernels.py.


def gaussian(size, sigma_long, sigma_short, theta):
  """Anisotropic Gaussian whose long axis points along (row, col) = (sin θ, cos θ)."""
  r = np.arange(size) - size // 2
  rows, cols = np.meshgrid(r, r, indexing='ij')
  along = np.cos(theta) * cols + np.sin(theta) * rows
  across = -np.sin(theta) * cols + np.cos(theta) * rows
  g = np.exp(-0.5 * (along ** 2 / sigma_long ** 2 + across ** 2 / sigma_short ** 2))
  return g / g.sum()


def disk(size, radius, supersample=16):
  """Area of each pixel inside a centred circle, by supersampling."""
  offsets = (np.arange(size * supersample) + 0.5) / supersample - size / 2
  rows, cols = np.meshgrid(offsets, offsets, indexing='ij')
  inside = (rows ** 2 + cols ** 2 <= radius ** 2).astype(np.float64)
  k = inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
  return k / k.sum()


def motion_like(rng, size=23, margin=3):
  """Asymmetric blur streak: a smooth random path splatted bilinearly, brighter at one end."""
  velocity = np.cumsum(rng.normal(size=(200, 2)) * 0.1, axis=0) + rng.normal(size=2)
  path = np.cumsum(velocity, axis=0)
  path -= path.mean(axis=0)
  path *= (size // 2 - margin) / np.abs(path).max()
  path += size // 2
  weights = np.linspace(0.3, 1.0, len(path))
  k = np.zeros((size, size))
  for (r, c), w in zip(path, weights):
    r0, c0 = int(np.floor(r)), int(np.floor(c))
    fr, fc = r - r0, c - c0
    k[r0, c0] += w * (1 - fr) * (1 - fc)
    k[r0 + 1, c0] += w * fr * (1 - fc)
    k[r0, c0 + 1] += w * (1 - fr) * fc
    k[r0 + 1, c0 + 1] += w * fr * fc
  return k / k.sum()


def family_kernels():
  rng = np.random.default_rng(0)
  return {
      'gaussian15': np.stack([gaussian(15, 3.0, 1.0, 0.4), gaussian(15, 1.5, 1.2, 2.0)]),
      'motion23': np.stack([motion_like(rng), motion_like(rng)]),
      'disk15': np.stack([disk(15, 1.0), disk(15, 2.7)]),
  }


def second_moments(weight):
  """Eigen-decomposition of Σ w(f) f fᵀ / Σ w(f) over |f| < ½ cycles/pixel, in float64.

  A round domain shares the mirror symmetries of any ellipse centred on DC, so elliptical level
  sets give eigenvectors along the ellipse's axes (a square domain would bias them).
  """
  size = weight.shape[0]
  f = (np.arange(size) - size // 2) / size
  rows, cols = np.meshgrid(f, f, indexing='ij')
  w = np.where(rows ** 2 + cols ** 2 < 0.25, weight, 0.0)
  w = w / w.sum()
  m = np.array([[np.sum(w * rows * rows), np.sum(w * rows * cols)],
                [np.sum(w * rows * cols), np.sum(w * cols * cols)]])
  return np.linalg.eigh(m)  # ascending eigenvalues, eigenvectors as (row, col) columns


def blurred_noise(kernel, shape=(256, 256), seed=0):
  noise = np.random.default_rng(seed).random(shape)
  return ndimage.correlate(noise, kernel, mode='wrap')[..., None]


# ----------------------------------------------------------------------------------------------
# color.rgb_to_y


def test_rgb_to_y_known_colours():
  colours = np.array([[1, 1, 1], [0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.25, 0.75]])
  expected = (16 + 65.481 * colours[:, 0] + 128.553 * colours[:, 1] + 24.966 * colours[:, 2]) / 255
  y = np.asarray(color.rgb_to_y(jnp.asarray(colours, jnp.float32)))
  np.testing.assert_allclose(y, expected, atol=2e-7)  # measured ≤ 6.4e-8 (float32)
  np.testing.assert_allclose(y[:2], [235 / 255, 16 / 255], atol=2e-7)


def test_rgb_to_y_rejects_non_rgb():
  with pytest.raises(ValueError, match='3 channels'):
    color.rgb_to_y(jnp.zeros((4, 4, 2)))


# ----------------------------------------------------------------------------------------------
# Amplitude spectrum: frequency axis, Gaussian shape (Eq. 9–10), ambiguities, shapes, range.


@pytest.mark.parametrize('shape, mode', [((256, 256), 'crop'), ((64, 96), 'crop'),
                                         ((600, 520), 'crop'), ((600, 520), 'welch'),
                                         ((100, 400), 'welch')])
def test_cosine_peaks_at_its_normalised_frequency(shape, mode):
  """Bin (i, j) ↔ ((i − S/2)/S, (j − S/2)/S) cycles/pixel for every LR size and mode."""
  size, f_row, f_col = 256, 1 / 8, 3 / 32
  rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing='ij')
  image = 0.5 + 0.4 * np.cos(2 * np.pi * (f_row * rows + f_col * cols))
  # The linear power: the normalised map clips a line spectrum's peak to 1 with its neighbours.
  power = np.asarray(spectrum.power_spectrum(image[..., None], size=size, mode=mode))
  peak = np.unravel_index(np.argmax(power), power.shape)
  expected = {(size // 2 + 32, size // 2 + 24), (size // 2 - 32, size // 2 - 24)}
  assert tuple(int(p) for p in peak) in expected


@pytest.mark.parametrize('mode, shape, tiles', [
    ('crop', (300, 200), [(22, 0)]),  # rows cropped around the centre, columns zero-padded
    ('welch', (384, 200), [(0, 0), (128, 0)]),  # two row tiles with 50% overlap
])
def test_power_spectrum_matches_float64_periodogram(mode, shape, tiles):
  """The documented estimator written out in float64 numpy: per tile, remove the window-weighted
  mean, taper with sin²(π(n+½)/N), zero-pad to S×S, |FFT|²/Σw², average, zero DC, fftshift."""
  size = 256
  image = np.random.default_rng(13).random(shape + (3,))
  luma = (16 + image @ np.array([65.481, 128.553, 24.966])) / 255
  th, tw = min(shape[0], size), min(shape[1], size)
  window = np.outer(*(np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2 for n in (th, tw)))
  power = 0.0
  for r, c in tiles:
    tile = luma[r:r + th, c:c + tw]
    tile = (tile - np.sum(tile * window) / np.sum(window)) * window
    periodogram = np.abs(np.fft.fft2(tile, s=(size, size))) ** 2 / np.sum(window ** 2)
    power = power + periodogram / len(tiles)
  power[0, 0] = 0.0
  expected = np.fft.fftshift(power)
  got = spectrum.power_spectrum(image.astype(np.float32), size=size, mode=mode)
  got = np.asarray(got, np.float64)
  np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-6 * expected.max())  # measured ≤ 1e-6·max
  # docs/conventions.md (Normalisation): float32 round-off of the amplitude is ≤ 2e-5 of the RMS, below
  # the 1e-4 floor of the normalised log amplitude. Measured 1.9e-5 (crop, next to DC) and 5.2e-6 (welch).
  amplitude_error = np.abs(np.sqrt(got) - np.sqrt(expected)).max() / np.sqrt(expected.mean())
  assert amplitude_error < 3e-5, amplitude_error


def test_spectrum_is_point_symmetric_about_dc():
  """A real image's |FFT| is symmetric about DC, and DC sits at (S/2, S/2) after fftshift.

  The symmetry alone cannot place DC: unshifted, bin j pairs with S − j just the same. So the DC bin,
  whose power is set to 0, must also be the only zero of the power spectrum, at (S/2, S/2).
  """
  image = np.random.default_rng(1).random((180, 230, 3))
  m = np.asarray(spectrum.amplitude_spectrum(image, size=128))[..., 0]
  inner = m[1:, 1:]  # row/col 0 hold the Nyquist frequency, which has no mirror on the grid
  np.testing.assert_allclose(inner, inner[::-1, ::-1], atol=1e-5)  # measured ≤ 1.8e-6
  power = np.asarray(spectrum.power_spectrum(image, size=128))
  assert power[64, 64] == 0.0 and np.count_nonzero(power == 0.0) == 1


@pytest.mark.parametrize('theta', [0.3, 1.2, 2.5])
def test_gaussian_blur_spectrum_orientation_and_width(theta):
  """Eq. 9–10: spectrum of a Gaussian-blurred image is a Gaussian of std 1/(2πσ) per axis,
  so its wide axis is perpendicular to the kernel's long axis."""
  sigma_long, sigma_short = 2.5, 1.0
  lr = blurred_noise(gaussian(21, sigma_long, sigma_short, theta))
  amplitude = np.sqrt(np.asarray(spectrum.power_spectrum(lr, size=256), np.float64))
  values, vectors = second_moments(amplitude)
  kernel_short_axis = np.array([np.cos(theta), -np.sin(theta)])  # (row, col)
  # |cos| of the angle between the spectrum's wide axis and the kernel's short axis.
  assert abs(vectors[:, 1] @ kernel_short_axis) > np.cos(np.deg2rad(2))  # measured ≤ 0.2°
  expected_std = 1 / (2 * np.pi * np.array([sigma_short, sigma_long]))
  np.testing.assert_allclose(np.sqrt(values[::-1]), expected_std,
                             rtol=0.05)  # measured ≤ 1.5%
  # The normalised map is a monotone function of log amplitude, whose level sets are the same
  # ellipses: its moments must have the same orientation.
  m = np.asarray(spectrum.amplitude_spectrum(lr, size=256), np.float64)[..., 0]
  _, map_vectors = second_moments(m + 1.0)
  assert abs(map_vectors[:, 1] @ kernel_short_axis) > np.cos(np.deg2rad(8))  # measured ≤ 4.8°


def test_gaussian_spectrum_width_scales_inversely_with_sigma():
  widths = []
  for sigma in (1.0, 2.0):
    lr = blurred_noise(gaussian(21, sigma, sigma, 0.0), seed=2)
    power = np.asarray(spectrum.power_spectrum(lr, size=256), np.float64)
    values, _ = second_moments(np.sqrt(power))
    widths.append(np.sqrt(values.mean()))
  np.testing.assert_allclose(widths[0] / widths[1], 2.0, rtol=0.08)


def test_spectrum_cannot_see_rotation_or_shift():
  """|FFT| of circular blurs by k and rot180(k), and of a shifted image, match (no window)."""
  k = motion_like(np.random.default_rng(3))
  noise = np.random.default_rng(4).random((128, 128))
  a = ndimage.correlate(noise, k, mode='wrap')[..., None]
  b = ndimage.correlate(noise, k[::-1, ::-1], mode='wrap')[..., None]
  c = np.roll(a, (17, -5), axis=(0, 1))
  spectra = np.asarray(spectrum.amplitude_spectrum(np.stack([a, b, c]), size=128, window=False))
  assert np.abs(a - b).max() > 1e-2  # the images do differ
  np.testing.assert_allclose(spectra[1], spectra[0], atol=2e-4)
  np.testing.assert_allclose(spectra[2], spectra[0], atol=2e-4)


def test_window_suppresses_border_cross():
  """Without a taper the FFT sees the jump between opposite borders as an edge: a bright cross on
  the frequency axes. The Hann window removes it (natural LR images: see docs/conventions.md)."""
  rows, cols = np.meshgrid(np.arange(200), np.arange(230), indexing='ij')
  noise = np.random.default_rng(12).random((200, 230))
  image = 0.2 + 0.5 * rows / 200 + 0.2 * cols / 230 + 0.05 * noise
  c = 128
  excess = {}
  for window in (True, False):
    m = np.asarray(spectrum.amplitude_spectrum(image[..., None], size=256, window=window))[..., 0]
    on_axes = np.concatenate([m[c, c + 8:c + 100], m[c + 8:c + 100, c]])
    beside = np.concatenate([m[c + 4, c + 8:c + 100], m[c + 8:c + 100, c + 4]])
    excess[window] = np.mean(on_axes - beside)
  assert excess[False] > 0.3 and abs(excess[True]) < 0.1  # measured 0.52 and 0.05


@pytest.mark.parametrize('mode', ['crop', 'welch'])
@pytest.mark.parametrize('shape', [(256, 256), (512, 384), (90, 140)])
def test_white_noise_periodogram_level(mode, shape):
  """Periodogram normalisation: white noise of variance v has E[P] = v in every bin, and Welch
  averaging of overlapping tiles lowers the estimate's spread below a single periodogram's."""
  std = 0.1
  noise = 0.5 + std * np.random.default_rng(5).standard_normal(shape)
  power = np.asarray(spectrum.power_spectrum(noise[..., None], size=256, mode=mode), np.float64)
  power[128, 128] = np.nan  # DC is removed by design
  np.testing.assert_allclose(np.nanmean(power), std ** 2, rtol=0.05)
  spread = np.nanstd(power) / np.nanmean(power)
  if mode == 'welch' and shape == (512, 384):  # 3 × 2 tiles
    assert spread < 0.7
  else:  # one tile: |FFT|² of Gaussian noise is exponential, spread 1
    assert 0.85 < spread < 1.15


@pytest.mark.parametrize('mode', ['crop', 'welch'])
def test_amplitude_spectrum_shapes_range_and_batching(mode):
  rng = np.random.default_rng(6)
  for shape in [(2, 300, 180, 3), (2, 64, 64, 3), (1, 256, 256, 1), (1, 520, 700, 3)]:
    lr = rng.random(shape).astype(np.float32)
    m = np.asarray(spectrum.amplitude_spectrum(lr, size=256, mode=mode))
    assert m.shape == (shape[0], 256, 256, 1) and m.dtype == np.float32
    assert np.all(np.isfinite(m)) and m.min() >= -1.0 and m.max() <= 1.0
    single = np.asarray(spectrum.amplitude_spectrum(lr[0], size=256, mode=mode))
    assert single.shape == (256, 256, 1)
    np.testing.assert_allclose(single, m[0], atol=1e-5)


def test_amplitude_spectrum_is_standardised_log_amplitude():
  """Documented range: standard score of log amplitude / 3, clipped; DC (removed) clips to −1."""
  lr = blurred_noise(gaussian(15, 2.0, 1.0, 0.7), shape=(200, 260))
  m = np.asarray(spectrum.amplitude_spectrum(lr, size=256), np.float64)[..., 0]
  assert m[128, 128] == m.min()  # DC carries no kernel information and is set to the floor
  # Nothing reaches ±3σ here, so mean and std are exactly those of a standard score / 3.
  np.testing.assert_allclose([m.mean(), m.std()], [0.0, 1 / 3], atol=1e-4)
  quantised = np.asarray(spectrum.amplitude_spectrum(np.round(lr * 255) / 255, size=256))
  assert quantised.min() == -1.0 and np.mean(np.abs(quantised) == 1.0) < 0.01  # clips only tails
  # Invariant to the LR's brightness and contrast.
  m2 = np.asarray(spectrum.amplitude_spectrum(0.2 + 0.5 * lr, size=256), np.float64)[..., 0]
  np.testing.assert_allclose(m2, m, atol=5e-3)  # float32 round-off in the deepest bins


def test_amplitude_spectrum_rejects_bad_inputs():
  with pytest.raises(ValueError, match='mode'):
    spectrum.amplitude_spectrum(np.zeros((32, 32, 3)), size=64, mode='tiles')
  with pytest.raises(ValueError, match='channels'):
    spectrum.amplitude_spectrum(np.zeros((32, 32, 2)), size=64)
  with pytest.raises(ValueError, match='shape'):
    spectrum.amplitude_spectrum(np.zeros((32, 32)), size=64)


# ----------------------------------------------------------------------------------------------
# Spatial input (Table 3 ablation).


def test_spatial_input_crop_pad_and_range():
  rng = np.random.default_rng(7)
  big = rng.random((300, 280, 3))
  luma = (16 + big @ np.array([65.481, 128.553, 24.966])) / 255
  expected = 2 * (luma - 16 / 255) / (219 / 255) - 1
  out = np.asarray(spectrum.spatial_input(big, size=256))
  assert out.shape == (256, 256, 1)
  np.testing.assert_allclose(out[..., 0], expected[22:278, 12:268], atol=1e-5)

  small = rng.random((2, 100, 70, 3))
  out = np.asarray(spectrum.spatial_input(small, size=128))
  luma = (16 + small @ np.array([65.481, 128.553, 24.966])) / 255
  padded = np.pad(luma, ((0, 0), (14, 14), (29, 29)), mode='reflect')
  np.testing.assert_allclose(out[..., 0], 2 * (padded - 16 / 255) / (219 / 255) - 1, atol=1e-5)

  extremes = np.stack([np.ones((64, 64, 3)), np.zeros((64, 64, 3))])
  out = np.asarray(spectrum.spatial_input(extremes, size=64))
  np.testing.assert_allclose(out[:, 0, 0, 0], [1, -1], atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Kernel map (Kernel↑) and its inverse.


@pytest.mark.parametrize('size', [64, 256])
def test_kernel_to_map_is_linear_resize_scaled_to_unit_peak(size):
  k = family_kernels()['motion23'][0]
  up = resize(k, (size, size), order=1, mode='edge', anti_aliasing=False)
  m = np.asarray(spectrum.kernel_to_map(k, size))[..., 0]
  np.testing.assert_allclose(m, 2 * up / up.max() - 1, atol=5e-7)  # measured ≤ 2.5e-7
  assert m.max() == 1.0


@pytest.mark.parametrize('size', [64, 256])
@pytest.mark.parametrize('family', ['gaussian15', 'motion23', 'disk15'])
def test_kernel_map_round_trip(family, size):
  k = family_kernels()[family]
  back = np.asarray(spectrum.map_to_kernel(spectrum.kernel_to_map(k, size), k.shape[-1]))
  assert back.shape == k.shape
  # docs/conventions.md (Inverse): mean |Δ| per pixel ≤ 3e-9, max ≤ 1e-7. Measured over 96 kernels of the
  # three families at S = 64 and 256: ≤ 2.5e-9 and ≤ 3.5e-8; here ≤ 1.5e-9 and ≤ 2.5e-8 on an AVX-512 CPU,
  # 6.4e-8 at gaussian15-256 on an AVX2 one (float32 sums in another order; ~8 ulp of its 0.088 peak).
  assert np.mean(np.abs(back - k), axis=(1, 2)).max() < 3e-9
  assert np.abs(back - k).max() < 1e-7


def test_kernel_map_range_background_and_centre():
  size = 256
  k = disk(15, 2.0)
  m = np.asarray(spectrum.kernel_to_map(k, size))[..., 0]
  assert m.max() == 1.0 and m.min() == -1.0
  assert np.all(m[:64] == -1.0) and np.all(m[:, -64:] == -1.0)  # disk radius 2 ≪ 7.5: background
  weight = m + 1.0
  idx = np.arange(size)
  centroid = np.array([np.sum(weight.sum(1) * idx), np.sum(weight.sum(0) * idx)]) / weight.sum()
  np.testing.assert_allclose(centroid, ((size - 1) / 2, (size - 1) / 2), atol=1e-5)  # measured 2.5e-6
  # Rotating the kernel flips the map on both axes (the flip-invariant map loss relies on it).
  km = family_kernels()['motion23'][1]
  np.testing.assert_allclose(np.asarray(spectrum.kernel_to_map(km[::-1, ::-1].copy(), size)),
                             np.asarray(spectrum.kernel_to_map(km, size))[::-1, ::-1], atol=1e-6)


def test_map_to_kernel_of_noisy_maps_is_a_kernel():
  rng = np.random.default_rng(8)
  truth = family_kernels()['gaussian15']
  clean = np.asarray(spectrum.kernel_to_map(truth, 64))
  noise = 0.1 * rng.standard_normal(clean.shape)
  # As from a tanh generator: clipped to [-1, 1], so the background noise is one-sided.
  k = np.asarray(spectrum.map_to_kernel(np.clip(clean + noise, -1, 1).astype(np.float32), 15))
  assert k.shape == (2, 15, 15) and k.min() >= 0.0
  np.testing.assert_allclose(k.sum(axis=(1, 2)), 1.0, atol=1e-5)
  # Least squares averages zero-mean noise over each kernel pixel's footprint: closer to the truth
  # than point-sampling the noisy map back (skimage linear resize without anti-aliasing).
  noisy = (clean + noise).astype(np.float32)
  k = np.asarray(spectrum.map_to_kernel(noisy, 15))
  sampled = resize((noisy[..., 0] + 1) / 2, (2, 15, 15), order=1, anti_aliasing=False)
  sampled = np.maximum(sampled, 0)
  sampled /= sampled.sum(axis=(1, 2), keepdims=True)
  # docs/conventions.md (Inverse): about half the error of point sampling at 64².
  assert np.mean(np.abs(k - truth)) < 0.6 * np.mean(np.abs(sampled - truth))  # measured 0.54
  # A map with no positive mass decodes to the identity kernel.
  delta = np.asarray(spectrum.map_to_kernel(-np.ones((64, 64, 1), np.float32), 15))
  assert delta[7, 7] == 1.0 and delta.sum() == 1.0


def test_kernel_map_rejects_bad_sizes():
  with pytest.raises(ValueError, match='ksize'):
    spectrum.kernel_to_map(np.ones((23, 23)) / 529, 16)
  with pytest.raises(ValueError, match='one channel'):
    spectrum.map_to_kernel(np.zeros((1, 64, 64, 2)), 15)


# ----------------------------------------------------------------------------------------------
# Canonical motion kernels and the flip-invariant L1.


def off_centre(rng):
  """A motion-like kernel whose centre of mass is off the centre pixel by a fractional amount."""
  k = motion_like(rng, margin=5)
  return ndimage.shift(k, rng.uniform(-1.5, 1.5, size=2), order=1, mode='constant')


def centre_of_mass(k):
  offsets = np.arange(k.shape[-1]) - k.shape[-1] // 2
  return np.array([np.sum(k.sum(1) * offsets), np.sum(k.sum(0) * offsets)]) / k.sum()


def test_canonical_kernel_is_centred_kernel_with_positive_row_third_moment():
  rng = np.random.default_rng(9)
  ks = np.stack([off_centre(rng) for _ in range(6)])
  c = np.asarray(spectrum.canonical_kernel(ks), np.float64)
  r = np.arange(23) - 11
  rows, cols = np.meshgrid(r, r, indexing='ij')
  for ci in c:
    assert ci.min() >= 0.0 and abs(ci.sum() - 1.0) < 1e-6  # measured ≤ 1.5e-7
    # docs/conventions.md: centred to ≤ 2e-6 px (measured ≤ 9.3e-7 over 200 kernels, ≤ 5.5e-7 here).
    np.testing.assert_allclose(centre_of_mass(ci), 0.0, atol=2e-6)
    assert np.sum(ci * (rows ** 2 + cols ** 2) * rows) > 0


def test_canonical_kernel_invariances():
  rng = np.random.default_rng(10)
  ks = np.stack([off_centre(rng) for _ in range(6)])
  c = np.asarray(spectrum.canonical_kernel(ks))
  rotated = np.asarray(spectrum.canonical_kernel(ks[:, ::-1, ::-1].copy()))
  shifted = np.asarray(spectrum.canonical_kernel(np.roll(ks, (2, -3), axis=(1, 2))))
  again = np.asarray(spectrum.canonical_kernel(c))
  for other in (rotated, shifted, again):
    np.testing.assert_allclose(other, c, atol=1e-6)
  # The canonical kernel is the input up to a shift and a rotation: its spectrum is unchanged apart
  # from the sub-pixel linear-interpolation step (a mild low-pass), so the streak's shape survives.
  assert np.max(np.abs(c - ks)) > 1e-3  # it did move these kernels


def test_canonical_kernel_keeps_centred_symmetric_kernels():
  ks = np.stack([gaussian(15, 3.0, 1.0, 0.4), disk(15, 2.5)])
  np.testing.assert_allclose(spectrum.canonical_kernel(ks), ks, atol=1e-6)


def test_canonical_kernel_on_project_motion_kernels():
  keys = jax.random.split(jax.random.key(0), 4)
  ks = jax.vmap(lambda key: kernels.motion_kernel(key, size=23))(keys)
  c = np.asarray(spectrum.canonical_kernel(ks))
  rotated = np.asarray(spectrum.canonical_kernel(jnp.flip(ks, (1, 2))))
  np.testing.assert_allclose(rotated, c, atol=1e-6)
  # Already centred by construction: canonicalisation only picks the orientation.
  ks = np.asarray(ks)
  for ki, ci in zip(ks, c):
    assert np.allclose(ci, ki, atol=1e-6) or np.allclose(ci, ki[::-1, ::-1], atol=1e-6)


def test_kernel_distance_is_blind_to_180_degrees_only_when_asked():
  rng = np.random.default_rng(11)
  a = np.stack([motion_like(rng), motion_like(rng)])
  b = np.stack([disk(23, 3.0), gaussian(23, 2.0, 2.0, 0.0)])
  rot = a[:, ::-1, ::-1]
  np.testing.assert_allclose(spectrum.kernel_distance(a, rot, True), 0.0, atol=1e-9)
  np.testing.assert_allclose(spectrum.kernel_distance(a, rot, False), np.mean(np.abs(a - rot), axis=(1, 2)),
                             rtol=1e-5)
  assert np.all(np.mean(np.abs(a - rot), axis=(1, 2)) > 1e-4)  # a plain L1 would not be 0
  plain = np.mean(np.abs(a - b), axis=(1, 2))
  np.testing.assert_allclose(spectrum.kernel_distance(a, b, True), plain, rtol=1e-5)
  # Hand example: b is a's rotation plus 0.1 on one of 9 pixels.
  x = np.zeros((3, 3)); x[0, 0] = 1.0
  y = np.zeros((3, 3)); y[2, 2] = 1.0; y[1, 1] = 0.1
  np.testing.assert_allclose(spectrum.kernel_distance(x, y, True), 0.1 / 9, rtol=1e-6)
  np.testing.assert_allclose(spectrum.kernel_distance(x, y, False), 2.1 / 9, rtol=1e-6)
  assert spectrum.kernel_distance(a, b, True).shape == (2,)
  # Maps (B, S, S, 1), rotated in the plane of axes (1, 2): one value per map.
  maps = a[..., None]
  np.testing.assert_allclose(spectrum.kernel_distance(maps, maps[:, ::-1, ::-1], True, axes=(1, 2)), 0.0, atol=1e-9)
  with pytest.raises(ValueError, match='same shape'):
    spectrum.kernel_distance(a, b[:1], True)
