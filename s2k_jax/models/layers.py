"""Building blocks shared by the S2K generator and discriminator (paper §3.3, Fig. 4).

Both networks follow pix2pix: 4×4 convolutions with stride 2 and padding 1, the
generator's decoder made of 4×4 stride-2 transposed convolutions, BatchNorm, and
pix2pix's ``init_weights('normal')`` initialisation (conv weights N(0, 0.02),
BatchNorm scale N(1, 0.02), biases 0).

The transposed convolution is the one piece written by hand. On XLA:CPU the
gradient of ``flax.linen.ConvTranspose`` with respect to its kernel lowers to a
very slow convolution (the full U-Net step ran 15x slower than PyTorch), so
`conv_transpose_4x4_s2` carries a custom VJP made only of ordinary strided
convolutions. Its values and gradients equal the stock layer's.

Weight layout of `ConvTranspose4x4S2`: ``kernel`` has shape ``(4, 4, in, out)``
and means exactly what the ``kernel`` of ``flax.linen.ConvTranspose(out, (4, 4),
strides=(2, 2), padding=((2, 2), (2, 2)))`` means, so the two layers are
interchangeable with the same parameters. A PyTorch ``ConvTranspose2d(in, out, 4,
stride=2, padding=1)`` weight of shape ``(in, out, 4, 4)`` maps to it by moving
the spatial axes first and flipping them (`kernel_from_torch_conv_transpose`).
"""
from collections.abc import Callable
import functools
import math
from typing import Any

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

# Config names of the computation dtypes (`model.dtype`, `restorer.dtype`) → the modules' `dtype`.
COMPUTE_DTYPES = {'float32': None, 'bfloat16': jnp.bfloat16}


def compute_dtype(name: str, field: str) -> Any:
  """A config's computation dtype name → the `dtype` its modules take (None: float32 throughout)."""
  if name not in COMPUTE_DTYPES:
    raise ValueError(f'{field}={name!r}: the computation dtype must be one of {", ".join(COMPUTE_DTYPES)}.')
  return COMPUTE_DTYPES[name]


# Every conv of the project: NHWC activations, HWIO kernels.
DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')
# lax.conv_transpose pads the stride-dilated input; k - 1 - p = 2 per side gives
# PyTorch's ConvTranspose2d(k=4, s=2, p=1) and an output of exactly 2H x 2W.
_TRANSPOSE_PADDING = ((2, 2), (2, 2))
# The strided conv whose input-gradient is that transposed conv: H' = 2H -> H.
_CONV_PADDING = ((1, 1), (1, 1))


def _standard_normal(key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
  # Same values as jax.random.normal(key, shape), drawn flat: with jax 0.10's
  # partitionable threefry, XLA:CPU spends ~2 s compiling each distinct 4-D
  # draw, which made a U-Net init take minutes; 1-D draws compile in ms.
  size = math.prod(shape)
  return jax.random.normal(key, (size,), dtype).reshape(shape)


def conv_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
  """pix2pix ``init_weights('normal')``: conv weights N(0, 0.02)."""
  return 0.02 * _standard_normal(key, shape, dtype)


def batch_norm_scale_init(key: jax.Array, shape: tuple[int, ...],
                          dtype=jnp.float32) -> jax.Array:
  """pix2pix initialises BatchNorm weights as N(1, 0.02), not ones."""
  return 1.0 + 0.02 * _standard_normal(key, shape, dtype)


BN_MOMENTUM = 0.9  # running ← m·running + (1 − m)·batch statistic (PyTorch's momentum 0.1)


def batch_norm(train: bool, dtype: Any = None) -> nn.BatchNorm:
  """BatchNorm2d with PyTorch defaults (momentum 0.1 there is 0.9 here).

  The variance is computed two-pass, as PyTorch does, rather than as
  E[x²] - E[x]², which cancels badly in float32 when features have a large
  mean relative to their spread (log-amplitude spectra do). `dtype` is the
  output's (None: the input's); statistics and parameters are float32.
  """
  return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                      epsilon=1e-5, scale_init=batch_norm_scale_init,
                      use_fast_variance=False, dtype=dtype)


