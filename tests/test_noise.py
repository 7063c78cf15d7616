"""s2k_jax/noise.py: the noise level read off photos with known added noise."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
import skimage.restoration

from configs import common
from s2k_jax import data
from s2k_jax import degradation
from s2k_jax import images
from s2k_jax import kernels
from s2k_jax import noise


def _blurred_lr(name, scale=2, seed=0):
  """A held-out photo as a realistic noise-free LR image: Gaussian blur, ×scale subsampling."""
  hr = images.load_image(os.path.join(skimage.data.data_dir, name))
  deg = common.get_degradation_config('gaussian')
  deg.scale = scale
  k = kernels.sample_kernels(jax.random.key(seed), 1, deg)
  return np.asarray(degradation.blur_downsample(jnp.asarray(hr[None]), k, scale))[0]


@pytest.mark.parametrize('name', data.BUNDLED_EVAL)
@pytest.mark.parametrize('sigma', [0.005, 0.01, 0.02, 0.05])
def test_estimate_recovers_added_noise(name, sigma):
  """Within 10% of σ plus the clean photo's floor (measured: 0.24–0.32% from texture and 8-bit
  rounding, which add in quadrature; worst miss 2.3e-3 at σ = 0.5%), three noise draws."""
  lr = _blurred_lr(name)
  rng = np.random.default_rng(0)
  for _ in range(3):
    noisy = np.clip(lr + sigma * rng.standard_normal(lr.shape), 0, 1)
    noisy = np.round(noisy * 255) / 255  # saved as 8 bits
    assert abs(noise.estimate_sigma(noisy) - sigma) < 0.1 * sigma + 0.003


@pytest.mark.parametrize('name', data.BUNDLED_EVAL)
def test_clean_photo_reads_nearly_noise_free(name):
  assert noise.estimate_sigma(np.round(_blurred_lr(name) * 255) / 255) < 0.004


def test_bad_values_are_refused():
  for bad in (-0.01, 0.25, float('nan')):
    with pytest.raises(ValueError, match=r'\[0, 0.2\]'):
      noise.check_sigma(bad)
  with pytest.raises(ValueError, match='at least 4×4'):
    noise.estimate_sigma(np.zeros((3, 3, 3)))


@pytest.mark.parametrize('shape', [(300, 451), (75, 100), (101, 77), (9, 5)])
def test_estimate_equals_skimage(shape):
  """The jax estimate equals skimage's (float64, pywt's db2 transform) on an 8-bit photo crop of even
  and odd sides, colour and grey, with an all-black area (its zero coefficients left out as skimage
  does) and with added noise. Within 0.5%: 8-bit images give coefficients on a few discrete levels, and
  the few that float64 cancels to exactly 0 outside black areas (skimage drops them; float32 keeps
  them) move the median to a neighbouring level (measured: ≤ 0.31%)."""
  photo = images.load_image(os.path.join(skimage.data.data_dir, 'chelsea.png'))[:shape[0], :shape[1]]
  rng = np.random.default_rng(0)
  for sigma in (0.0, 0.02):
    x = np.round(np.clip(photo + sigma * rng.standard_normal(photo.shape), 0, 1) * 255) / 255
    x[:shape[0] // 3, :shape[1] // 4] = 0
    for image, axis in ((x, -1), (x[..., 1], None)):
      want = skimage.restoration.estimate_sigma(image, channel_axis=axis, average_sigmas=True)
      np.testing.assert_allclose(noise.estimate_sigma(image), want, rtol=5e-3, err_msg=f'{shape} {sigma} {axis}')


def test_batch_estimate_is_each_images_own():
  rng = np.random.default_rng(1)
  batch = rng.random((3, 20, 24, 3)).astype(np.float32) * np.array([0.01, 0.1, 1.0])[:, None, None, None]
  batch[2] = 0.0  # no coefficient outside black areas: read as noise-free
  got = np.asarray(noise.estimate_sigmas(jnp.asarray(batch)))
  np.testing.assert_allclose(got, [noise.estimate_sigma(x) for x in batch], rtol=1e-6)
  assert got[0] < got[1] and got[2] == 0.0
