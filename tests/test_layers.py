"""Tests for s2k_jax/models/layers.py: the hand-written conv paths against stock `lax` convolutions.

The U-Net (s2k_jax/models/unet.py) runs two convolutions: `conv4x4` (4×4, stride 2, padding 1) on the
way down and `ConvTranspose4x4S2` (4×4, stride 2, `lax` padding (2, 2), PyTorch's padding 1) on the way
up; the PatchGAN adds `conv4x4` at stride 1. A stride-2 conv whose input is at most 4 pixels on a side
(the U-Net's 4×4 and 2×2 levels) is computed as a matrix product of the 16 pad-1 windows with the kernel;
the transposed conv carries a custom VJP made of such strided convs (of its (2h, 2w) output or
cotangent), so it runs as matrix products where that is at most 4 pixels (the 1×1 and 2×2 levels).

Every test compares values and reverse-mode gradients (w.r.t. input and kernel, for a random cotangent)
with the plain formulation: `lax.conv_general_dilated` / `lax.conv_transpose` at `Precision.HIGHEST`,
differentiated by stock autodiff. Each also reads the jaxpr to check which path ran, so a fast path
silently handing back to `lax` (which would compare `lax` with itself) fails too.

Tolerance: the fast paths are the same sums in another order (docs/conventions.md, "Tiny convolutions
run as matrix products"). An output sums K = 16·C_in products, a gradient entry at most a few hundred;
two float32 summation orders of K normal terms differ by ~u·√K ≈ 6e-8·16 ≈ 1e-6 of a typical output,
less of the largest one. We assert max |fast − lax| ≤ 2e-6 · max |lax| per array (measured ≤ 6.4e-7 for
values and gradients), 10× tighter than the 5e-5-on-magnitude-10 the docs quote.
"""
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from s2k_jax.models import layers

_DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')
RTOL = 2e-6


def assert_close(actual, expected, rtol=RTOL):
  """max |actual − expected| ≤ rtol · max |expected|, elementwise."""
  expected = np.asarray(expected)
  assert np.asarray(actual).shape == expected.shape
  scale = float(np.abs(expected).max())
  assert scale > 0, 'an all-zero reference would make the comparison vacuous'
  np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


def assert_matches_in_value_and_gradients(fn, reference, args, dy):
  """fn(*args) equals reference(*args), and so does each of its gradients (the VJPs of dy); returns
  fn's value. Both jitted together, as the models run them."""
  @jax.jit
  def values_and_grads(args, dy):
    y, vjp = jax.vjp(fn, *args)
    y_ref, vjp_ref = jax.vjp(reference, *args)
    return y, y_ref, vjp(dy), vjp_ref(dy)

  y, y_ref, grads, grads_ref = values_and_grads(args, dy)
  assert_close(y, y_ref)
  for grad, grad_ref in zip(grads, grads_ref):
    assert_close(grad, grad_ref)
  return y


def lax_conv4x4(x, kernel, stride):
  """The plain 4×4 conv with padding 1: PyTorch `Conv2d(k=4, stride, padding=1)`."""
  return lax.conv_general_dilated(x, kernel, (stride, stride), ((1, 1), (1, 1)),
                                  dimension_numbers=_DIMENSION_NUMBERS,
                                  precision=lax.Precision.HIGHEST)


def lax_conv_transpose(x, kernel):
  """The plain transposed conv the docstring of `conv_transpose_4x4_s2` names."""
  return lax.conv_transpose(x, kernel, (2, 2), ((2, 2), (2, 2)),
                            dimension_numbers=_DIMENSION_NUMBERS,
                            precision=lax.Precision.HIGHEST)


def runs_lax_conv(fn, *args) -> bool:
  """Whether the jaxpr of fn(*args), nested jaxprs included, contains a `lax` convolution."""
  return 'conv_general_dilated' in str(jax.make_jaxpr(fn)(*args))


def random_arrays(seed, *shapes):
  # numpy draws: each distinct 4-D jax.random draw compiles for seconds on XLA:CPU (layers.py).
  rng = np.random.default_rng(seed)
  return [rng.standard_normal(shape, dtype=np.float32) for shape in shapes]