def conv4x4(features: int, strides: int, use_bias: bool, dtype: Any = None) -> nn.Conv:
  """PyTorch ``Conv2d(in, features, 4, strides, padding=1)`` with pix2pix init;
  computed in `dtype` (None: the input's), parameters float32."""
  return nn.Conv(features, (4, 4), strides=(strides, strides),
                 padding=_CONV_PADDING, use_bias=use_bias, kernel_init=conv_init,
                 bias_init=nn.initializers.zeros, dtype=dtype,
                 conv_general_dilated=_conv_general_dilated)


# Inputs at most this many pixels high and wide (the U-Net's innermost 4x4 and
# 2x2 levels) take the patches-times-kernel path of `_strided_conv`.
_SMALL_INPUT_SIDE = 4


def _is_small(x: jax.Array) -> bool:
  return max(x.shape[1], x.shape[2]) <= _SMALL_INPUT_SIDE


def _patches_4x4_s2(x: jax.Array) -> jax.Array:
  """(B, H, W, C) -> (B, H', W', 16·C): pad-1 4x4 windows at stride 2, in HWIO (i, j, c) order."""
  b, h, w, c = x.shape
  out_h, out_w = (h - 2) // 2 + 1, (w - 2) // 2 + 1
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  # A 1-pixel side has no output (as in lax); max(·, 0) keeps the slice stop from wrapping to -1.
  span_h, span_w = max(2 * out_h - 1, 0), max(2 * out_w - 1, 0)
  taps = [padded[:, i:i + span_h:2, j:j + span_w:2] for i in range(4) for j in range(4)]
  return jnp.stack(taps, axis=3).reshape(b, out_h, out_w, 16 * c)


def _strided_conv(y: jax.Array, conv_kernel: jax.Array) -> jax.Array:
  """The 4x4 stride-2 pad-1 conv that the transposed conv is the adjoint of.

  On inputs of a few pixels XLA:CPU swaps the operands of this conv and of its
  gradients into a layout its convolution emitter runs hundreds of times slower
  than the arithmetic needs (0.2-0.4 s each for the U-Net's 4x4 and 2x2 levels
  at batch 8). There the conv is written as a matrix product of the 16 windows
  with the kernel, whose gradients are matrix products and slices too. Same
  sums, in another order.
  """
  if _is_small(y):
    patches = _patches_4x4_s2(y)
    return jnp.dot(patches, conv_kernel.reshape(-1, conv_kernel.shape[-1]))
  return lax.conv_general_dilated(y, conv_kernel, (2, 2), _CONV_PADDING,
                                  dimension_numbers=DIMENSION_NUMBERS)


def _conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides, padding,
                          lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                          feature_group_count=1, precision=None, **kwargs) -> jax.Array:
  """`lax.conv_general_dilated` for `nn.Conv`; small 4x4 stride-2 convs go to `_strided_conv`."""
  is_4x4_s2 = (
      rhs.shape[:2] == (4, 4) and tuple(window_strides) == (2, 2)
      and tuple(map(tuple, padding)) == _CONV_PADDING and feature_group_count == 1
      and lhs_dilation in (None, (1, 1)) and rhs_dilation in (None, (1, 1))
      and dimension_numbers == lax.conv_dimension_numbers(lhs.shape, rhs.shape, DIMENSION_NUMBERS)
      and not kwargs and precision is None)
  if is_4x4_s2 and _is_small(lhs):
    return _strided_conv(lhs, rhs)
  return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
                                  rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                                  feature_group_count=feature_group_count, precision=precision,
                                  **kwargs)


def _adjoint_conv_kernel(kernel: jax.Array) -> jax.Array:
  """(4, 4, in, out) transposed-conv kernel -> HWIO kernel of `_strided_conv`.

  The map is its own inverse.
  """
  return jnp.flip(kernel, (0, 1)).swapaxes(2, 3)


