"""The LR noise level n of Eq. 1 (paper §3.1), estimated from a photo for restorers that read it.

`estimate_sigma` is the classic wavelet estimate of additive white Gaussian noise (Donoho & Johnstone,
1994: the median absolute deviation of the finest diagonal wavelet coefficients / 0.6745), as
`skimage.restoration.estimate_sigma` computes it, averaged over the colour channels. Image structure
barely reaches that sub-band, so the estimate reads the noise rather than the texture; a little of a
photo's detail and its 8-bit rounding do: clean blurred LR photos read 0.24–0.32% (on the [0, 1]
scale), which adds in quadrature to real noise (tests/test_noise.py).
"""
import numpy as np
import skimage.restoration

SIGMA_MAX = 0.2  # Noise σ accepted from users (on [0, 1]): beyond it a photo is mostly noise.


def estimate_sigma(image: np.ndarray) -> float:
  """σ (on the [0, 1] scale) of white Gaussian noise in an (h, w, 3) or (h, w) image in [0, 1]."""
  x = np.asarray(image, np.float64)
  if x.ndim not in (2, 3) or min(x.shape[:2]) < 4:
    raise ValueError(f'noise estimation needs an (h, w[, c]) image of at least 4×4 pixels, got {x.shape}.')
  return float(skimage.restoration.estimate_sigma(x, channel_axis=-1 if x.ndim == 3 else None,
                                                  average_sigmas=True))


def check_sigma(noise_sigma: float, name: str = 'noise σ') -> float:
  """A user-given σ, checked: finite and in [0, SIGMA_MAX]."""
  sigma = float(noise_sigma)
  if not np.isfinite(sigma) or not 0.0 <= sigma <= SIGMA_MAX:
    raise ValueError(f'{name} must be in [0, {SIGMA_MAX}] (the LR noise standard deviation on the [0, 1] '
                     f'scale, e.g. 0.01 for 1%), got {noise_sigma}.')
  return sigma
