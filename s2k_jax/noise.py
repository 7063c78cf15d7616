"""The LR noise level n of Eq. 1 (paper §3.1), estimated from a photo for restorers that read it.

`estimate_sigmas` is the classic wavelet estimate of additive white Gaussian noise (Donoho & Johnstone,
1994: the median absolute deviation of the finest diagonal Daubechies-2 wavelet coefficients / 0.6745),
as `skimage.restoration.estimate_sigma` computes it (symmetric extension; coefficients of all-black
areas left out), averaged over the colour channels. One function runs in numpy on a photo
(`estimate_sigma`, s2k-sr) and in jax on a training batch (`estimate_sigmas`), so that training can tell
a restorer the σ s2k-sr will read off a photo (`restorer.told_noise`). Image structure
barely reaches that sub-band, so the estimate reads the noise rather than the texture; a little of a
photo's detail and its 8-bit rounding do: clean blurred LR photos read 0.24–0.32% (on the [0, 1]
scale), which adds in quadrature to real noise, and sharp LR made by a resizer 0.6–4%
(tests/test_noise.py, docs/notebook.md).
"""
import warnings

import jax
import jax.numpy as jnp
import numpy as np

SIGMA_MAX = 0.2  # Noise σ accepted from users (on [0, 1]): beyond it a photo is mostly noise.


# pywt.Wavelet('db2').dec_hi, and the median of |N(0, 1)| (scipy.stats.norm.ppf(0.75)).
_DB2_HIGH = (-0.48296291314453416, 0.8365163037378079, -0.2241438680420134, -0.12940952255126037)
_MEDIAN_ABS_NORMAL = 0.6744897501960817


def _high_pass(x, axis: int, taps=_DB2_HIGH, xp=jnp):
  """One level of the db2 wavelet's detail band along `axis`, as `pywt.dwt(mode='symmetric')`: the
  signal extended by mirroring 3 samples (edge repeated), filtered, every second output from the second.
  `xp`: numpy or jax.numpy (the same code for one photo and for a jitted batch)."""
  count = (x.shape[axis] + len(taps) - 1) // 2
  pad = [(0, 0)] * x.ndim
  pad[axis] = (len(taps) - 1, len(taps) - 1)
  ext = xp.pad(x, pad, mode='symmetric')

  def tap(j):  # ext[..., len(taps) - j :: 2][:count] along `axis`
    index = [slice(None)] * x.ndim
    index[axis] = slice(len(taps) - j, len(taps) - j + 2 * count - 1, 2)
    return ext[tuple(index)]

  return sum(t * tap(j) for j, t in enumerate(taps))


def _sigmas(x, xp):
  """(B, h, w, C) → (B,): the per-channel MAD estimates of the finest diagonal band, averaged."""
  detail = xp.abs(_high_pass(_high_pass(x, 1, xp=xp), 2, xp=xp))
  # Coefficients whose whole support is 0 (black, clipped areas) are exact zeros that skimage leaves out.
  abs_taps = tuple(abs(t) for t in _DB2_HIGH)
  support = _high_pass(_high_pass(xp.abs(x), 1, abs_taps, xp), 2, abs_taps, xp)
  masked = xp.where(support > 0, detail, xp.nan)
  # A channel with no coefficient outside black areas has no median (NaN): it reads as noise-free.
  sigma = xp.nanmedian(masked, axis=(1, 2)) / _MEDIAN_ABS_NORMAL
  return xp.mean(xp.nan_to_num(sigma), axis=-1)


@jax.jit
def estimate_sigmas(images: jax.Array) -> jax.Array:
  """(B, h, w, C) images in [0, 1] → (B,) σ of white Gaussian noise each (on the [0, 1] scale), the
  channels' estimates averaged; 0 for an image with no coefficient outside all-black areas. In jax
  (float32) for training batches; `estimate_sigma` runs the same code in numpy on one photo."""
  return _sigmas(jnp.asarray(images, jnp.float32), jnp)


def estimate_sigma(image: np.ndarray) -> float:
  """σ (on the [0, 1] scale) of white Gaussian noise in an (h, w, 3) or (h, w) image in [0, 1]
  (numpy, float64: no compilation per image size)."""
  x = np.asarray(image, np.float64)
  if x.ndim not in (2, 3) or min(x.shape[:2]) < 4:
    raise ValueError(f'noise estimation needs an (h, w[, c]) image of at least 4×4 pixels, got {x.shape}.')
  with warnings.catch_warnings():  # numpy warns of a channel's all-NaN median, which _sigmas reads as 0
    warnings.simplefilter('ignore', RuntimeWarning)
    return float(_sigmas((x if x.ndim == 3 else x[..., None])[None], np)[0])


def check_sigma(noise_sigma: float, name: str = 'noise σ') -> float:
  """A user-given σ, checked: finite and in [0, SIGMA_MAX]."""
  sigma = float(noise_sigma)
  if not np.isfinite(sigma) or not 0.0 <= sigma <= SIGMA_MAX:
    raise ValueError(f'{name} must be in [0, {SIGMA_MAX}] (the LR noise standard deviation on the [0, 1] '
                     f'scale, e.g. 0.01 for 1%), got {noise_sigma}.')
  return sigma
