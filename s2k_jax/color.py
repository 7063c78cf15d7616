"""Colour conversion used by SR papers (§3.3 spectrum input and §4 PSNR/SSIM on the Y channel), and
the chroma and saturation a restorer must keep (its colour fidelity; `with_luma_of`, the SFTMD
restorer's chroma from the bicubic upsampling).

The luma is ITU-R BT.601 as MATLAB's `rgb2ycbcr` computes it, which is what SR benchmarks
(and the S2K comparison tables) report: Y = 16 + 65.481 R + 128.553 G + 24.966 B for RGB in [0, 1],
here divided by 255 so that Y stays on the [0, 1] scale (studio swing: 16/255 .. 235/255).
"""
import jax.numpy as jnp

# The first row of MATLAB's rgb2ycbcr matrix and its offset, for RGB in [0, 1] (on the 0..255 scale).
Y_WEIGHTS = (65.481, 128.553, 24.966)
Y_OFFSET = 16.0
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
  # Elementwise on purpose: as a dot, XLA:CPU's float32 rounding depends on the pixel's position, so
  # equal pixels could get lumas 1e-5 apart (which shows as a finite PSNR of identical images).
  r, g, b = x[..., 0], x[..., 1], x[..., 2]
  return (Y_WEIGHTS[0] * r + Y_WEIGHTS[1] * g + Y_WEIGHTS[2] * b + Y_OFFSET) / 255.0


# The Cb and Cr rows of MATLAB's rgb2ycbcr (offset 128), for RGB in [0, 1] (on the 0..255 scale).
CB_WEIGHTS = (-37.797, -74.203, 112.0)
CR_WEIGHTS = (112.0, -93.786, -18.214)


def rgb_to_cbcr(x: jnp.ndarray) -> jnp.ndarray:
  """BT.601 chroma (MATLAB `rgb2ycbcr(x)(:, :, 2:3)`) on the 0..255 scale, of RGB in [0, 1]: (..., 2)."""
  x = jnp.asarray(x, jnp.float32)
  r, g, b = x[..., 0], x[..., 1], x[..., 2]
  cb = 128.0 + CB_WEIGHTS[0] * r + CB_WEIGHTS[1] * g + CB_WEIGHTS[2] * b
  cr = 128.0 + CR_WEIGHTS[0] * r + CR_WEIGHTS[1] * g + CR_WEIGHTS[2] * b
  return jnp.stack([cb, cr], axis=-1)


def saturation(x: jnp.ndarray) -> jnp.ndarray:
  """HSV saturation (max − min) / max of RGB in [0, 1], 0 for black: (...)."""
  x = jnp.asarray(x, jnp.float32)
  high, low = jnp.max(x, axis=-1), jnp.min(x, axis=-1)
  return jnp.where(high > 0, (high - low) / jnp.maximum(high, 1e-12), 0.0)


# Luma of a grey (R = G = B = g) is (219·g + 16)/255 and its chroma is zero (each chroma row sums to 0).
_GREY_PER_LUMA = 255.0 / sum(Y_WEIGHTS)


def with_luma_of(reference: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
  """`reference`'s BT.601 chroma with `x`'s luma (SRCNN's convention: SR on Y, chroma from bicubic).

  `reference` plus the grey that moves its luma to `x`'s: exactly `rgb_to_y(x)` and
  `rgb_to_cbcr(reference)` (no clipping here; clip afterwards), differentiable in both. (..., 3).
  """
  reference, x = jnp.asarray(reference, jnp.float32), jnp.asarray(x, jnp.float32)
  if reference.shape != x.shape:
    raise ValueError(f'with_luma_of needs arrays of one shape, got {reference.shape} and {x.shape}.')
  shift = (rgb_to_y(x) - rgb_to_y(reference)) * _GREY_PER_LUMA
  return reference + shift[..., None]
