"""Colour conversion used by SR papers (§3.3 spectrum input and §4 PSNR/SSIM on the Y channel).

The luma is ITU-R BT.601 as MATLAB's `rgb2ycbcr` computes it, which is what SR benchmarks
(and the S2K comparison tables) report: Y = 16 + 65.481 R + 128.553 G + 24.966 B for RGB in [0, 1],
here divided by 255 so that Y stays on the [0, 1] scale (studio swing: 16/255 .. 235/255).
"""
import jax.numpy as jnp
import numpy as np

# Rows of MATLAB's rgb2ycbcr matrix (already divided by 255) and its offset, for RGB in [0, 1].
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], np.float32) / 255.0
_Y_OFFSET = np.float32(16.0 / 255.0)
Y_MIN = 16.0 / 255.0   # luma of black
Y_MAX = 235.0 / 255.0  # luma of white


def rgb_to_y(x: jnp.ndarray) -> jnp.ndarray:
  """BT.601 luma (MATLAB `rgb2ycbcr(x)(:, :, 1)`, divided by 255) of RGB in [0, 1].

  Args:
    x: (..., 3) RGB values in [0, 1], any float or integer dtype castable to float32.

  Returns:
    (...) float32 luma in [16/255, 235/255] for inputs in [0, 1].
  """
  x = jnp.asarray(x)
  if x.ndim < 1 or x.shape[-1] != 3:
    raise ValueError(f'rgb_to_y expects RGB with 3 channels last, got shape {x.shape}; '
                     'convert grayscale inputs yourself or pass (..., 3) arrays.')
  x = x.astype(jnp.float32)
  return jnp.einsum('...c,c->...', x, _Y_WEIGHTS, precision='highest') + _Y_OFFSET
