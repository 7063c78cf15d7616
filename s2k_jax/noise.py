"""The LR noise level n of Eq. 1 (paper §3.1), estimated from a photo for restorers that read it.

`estimate_sigmas` is the classic wavelet estimate of additive white Gaussian noise (Donoho & Johnstone,
1994: the median absolute deviation of the finest diagonal Daubechies-2 wavelet coefficients / 0.6745),
as `skimage.restoration.estimate_sigma` computes it (symmetric extension; coefficients of all-black
areas left out), averaged over the colour channels; written in jax so that a training batch can be told
the σ s2k-sr will read off a photo (`restorer.told_noise`), one function for both. Image structure
barely reaches that sub-band, so the estimate reads the noise rather than the texture; a little of a
photo's detail and its 8-bit rounding do: clean blurred LR photos read 0.24–0.32% (on the [0, 1]
scale), which adds in quadrature to real noise, and sharp LR made by a resizer 0.6–4%
(tests/test_noise.py, docs/notebook.md).
"""
import jax
import jax.numpy as jnp
import numpy as np

SIGMA_MAX = 0.2  # Noise σ accepted from users (on [0, 1]): beyond it a photo is mostly noise.


# pywt.Wavelet('db2').dec_hi, and the median of |N(0, 1)| (scipy.stats.norm.ppf(0.75)).
_DB2_HIGH = (-0.48296291314453416, 0.8365163037378079, -0.2241438680420134, -0.12940952255126037)
_MEDIAN_ABS_NORMAL = 0.6744897501960817


def _high_pass(x: jax.Array, axis: int, taps=_DB2_HIGH) -> jax.Array:
  """One level of the db2 wavelet's detail band along `axis`, as `pywt.dwt(mode='symmetric')`: the
  signal extended by mirroring 3 samples (edge repeated), filtered, every second output from the second."""
  n = x.shape[axis]
  count = (n + len(taps) - 1) // 2
  pad = [(0, 0)] * x.ndim
  pad[axis] = (len(taps) - 1, len(taps) - 1)
  ext = jnp.pad(x, pad, mode='symmetric')
  return sum(t * jax.lax.slice_in_dim(ext, 4 - j, 4 - j + 2 * count - 1, stride=2, axis=axis)
             for j, t in enumerate(taps))


@jax.jit
def estimate_sigmas(images: jax.Array) -> jax.Array:
  """(B, h, w, C) images in [0, 1] → (B,) σ of white Gaussian noise each (on the [0, 1] scale), the
  channels' estimates averaged; 0 for an image with no coefficient outside all-black areas."""
  x = jnp.asarray(images, jnp.float32)
  detail = jnp.abs(_high_pass(_high_pass(x, 1), 2))
  # Coefficients whose whole support is 0 (black, clipped areas) are exact zeros that skimage leaves out.
  abs_taps = tuple(abs(t) for t in _DB2_HIGH)
  support = _high_pass(_high_pass(jnp.abs(x), 1, abs_taps), 2, abs_taps)
  sigma = jnp.nanmedian(jnp.where(support > 0, detail, jnp.nan), axis=(1, 2)) / _MEDIAN_ABS_NORMAL
  return jnp.mean(jnp.nan_to_num(sigma), axis=-1)


def estimate_sigma(image: np.ndarray) -> float:
  """σ (on the [0, 1] scale) of white Gaussian noise in an (h, w, 3) or (h, w) image in [0, 1]."""
  x = np.asarray(image, np.float32)
  if x.ndim not in (2, 3) or min(x.shape[:2]) < 4:
    raise ValueError(f'noise estimation needs an (h, w[, c]) image of at least 4×4 pixels, got {x.shape}.')
  return float(estimate_sigmas((x if x.ndim == 3 else x[..., None])[None])[0])


def check_sigma(noise_sigma: float, name: str = 'noise σ') -> float:
  """A user-given σ, checked: finite and in [0, SIGMA_MAX]."""
  sigma = float(noise_sigma)
  if not np.isfinite(sigma) or not 0.0 <= sigma <= SIGMA_MAX:
    raise ValueError(f'{name} must be in [0, {SIGMA_MAX}] (the LR noise standard deviation on the [0, 1] '
                     f'scale, e.g. 0.01 for 1%), got {noise_sigma}.')
  return sigma
