"""Tests for s2k_jax/metrics.py (paper §4.1 Table 1 PSNR/SSIM; Eq. 13 kernel distances).

References are independent of the code: scikit-image's `peak_signal_noise_ratio` and
`structural_similarity` in float64 on a float64 numpy Y channel, the BT.601 formula on pure colours,
closed forms (constant offsets, constant images, shifted deltas), scipy's relative entropy, and a
numpy transcription of FKP's kernel PSNR.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from skimage import data
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from s2k_jax import color
from s2k_jax import kernels
from s2k_jax import metrics

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
# docs/conventions.md (Metrics, SSIM): float32 round-off keeps SSIM within 1e-6 and PSNR within 2e-5 dB of
# float64 references. Measured over 240 image pairs (37×53 to 96×80, Y and RGB): ≤ 6.4e-7 and ≤ 1e-5 dB
# from scikit-image; ≤ 1.1e-5 dB from the closed form of a constant offset; ≤ 4.1e-7 and ≤ 4.8e-6 dB on
# the pairs below.
SSIM_ATOL = 1e-6
PSNR_ATOL = 2e-5


# ----------------------------------------------------------------------------------------------
# Float64 numpy reference of the SR-paper protocol (BasicSR `tensor2img` + `to_y_channel`).


def ref_levels(x):
  """uint8 as is; floats rounded in float32 as BasicSR's tensor2img does (`(img * 255.0).round()`)."""
  if x.dtype == np.uint8:
    return x.astype(np.float64)
  return np.round(np.clip(x.astype(np.float32), 0, 1) * np.float32(255)).astype(np.float64)


def ref_y(x):
  lv = ref_levels(x)
  return 16 + (65.481 * lv[..., 0] + 128.553 * lv[..., 1] + 24.966 * lv[..., 2]) / 255


def ref_scores(a, b, crop_border, y_channel):
  """skimage PSNR/SSIM on one (H, W, C) pair, everything float64."""
  if y_channel and a.shape[-1] == 3:
    x, y = ref_y(a), ref_y(b)
  else:
    x, y = ref_levels(a), ref_levels(b)
  if x.ndim == 3 and x.shape[-1] == 1:
    x, y = x[..., 0], y[..., 0]
  if crop_border:
    x = x[crop_border:-crop_border, crop_border:-crop_border]
    y = y[crop_border:-crop_border, crop_border:-crop_border]
  channel_axis = -1 if x.ndim == 3 else None
  p = sk_psnr(x, y, data_range=255)
  s = sk_ssim(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255,
              channel_axis=channel_axis)
  return p, s


def image_pairs(height, width, seed):
  """Three (HR uint8, SR) pairs: natural crops vs noisy float / noisy uint8, and a random float pair."""
  rng = np.random.default_rng(seed)
  hr1 = data.astronaut()[60:60 + height, 180:180 + width]
  sr1 = np.clip(hr1 / 255 + rng.normal(0, 0.03, hr1.shape), 0, 1).astype(np.float32)
  hr2 = data.chelsea()[40:40 + height, 100:100 + width]
  sr2 = np.clip(hr2.astype(np.int32) + rng.integers(-6, 7, hr2.shape), 0, 255).astype(np.uint8)
  hr3 = rng.random((height, width, 3)).astype(np.float32)
  sr3 = np.clip(hr3 + rng.normal(0, 0.1, hr3.shape), 0, 1).astype(np.float32)
  return [(hr1, sr1), (hr2, sr2), (hr3, sr3)]


# ----------------------------------------------------------------------------------------------
# Levels and luma.


def test_levels_round_like_basicsr_and_keep_uint8():
  rng = np.random.default_rng(0)
  x = rng.uniform(-0.2, 1.2, (7, 9, 3)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(metrics.to_levels(x)), ref_levels(x))
  u = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
  np.testing.assert_array_equal(np.asarray(metrics.to_levels(u)), u.astype(np.float32))
  with pytest.raises(ValueError, match='uint8'):
    metrics.to_levels(u.astype(np.int32))


@pytest.mark.parametrize('rgb,expected', [
    ((0, 0, 0), 16.0), ((255, 255, 255), 235.0), ((255, 0, 0), 16 + 65.481),
    ((0, 255, 0), 16 + 128.553), ((0, 0, 255), 16 + 24.966), ((128, 64, 32), None)])