@jax.custom_vjp
def conv_transpose_4x4_s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """PyTorch ``ConvTranspose2d(k=4, s=2, p=1)`` on NHWC input.

  Args:
    x: (B, H, W, C_in) input.
    kernel: (4, 4, C_in, C_out), the layout of ``flax.linen.ConvTranspose``.

  Returns:
    (B, 2H, 2W, C_out), equal to ``lax.conv_transpose(x, kernel, (2, 2),
    ((2, 2), (2, 2)))``.
  """
  b, h, w, _ = x.shape
  if _is_small(x):
    # The input-gradient of `_strided_conv` from (2H, 2W) down to (H, W).
    out = jax.ShapeDtypeStruct((b, 2 * h, 2 * w, kernel.shape[-1]), x.dtype)
    conv = functools.partial(_strided_conv, conv_kernel=_adjoint_conv_kernel(kernel))
    (y,) = jax.linear_transpose(conv, out)(x)
    return y
  return lax.conv_transpose(x, kernel, (2, 2), _TRANSPOSE_PADDING,
                            dimension_numbers=DIMENSION_NUMBERS)


def _conv_transpose_fwd(x, kernel):
  return conv_transpose_4x4_s2(x, kernel), (x, kernel)


def _conv_transpose_bwd(residuals, dy):
  # The transposed conv is the input-gradient of `_strided_conv`, so its own
  # input-gradient is `_strided_conv` itself and its kernel-gradient is the
  # kernel-gradient of `_strided_conv` evaluated at (dy, x): both lower to
  # ordinary strided convolutions instead of the slow lhs-dilated weight path.
  x, kernel = residuals
  conv_kernel = _adjoint_conv_kernel(kernel)
  dx = _strided_conv(dy, conv_kernel)
  _, kernel_vjp = jax.vjp(functools.partial(_strided_conv, dy), conv_kernel)
  (d_conv_kernel,) = kernel_vjp(x)
  return dx, _adjoint_conv_kernel(d_conv_kernel)


conv_transpose_4x4_s2.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


def kernel_from_torch_conv_transpose(weight: jax.Array) -> jax.Array:
  """PyTorch ``ConvTranspose2d`` weight (in, out, 4, 4) -> our (4, 4, in, out).

  PyTorch scatters ``x[h, w] * weight[:, :, i, j]`` to output ``(2h - 1 + i,
  2w - 1 + j)``; lax.conv_transpose correlates the dilated input with the kernel,
  which visits the taps in reverse, hence the spatial flip.
  """
  if weight.ndim != 4 or weight.shape[2:] != (4, 4):
    raise ValueError(f'Expected a PyTorch ConvTranspose2d weight of shape '
                     f'(in, out, 4, 4), got {weight.shape}.')
  return jnp.flip(jnp.transpose(weight, (2, 3, 0, 1)), (0, 1))


class ConvTranspose4x4S2(nn.Module):
  """Drop-in for ``nn.ConvTranspose(features, (4, 4), (2, 2), ((2, 2), (2, 2)))``.

  Same parameters (``kernel`` (4, 4, in, features), optional ``bias``
  (features,)), same outputs, fast gradients on CPU. Output is (B, 2H, 2W,
  features). Not forward-mode differentiable (custom VJP).

  Attributes:
    features: number of output channels.
    use_bias: add a bias (pix2pix: only where no BatchNorm follows).
    kernel_init: defaults to pix2pix's N(0, 0.02).
    dtype: computation dtype (None: promoted from the input's and float32);
      parameters are float32.
  """
  features: int
  use_bias: bool
  kernel_init: Callable[..., jax.Array] = conv_init
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 4:
      raise ValueError(f'ConvTranspose4x4S2 expects NHWC input, got shape {x.shape}.')
    kernel = self.param('kernel', self.kernel_init,
                        (4, 4, x.shape[-1], self.features), jnp.float32)
    dtype = self.dtype or jnp.promote_types(x.dtype, kernel.dtype)
    y = conv_transpose_4x4_s2(x.astype(dtype), kernel.astype(dtype))
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32).astype(dtype)
    return y