@pytest.mark.parametrize('stride, h, w', [
    (2, 4, 4),   # U-Net: the 4×4 level down to 2×2 (matrix-product path)
    (2, 2, 2),   # U-Net: the innermost down conv, 2×2 to 1×1
    (2, 3, 3),   # odd side
    (2, 4, 2),   # non-square
    (2, 5, 5),   # one pixel above the threshold: lax path
    (2, 8, 6),
    (1, 4, 4),   # PatchGAN's stride-1 convs on small inputs must stay on lax
    (1, 3, 2),
])
def test_conv4x4_equals_lax_conv_in_value_and_gradients(stride, h, w):
  """`layers.conv4x4` (nn.Conv with the small-input dispatch) vs `lax.conv_general_dilated` + autodiff."""
  fast = stride == 2 and max(h, w) <= 4
  x, kernel, bias = random_arrays(10 * h + w, (2, h, w, 16), (4, 4, 16, 8), (8,))
  out_h, out_w = (h + 2 - 4) // stride + 1, (w + 2 - 4) // stride + 1
  (dy,) = random_arrays(1, (2, out_h, out_w, 8))
  layer = layers.conv4x4(8, strides=stride, use_bias=True)

  def apply(x, kernel, bias):
    return layer.apply({'params': {'kernel': kernel, 'bias': bias}}, x)

  def reference(x, kernel, bias):
    return lax_conv4x4(x, kernel, stride) + bias

  y = assert_matches_in_value_and_gradients(apply, reference, (x, kernel, bias), dy)
  assert y.shape == (2, out_h, out_w, 8)
  with_grads = lambda x, kernel, bias, dy: jax.vjp(apply, x, kernel, bias)[1](dy)
  assert runs_lax_conv(with_grads, x, kernel, bias, dy) == (not fast)


@pytest.mark.parametrize('h, w', [(1, 4), (4, 1), (1, 1)])
def test_conv4x4_stride2_on_a_one_pixel_side_is_empty_as_in_lax(h, w):
  """A 1-pixel side has no stride-2 output row: shape and (zero) gradients as `lax.conv_general_dilated`."""
  x, kernel = random_arrays(0, (2, h, w, 3), (4, 4, 3, 5))
  layer = layers.conv4x4(5, strides=2, use_bias=False)
  apply = lambda x, kernel: layer.apply({'params': {'kernel': kernel}}, x)
  expected_shape = lax_conv4x4(x, kernel, 2).shape
  assert jax.eval_shape(apply, x, kernel).shape == expected_shape == (2, h // 2, w // 2, 5)
  dx, d_kernel = jax.jit(jax.grad(lambda x, kernel: jnp.sum(apply(x, kernel)), (0, 1)))(x, kernel)
  np.testing.assert_array_equal(dx, np.zeros_like(x))
  np.testing.assert_array_equal(d_kernel, np.zeros_like(kernel))


@pytest.mark.parametrize('h, w', [
    (1, 1),   # U-Net: the innermost up step, 1×1 to 2×2 (forward and backward as matrix products)
    (2, 2),   # U-Net: 2×2 to 4×4 (likewise)
    (4, 4),   # U-Net: 4×4 to 8×8 (lax convs of the 8×8 output / cotangent)
    (1, 3),   # odd and non-square
    (4, 1),
    (5, 5),   # above the threshold: lax.conv_transpose forward, custom VJP of strided convs
    (8, 6),
])
def test_conv_transpose_4x4_s2_equals_lax_conv_transpose_in_value_and_gradients(h, w):
  """`conv_transpose_4x4_s2` (custom VJP, small-input paths) vs `lax.conv_transpose` + stock autodiff."""
  x, kernel, dy = random_arrays(10 * h + w, (2, h, w, 16), (4, 4, 16, 8), (2, 2 * h, 2 * w, 8))

  y = assert_matches_in_value_and_gradients(layers.conv_transpose_4x4_s2, lax_conv_transpose, (x, kernel), dy)
  assert y.shape == (2, 2 * h, 2 * w, 8)
  # Forward, dx and d_kernel are all built from the strided conv of a (2h, 2w) array, which is a
  # matrix product iff 2h, 2w <= 4 (for 3-4 px inputs the forward is the transpose of a lax conv).
  assert runs_lax_conv(layers.conv_transpose_4x4_s2, x, kernel) == (max(h, w) > 2)
  with_grads = lambda x, kernel, dy: jax.vjp(layers.conv_transpose_4x4_s2, x, kernel)[1](dy)
  assert runs_lax_conv(with_grads, x, kernel, dy) == (max(h, w) > 2)


def test_conv_transpose_module_equals_lax_conv_transpose_plus_bias():
  """The `ConvTranspose4x4S2` module (with bias, 1×1 input) vs `lax.conv_transpose` + bias + autodiff."""
  x, kernel, bias, dy = random_arrays(3, (2, 1, 1, 16), (4, 4, 16, 4), (4,), (2, 2, 2, 4))
  layer = layers.ConvTranspose4x4S2(4, use_bias=True)
  apply = lambda x, kernel, bias: layer.apply({'params': {'kernel': kernel, 'bias': bias}}, x)
  reference = lambda x, kernel, bias: lax_conv_transpose(x, kernel) + bias

  assert_matches_in_value_and_gradients(apply, reference, (x, kernel, bias), dy)