def test_y_of_pure_colours_follows_bt601(rgb, expected):
  if expected is None:  # a mixed colour straight from the formula
    expected = 16 + (65.481 * 128 + 128.553 * 64 + 24.966 * 32) / 255
  u = np.array(rgb, np.uint8)
  f = u.astype(np.float32) / 255
  assert float(metrics.to_y255(u)) == pytest.approx(expected, abs=1e-4)
  assert float(metrics.to_y255(f)) == pytest.approx(expected, abs=1e-4)


# ----------------------------------------------------------------------------------------------
# PSNR / SSIM against scikit-image.


@pytest.mark.parametrize('crop_border,height,width', [(2, 40, 56), (3, 37, 53), (4, 48, 48)])
def test_y_channel_matches_skimage(crop_border, height, width):
  pairs = image_pairs(height, width, seed=crop_border)
  for a, b in pairs:
    p_ref, s_ref = ref_scores(a, b, crop_border, y_channel=True)
    assert float(metrics.psnr(a, b, crop_border=crop_border)) == pytest.approx(p_ref, abs=PSNR_ATOL)
    assert float(metrics.ssim(a, b, crop_border=crop_border)) == pytest.approx(s_ref, abs=SSIM_ATOL)


@pytest.mark.parametrize('crop_border', [0, 3])
def test_rgb_matches_skimage(crop_border):
  for a, b in image_pairs(33, 45, seed=10 + crop_border):
    p_ref, s_ref = ref_scores(a, b, crop_border, y_channel=False)
    assert float(metrics.psnr(a, b, crop_border=crop_border, y_channel=False)) == pytest.approx(
        p_ref, abs=PSNR_ATOL)
    assert float(metrics.ssim(a, b, crop_border=crop_border, y_channel=False)) == pytest.approx(
        s_ref, abs=SSIM_ATOL)


def test_single_channel_is_scored_as_luma():
  a = data.camera()[200:240, 180:230, None]
  b = np.clip(a.astype(np.int32) + np.random.default_rng(3).integers(-9, 10, a.shape), 0, 255)
  b = b.astype(np.uint8)
  p_ref, s_ref = ref_scores(a, b, 2, y_channel=True)
  assert float(metrics.psnr(a, b, crop_border=2)) == pytest.approx(p_ref, abs=PSNR_ATOL)
  assert float(metrics.ssim(a, b, crop_border=2)) == pytest.approx(s_ref, abs=SSIM_ATOL)


def test_ssim_of_bright_flat_image_keeps_float32_precision():
  """Near-white smooth images are where E[x²] − E[x]² loses most digits in float32."""
  rng = np.random.default_rng(4)
  a = np.round(225 + 5 * np.sin(np.arange(96) / 20))[:, None] * np.ones((1, 80))
  b = np.clip(a + rng.integers(-1, 2, a.shape), 0, 255)
  ref = sk_ssim(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
  ours = metrics.ssim(a[..., None].astype(np.uint8), b[..., None].astype(np.uint8))
  assert float(ours) == pytest.approx(ref, abs=5e-7)


# ----------------------------------------------------------------------------------------------
# Closed forms.


@pytest.mark.parametrize('delta', [1, 3, 10])
def test_constant_offset_psnr(delta):
  a = np.random.default_rng(delta).integers(10, 200, (2, 20, 24, 3)).astype(np.uint8)
  b = a + np.uint8(delta)
  rgb = np.asarray(metrics.psnr(a, b, y_channel=False))
  np.testing.assert_allclose(rgb, 20 * np.log10(255 / delta), atol=PSNR_ATOL)
  # Y moves by δ·(65.481 + 128.553 + 24.966)/255 = δ·219/255.
  y = np.asarray(metrics.psnr(a, b, crop_border=2))
  np.testing.assert_allclose(y, 20 * np.log10(255 / (delta * 219 / 255)), atol=PSNR_ATOL)


@pytest.mark.parametrize('p,q', [(30, 200), (128, 129), (0, 255)])
def test_constant_images_ssim(p, q):
  """σ = 0 everywhere, so SSIM is the luminance term (2pq + C1)/(p² + q² + C1)."""
  a = np.full((16, 19, 1), p, np.uint8)
  b = np.full((16, 19, 1), q, np.uint8)
  expected = (2 * p * q + C1) / (p ** 2 + q ** 2 + C1)
  assert float(metrics.ssim(a, b)) == pytest.approx(expected, abs=SSIM_ATOL)  # measured ≤ 1.9e-7


def test_identical_after_rounding_gives_inf_psnr_and_unit_ssim():
  rng = np.random.default_rng(5)
  u = rng.integers(0, 256, (2, 24, 30, 3)).astype(np.uint8)
  # Within ±0.45 level of u: identical once rounded to 8 bits, different before.
  f = ((u + rng.uniform(-0.45, 0.45, u.shape)) / 255).astype(np.float32)
  for y_channel in (True, False):
    np.testing.assert_array_equal(np.asarray(metrics.psnr(u, f, crop_border=3, y_channel=y_channel)),
                                  np.inf)
    np.testing.assert_allclose(np.asarray(metrics.ssim(u, f, crop_border=3, y_channel=y_channel)), 1.0,
                               atol=SSIM_ATOL)
  assert float(metrics.psnr(u[0], (u[0] + 1).astype(np.uint8))) < np.inf


# ----------------------------------------------------------------------------------------------
# Batching, jit, errors.


def test_batch_equals_single_images_under_jit_and_vmap():
  pairs = image_pairs(36, 44, seed=6)
  a = np.stack([ref_levels(p[0]).astype(np.uint8) for p in pairs])
  b = np.stack([ref_levels(p[1]).astype(np.uint8) for p in pairs])
  for fn in (metrics.psnr, metrics.ssim):
    batch = np.asarray(fn(a, b, crop_border=3))
    assert batch.shape == (3,) and batch.dtype == np.float32
    singles = [float(fn(a[i], b[i], crop_border=3)) for i in range(3)]
    np.testing.assert_allclose(batch, singles, rtol=1e-6)
    jitted = jax.jit(functools.partial(fn, crop_border=3))
    np.testing.assert_allclose(np.asarray(jitted(jnp.asarray(a), jnp.asarray(b))), batch, rtol=1e-6)
    vmapped = jax.vmap(functools.partial(fn, crop_border=3))(a, b)
    np.testing.assert_allclose(np.asarray(vmapped), batch, rtol=1e-6)


def test_bad_image_inputs_raise():
  a = np.zeros((2, 20, 20, 3), np.uint8)
  with pytest.raises(ValueError, match='same shape'):
    metrics.psnr(a, a[:1])
  with pytest.raises(ValueError, match='C = 1'):
    metrics.ssim(a[..., :2], a[..., :2])
  with pytest.raises(ValueError, match='crop_border'):
    metrics.psnr(a, a, crop_border=-1)
  with pytest.raises(ValueError, match='at least 11'):
    metrics.ssim(a, a, crop_border=5)
  with pytest.raises(ValueError, match='uint8'):
    metrics.psnr(a.astype(np.int32), a.astype(np.int32))


# ----------------------------------------------------------------------------------------------
# Kernel metrics (Eq. 13).


def gaussian_kernel(size, sigma_row, sigma_col, shift=(0, 0)):
  r = np.arange(size) - size // 2
  rows, cols = (r[:, None] - shift[0]) / sigma_row, (r[None] - shift[1]) / sigma_col
  g = np.exp(-0.5 * (rows ** 2 + cols ** 2))
  return g / g.sum()


def sparse_kernels(n, size, seed):
  """Random non-negative kernels with exact zeros off a random support, like motion/disk kernels."""
  rng = np.random.default_rng(seed)
  k = rng.random((n, size, size)) * (rng.random((n, size, size)) < 0.3)
  k[:, size // 2, size // 2] += 0.1
  return k / k.sum(axis=(1, 2), keepdims=True)


def ref_kl(x, y, eps=1e-10):
  """The documented rule (floor at ε, renormalise) through scipy's relative entropy."""
  return stats.entropy(np.maximum(x, eps).ravel(), np.maximum(y, eps).ravel())


def test_identical_kernels():
  k = sparse_kernels(3, 15, seed=0)
  out = metrics.kernel_metrics(k, k)
  np.testing.assert_array_equal(np.asarray(out['D_v']), 0.0)
  np.testing.assert_allclose(np.asarray(out['D_s']), 0.0, atol=1e-7)
  np.testing.assert_array_equal(np.asarray(out['psnr']), np.inf)


@pytest.mark.parametrize('size', [7, 15])
def test_shifted_delta(size):
  est = np.zeros((size, size))
  est[size // 2, size // 2] = 1
  gt = np.roll(est, 1, axis=1)
  assert float(metrics.kernel_mae(est, gt)) == pytest.approx(2 / size ** 2, rel=1e-6)
  assert float(metrics.kernel_psnr(est, gt)) == pytest.approx(10 * np.log10(size ** 2 / 2), abs=1e-4)
  # Floored and renormalised by s = 1 + (k² − 1)ε: (1/s)·log(1/ε) + (ε/s)·log ε.
  eps = 1e-10
  s = 1 + (size ** 2 - 1) * eps
  assert float(metrics.kernel_kl(est, gt)) == pytest.approx((1 - eps) / s * np.log(1 / eps), rel=1e-5)


def test_kl_matches_scipy_on_full_support_and_on_zeros():
  est = np.stack([gaussian_kernel(9, 1.5, 2.5), gaussian_kernel(9, 2.0, 2.0, shift=(1, -1))])
  gt = np.stack([gaussian_kernel(9, 2.0, 2.0), gaussian_kernel(9, 1.2, 2.8)])
  assert est.min() > 1e-8 and gt.min() > 1e-8  # the floor is inactive: plain KL
  np.testing.assert_allclose(np.asarray(metrics.kernel_kl(est, gt)),
                             [stats.entropy(e.ravel(), g.ravel()) for e, g in zip(est, gt)],
                             rtol=1e-5)  # measured ≤ 3.4e-6
  est, gt = sparse_kernels(8, 15, seed=1), sparse_kernels(8, 15, seed=2)
  ours = np.asarray(metrics.kernel_kl(est, gt))
  np.testing.assert_allclose(ours, [ref_kl(e, g) for e, g in zip(est, gt)], rtol=1e-5)  # measured ≤ 4.5e-7
  assert np.all(ours > 0)


def test_kl_is_non_negative_on_random_kernels():
  rng = np.random.default_rng(7)
  est = rng.random((32, 11, 11)) ** 4
  gt = sparse_kernels(32, 11, seed=8)
  assert np.all(np.asarray(metrics.kernel_kl(est / est.sum(axis=(1, 2), keepdims=True), gt)) >= -1e-6)


def test_kernel_psnr_is_fkp_definition():
  est, gt = sparse_kernels(4, 15, seed=9), sparse_kernels(4, 15, seed=10)
  expected = [20 * np.log10(1.0 / np.sqrt(np.mean((g - e) ** 2))) for e, g in zip(est, gt)]
  np.testing.assert_allclose(np.asarray(metrics.kernel_psnr(est, gt)), expected, atol=1e-5)  # measured 2.7e-6


def test_flip_invariance():
  k = sparse_kernels(4, 15, seed=11)
  rotated = k[:, ::-1, ::-1]
  out = metrics.kernel_metrics(k, rotated, flip_invariant=True)
  np.testing.assert_array_equal(np.asarray(out['D_v']), 0.0)
  np.testing.assert_allclose(np.asarray(out['D_s']), 0.0, atol=1e-7)
  np.testing.assert_array_equal(np.asarray(out['psnr']), np.inf)
  plain = metrics.kernel_metrics(k, rotated)
  assert np.all(np.asarray(plain['D_v']) > 1e-4) and np.all(np.asarray(plain['D_s']) > 1)


def test_flip_invariant_scores_use_the_orientation_chosen_by_dv():
  est, gt = sparse_kernels(64, 9, seed=12), sparse_kernels(64, 9, seed=13)
  rot = gt[:, ::-1, ::-1]
  mae = lambda x, y: np.mean(np.abs(x - y), axis=(1, 2))
  use_rot = mae(est, rot) < mae(est, gt)
  chosen = np.where(use_rot[:, None, None], rot, gt)
  kl_direct = np.array([ref_kl(e, g) for e, g in zip(est, gt)])
  kl_rot = np.array([ref_kl(e, g) for e, g in zip(est, rot)])
  # Some pairs where D_s alone would pick the other orientation, so the test can tell the rules apart.
  assert np.any((kl_rot < kl_direct) != use_rot)
  assert np.any(use_rot) and not np.all(use_rot)
  out = metrics.kernel_metrics(est, gt, flip_invariant=True)
  np.testing.assert_allclose(np.asarray(out['D_v']), np.minimum(mae(est, gt), mae(est, rot)), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(out['D_s']), np.where(use_rot, kl_rot, kl_direct), rtol=1e-5)
  expected_psnr = 10 * np.log10(1 / np.mean((est - chosen) ** 2, axis=(1, 2)))
  np.testing.assert_allclose(np.asarray(out['psnr']), expected_psnr, atol=1e-5)
  np.testing.assert_allclose(np.asarray(metrics.kernel_kl(est, gt, flip_invariant=True)),
                             np.asarray(out['D_s']), rtol=1e-6)


def width_reference(k):
  """√(tr Σ / 2) of a kernel's mass in float64, from its moments about its centroid."""
  k = np.asarray(k, np.float64) / np.sum(k)
  r, c = np.indices(k.shape)
  return np.sqrt(((k * (r - (k * r).sum()) ** 2).sum() + (k * (c - (k * c).sum()) ** 2).sum()) / 2)


@pytest.mark.parametrize('sx, sy, theta', [(1.0, 1.0, 0.0), (2.6, 2.6, 0.0), (1.0, 2.0, 0.7), (1.2, 3.0, -1.2)])
def test_kernel_covariance_and_width_of_a_gaussian(sx, sy, theta):
  """A Gaussian of σ ≥ 1 sampled on a 31² canvas has the covariance R diag(σx², σy²) Rᵀ to 1e-4 (sampling
  and truncation are far below that), so eigenvalues σx², σy² and width √((σx² + σy²) / 2). Width errors
  equal a float64 reference: negative for a narrower estimate (half the σ, where sampling makes the
  discrete width differ from σ/2), zero against itself."""
  k = np.asarray(kernels.gaussian_kernel(31, sx, sy, theta))
  cov = np.asarray(metrics.kernel_covariance(k), np.float64)
  np.testing.assert_allclose(np.linalg.eigvalsh(cov), sorted([sx ** 2, sy ** 2]), rtol=1e-4)
  np.testing.assert_allclose(float(metrics.kernel_width(k)), np.sqrt((sx ** 2 + sy ** 2) / 2), rtol=1e-4)
  narrow = np.asarray(kernels.gaussian_kernel(31, 0.5 * sx, 0.5 * sy, theta))
  out = metrics.kernel_metrics(np.stack([narrow, k]), np.stack([k, k]))
  expected = [width_reference(narrow) - width_reference(k), 0.0]
  assert expected[0] < -0.4 * np.sqrt((sx ** 2 + sy ** 2) / 2)
  np.testing.assert_allclose(np.asarray(out['width_error']), expected, rtol=1e-5, atol=1e-6)


def test_kernel_metrics_batch_equals_single_and_errors():
  est, gt = sparse_kernels(3, 15, seed=14), sparse_kernels(3, 15, seed=15)
  batch = metrics.kernel_metrics(est, gt, flip_invariant=True)
  for i in range(3):
    single = metrics.kernel_metrics(est[i], gt[i], flip_invariant=True)
    for key in ('D_v', 'D_s', 'psnr', 'width_error'):
      assert single[key].shape == ()
      assert float(single[key]) == pytest.approx(float(batch[key][i]), rel=1e-6, abs=1e-6)
  with pytest.raises(ValueError, match='same shape'):
    metrics.kernel_mae(est, gt[:, :-1, :-1])
  with pytest.raises(ValueError, match='eps > 0'):
    metrics.kernel_kl(est, gt, eps=0.0)


def test_y_agrees_with_color_module():
  x = np.random.default_rng(16).integers(0, 256, (5, 7, 3)).astype(np.uint8)
  np.testing.assert_allclose(np.asarray(metrics.to_y255(x)),
                             np.asarray(color.rgb_to_y(x.astype(np.float32) / 255)) * 255, atol=1e-4)


def test_kl_ignores_the_estimates_scale():
  """Both kernels are renormalised after the floor, so D_s compares shapes only."""
  k = sparse_kernels(2, 15, seed=17)
  np.testing.assert_allclose(np.asarray(metrics.kernel_kl(2.0 * k, k)), 0.0, atol=1e-6)


def test_saturation_ratio_by_hand_and_undefined_for_a_grey_reference():
  """Per image: mean (max − min) / max of a over b's (hand-computed for a two-pixel image); NaN for a
  grey reference (Set14 has grayscale photos stored as RGB), which a 1e-12 floor made ~1e10."""
  b = jnp.asarray([[[[0.5, 0.25, 0.25], [1.0, 0.5, 1.0]]]])       # saturations 0.5 and 0.5
  a = jnp.asarray([[[[0.5, 0.5, 0.25], [1.0, 1.0, 1.0]]]])        # 0.5 and 0
  np.testing.assert_allclose(metrics.saturation_ratio(a, b), [0.25 / 0.5], rtol=1e-6)
  grey = jnp.full((1, 4, 4, 3), 0.4)
  assert np.isnan(np.asarray(metrics.saturation_ratio(a[:, :, :1].repeat(4, 1).repeat(4, 2), grey))).all()
