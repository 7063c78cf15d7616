"""Tests for s2k_jax/models/sftmd.py: parameter counts of the PyTorch SFTMD, PyTorch's pixel-shuffle
index formula written out in loops, PyTorch's default init bounds, a tiny network that conditions on
its code and fits a batch, and the fast SFT layers and upsampler conv against IKC's plain layers."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from s2k_jax.models import sftmd

# Tiny variant: same layer graph, seconds on CPU.
TINY = dict(features=8, num_blocks=2, code_len=4)


def count_params(tree):
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize('scale, expected', [(2, 4_086_979), (3, 4_271_619), (4, 4_234_691)])
def test_parameter_count_matches_pytorch_sftmd(scale, expected):
  model = sftmd.SFTMD(scale)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 10)))
  assert count_params(shapes) == expected


def torch_pixel_shuffle_nchw(x, r):
  """PyTorch's definition, element by element: out[b, c, h·r + i, w·r + j] = in[b, c·r² + i·r + j, h, w]."""
  b, channels, h, w = x.shape
  c_out = channels // (r * r)
  out = np.zeros((b, c_out, h * r, w * r), x.dtype)
  for n in range(b):
    for c in range(c_out):
      for y in range(h):
        for x_ in range(w):
          for i in range(r):
            for j in range(r):
              out[n, c, y * r + i, x_ * r + j] = x[n, c * r * r + i * r + j, y, x_]
  return out


@pytest.mark.parametrize('r', [2, 3])
def test_pixel_shuffle_uses_pytorch_channel_order(r):
  nchw = np.arange(2 * 2 * r * r * 3 * 4, dtype=np.float32).reshape(2, 2 * r * r, 3, 4)
  expected = torch_pixel_shuffle_nchw(nchw, r).transpose(0, 2, 3, 1)
  out = sftmd.pixel_shuffle(jnp.asarray(nchw.transpose(0, 2, 3, 1)), r)
  assert out.shape == (2, 3 * r, 4 * r, 2)
  np.testing.assert_array_equal(out, expected)


def test_pixel_shuffle_rejects_indivisible_channels():
  with pytest.raises(ValueError, match='divisible'):
    sftmd.pixel_shuffle(jnp.zeros((1, 2, 2, 6)), 2)


@functools.lru_cache(maxsize=None)
def tiny_model_and_params(scale):
  model = sftmd.SFTMD(scale, **TINY)
  params = jax.jit(model.init)(jax.random.key(scale), jnp.zeros((1, 6, 6, 3)), jnp.zeros((1, 4)))
  return model, params


def random_inputs(seed, batch, h, w, code_len=4):
  lr_key, code_key = jax.random.split(jax.random.key(seed))
  return (jax.random.uniform(lr_key, (batch, h, w, 3)),
          jax.random.normal(code_key, (batch, code_len)))


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_output_shape_and_range_at_any_lr_size(scale):
  model, params = tiny_model_and_params(scale)
  apply = jax.jit(model.apply)  # One program per size; op by op, each op of each size compiles alone.
  for h, w in [(6, 6), (5, 9)]:
    lr, code = random_inputs(0, 2, h, w)
    out = apply(params, lr, code)
    assert out.shape == (2, h * scale, w * scale, 3) and out.dtype == jnp.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_init_is_pytorch_default_uniform():
  # PyTorch Conv2d: weight and bias ~ U(±1/√fan_in), fan_in = in·kh·kw.
  _, params = tiny_model_and_params(4)
  p = params['params']
  for layer, fan_in in [(p['head_conv0'], 3 * 9), (p['block0']['sft1']['mul_conv0'], (8 + 4) * 9),
                        (p['out_conv'], 8 * 81)]:
    bound = 1 / math.sqrt(fan_in)
    for leaf in (layer['kernel'], layer['bias']):
      assert float(jnp.abs(leaf).max()) <= bound
    kernel = np.asarray(layer['kernel'])
    # Uniform on ±bound has standard deviation bound/√3.
    assert abs(kernel.std() / (bound / math.sqrt(3)) - 1) < 0.25
    assert float(np.abs(kernel).max()) > 0.8 * bound


def test_code_conditions_the_output():
  model, params = tiny_model_and_params(2)
  lr, code = random_inputs(1, 1, 8, 8)
  lr2 = jnp.concatenate([lr, lr])
  out = model.apply(params, lr2, jnp.concatenate([code, -code]))
  # Same image, different codes: different outputs; same code twice: the same outputs up to float32
  # rounding (XLA:CPU may vectorise two batch positions differently: up to 1.1e-8 seen on an AVX2 CPU,
  # bit-equal on an AVX-512 one), 10⁴ times below the difference the codes make.
  assert float(jnp.abs(out[0] - out[1]).mean()) > 1e-4
  same = model.apply(params, lr2, jnp.concatenate([code, code]))
  np.testing.assert_allclose(same[0], same[1], rtol=0, atol=1e-7)


def test_tiny_model_fits_a_fixed_batch():
  model, params = tiny_model_and_params(2)
  lr, code = random_inputs(2, 2, 8, 8)
  hr = jax.random.uniform(jax.random.key(3), (2, 16, 16, 3), minval=0.2, maxval=0.8)
  optimizer = optax.adam(1e-3)

  def loss_fn(p):
    return jnp.mean(jnp.abs(model.apply(p, lr, code) - hr))

  @jax.jit
  def step(p, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, opt_state = optimizer.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  p, opt_state = params, optimizer.init(params)
  losses = []
  for _ in range(30):
    p, opt_state, loss = step(p, opt_state)
    losses.append(float(loss))
  # At init the outputs sit near 0 (|out| ≲ 0.05) against targets around 0.5.
  assert losses[0] > 0.4
  assert losses[-1] < 0.5 * losses[0]


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match='scales'):
    sftmd.SFTMD(5)
  with pytest.raises(ValueError, match='scales'):
    sftmd.make_sftmd(1)
  model, params = tiny_model_and_params(2)
  lr, code = random_inputs(0, 2, 6, 6)
  with pytest.raises(ValueError, match='code_len'):
    model.apply(params, lr, jnp.zeros((2, 5)))
  with pytest.raises(ValueError, match=r'\(B, h, w, 3\)'):
    model.apply(params, lr[..., :1], code)


# The fast SFT formulation vs the plain one. `SFTLayer` never builds concat(x, code_map): it splits the
# first conv as conv(x, W_x) + conv(code_map, W_c), computes the second term of the constant map from
# the 9 products code·W_c[i, j] (`constant_map_conv3x3`) and runs the mul and add branches' first convs
# as one; the upsampler convs carry a custom VJP (`conv_same_im2col_grad`). The module docstrings and
# docs/conventions.md claim outputs and gradients equal to the plain layers within 2e-6 relative. The
# references below are IKC's layers written out with `lax.conv_general_dilated` at Precision.HIGHEST
# and the concatenated, broadcast code map, differentiated by stock autodiff.
#
# Tolerances, per array, as a fraction of the reference's largest magnitude. Values: 2.5e-6, the
# claimed 2e-6 plus a float32 margin (measured <= 6.2e-7 over 3 seeds of every case below). Gradients:
# 3e-6. A parameter gradient sums the B·h·w positions of every conv it feeds, in another order on each
# path, so the two float32 results differ by ~u·√N (u = 6e-8, N ~ 10³: ~2e-6) of the sum of the terms'
# magnitudes, not of the result; where the terms cancel (the sigmoid branch's biases) that is a larger
# fraction of the result. With unit-variance parameters (`random_params`) the worst measured is 1.0e-6;
# with weights 3-8x larger (activations ~10³, saturated sigmoids) it reached 8e-6, so the claim holds for
# well-scaled networks only, which is what these tests pin.
# Values are compared at every pixel, so every border and corner pattern of the code map is checked;
# 1×1 and 1×n images put every pixel on two or more borders.
VALUE_RTOL = 2.5e-6
GRAD_RTOL = 3e-6
_DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')


def assert_close(actual, expected, rtol):
  """max |actual − expected| ≤ rtol · max |expected|, elementwise."""
  expected = np.asarray(expected)
  assert np.asarray(actual).shape == expected.shape
  scale = float(np.abs(expected).max())
  assert scale > 0, 'an all-zero reference would make the comparison vacuous'
  np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


def assert_trees_close(actual, expected, rtol):
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    assert_close(a, e, rtol)


def random_arrays(seed, *shapes, scale=1.0):
  # numpy draws: each distinct 4-D jax.random draw compiles for seconds on XLA:CPU.
  rng = np.random.default_rng(seed)
  return [scale * rng.standard_normal(shape, dtype=np.float32) for shape in shapes]


def random_params(seed, model, *args):
  """Parameters of model's shapes, drawn here rather than by the model's initialiser.

  Kernel and bias of each conv ~ U(±√(3 / fan_in)), unit variance per input: activations stay O(1)
  through the network and the sigmoids of the SFT layers stay off saturation.
  """
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, jax.random.key(0), *args)['params']

  def draw(layer):
    bound = math.sqrt(3 / math.prod(layer['kernel'].shape[:-1]))
    return {name: rng.uniform(-bound, bound, s.shape).astype(np.float32) for name, s in layer.items()}

  is_layer = lambda node: isinstance(node, dict) and 'kernel' in node
  return jax.tree.map(draw, shapes, is_leaf=is_layer)


def plain_conv(x, kernel, bias=None):
  """PyTorch Conv2d(k, stride 1, padding k // 2) on NHWC: 'SAME' zero padding for odd k."""
  y = jax.lax.conv_general_dilated(x, kernel, (1, 1), 'SAME', dimension_numbers=_DIMENSION_NUMBERS,
                                   precision=jax.lax.Precision.HIGHEST)
  return y if bias is None else y + bias


def plain_layer(x, params):
  return plain_conv(x, params['kernel'], params['bias'])


def leaky_relu(x):
  return jnp.where(x >= 0, x, 0.2 * x)


def code_map(code, h, w):
  """IKC's stretched code: code[b] at every pixel of an (h, w) map."""
  return jnp.broadcast_to(code[:, None, None, :], (code.shape[0], h, w, code.shape[1]))


def plain_sft(params, x, code):
  """IKC's SFT layer: h = cat([x, code_map]); x · sigmoid(mul(h)) + add(h), branch = conv, LReLU, conv."""
  h = jnp.concatenate([x, code_map(code, *x.shape[1:3])], axis=-1)
  branch = lambda name: plain_layer(leaky_relu(plain_layer(h, params[f'{name}_conv0'])),
                                    params[f'{name}_conv1'])
  return x * jax.nn.sigmoid(branch('mul')) + branch('add')


def plain_pixel_shuffle(x, r):
  """PyTorch's index formula as strided writes: out[:, i::r, j::r, c] = in[..., c·r² + i·r + j]."""
  b, h, w, channels = x.shape
  out = jnp.zeros((b, h * r, w * r, channels // (r * r)), x.dtype)
  for i in range(r):
    for j in range(r):
      out = out.at[:, i::r, j::r].set(x[..., i * r + j::r * r])
  return out


def plain_sftmd(params, lr, code, scale, num_blocks):
  """IKC's SFTMD forward (unclipped), layer for layer, from the plain layers above."""
  f = plain_layer(lr, params['head_conv0'])
  f = plain_layer(leaky_relu(f), params['head_conv1'])
  f0 = plain_layer(leaky_relu(f), params['head_conv2'])
  f = f0
  for i in range(num_blocks):
    block = params[f'block{i}']
    h = plain_layer(jax.nn.relu(plain_sft(block['sft1'], f, code)), block['conv1'])
    f = f + plain_layer(jax.nn.relu(plain_sft(block['sft2'], h, code)), block['conv2'])
  f = plain_layer(plain_sft(params['sft'], f + f0, code), params['conv'])
  for i, r in enumerate((2, 2) if scale == 4 else (scale,)):
    f = leaky_relu(plain_pixel_shuffle(plain_layer(f, params[f'up{i}_conv']), r))
  return plain_layer(f, params['out_conv'])


def values_and_vjps(fast, plain, args, cotangent):
  """(fast(*args), plain(*args), fast's VJP of cotangent, plain's), under one jit."""

  @jax.jit
  def run(args, cotangent):
    y, vjp = jax.vjp(fast, *args)
    y_plain, vjp_plain = jax.vjp(plain, *args)
    return y, y_plain, vjp(cotangent), vjp_plain(cotangent)

  return run(args, cotangent)


@pytest.mark.parametrize('h, w', [(1, 1), (1, 4), (3, 1), (2, 3), (7, 9)])
def test_constant_map_conv3x3_equals_conv_of_the_broadcast_map(h, w):
  """`constant_map_conv3x3` vs lax conv3×3 'SAME' of the broadcast code map; grads by stock autodiff."""
  code, kernel, dy = random_arrays(10 * h + w, (2, 5), (3, 3, 5, 6), (2, h, w, 6))
  fast = lambda code, kernel: sftmd.constant_map_conv3x3(code, kernel, h, w)
  plain = lambda code, kernel: plain_conv(code_map(code, h, w), kernel)
  y, y_plain, grads, grads_plain = values_and_vjps(fast, plain, (code, kernel), dy)
  assert_close(y, y_plain, VALUE_RTOL)
  assert_trees_close(grads, grads_plain, GRAD_RTOL)


@pytest.mark.parametrize('kernel_size, h, w, out_features', [
    (3, 7, 9, 32),   # the ×2 / ×4 upsampler conv nf → 4·nf at nf = 8
    (3, 5, 5, 72),   # the ×3 upsampler conv nf → 9·nf
    (3, 1, 1, 32),   # every window hanging over all four borders
    (5, 4, 6, 8),    # the custom VJP takes any odd kernel
    (1, 3, 2, 8),
])
def test_conv_same_im2col_grad_equals_stock_autodiff(kernel_size, h, w, out_features):
  """`conv_same_im2col_grad` vs lax conv 'SAME' (zero padding) and its stock-autodiff gradients."""
  x, kernel, dy = random_arrays(h * w + kernel_size, (2, h, w, 8),
                                (kernel_size, kernel_size, 8, out_features), (2, h, w, out_features))
  y, y_plain, grads, grads_plain = values_and_vjps(sftmd.conv_same_im2col_grad, plain_conv,
                                                   (x, kernel), dy)
  assert_close(y, y_plain, VALUE_RTOL)
  assert_trees_close(grads, grads_plain, GRAD_RTOL)


@pytest.mark.parametrize('h, w, code_len', [(1, 5, 4), (7, 9, 11)])
def test_sft_layer_equals_conv_of_concatenated_code_map(h, w, code_len):
  """`SFTLayer` (no concat, fused first convs) vs IKC's SFT on cat([x, code_map]) with lax convs.

  Gradients w.r.t. the features, the code and every parameter, by stock autodiff of the plain layer.
  """
  x, code, dy = random_arrays(10 * h + w, (2, h, w, 8), (2, code_len), (2, h, w, 8))
  layer = sftmd.SFTLayer()
  params = random_params(h + w, layer, x, code)
  fast = lambda params, x, code: layer.apply({'params': params}, x, code)
  y, y_plain, grads, grads_plain = values_and_vjps(fast, plain_sft, (params, x, code), dy)
  assert_close(y, y_plain, VALUE_RTOL)
  assert_trees_close(grads, grads_plain, GRAD_RTOL)


@pytest.mark.parametrize('scale, h, w, num_blocks', [
    (2, 7, 9, 1),
    (3, 5, 5, 0),
    (4, 3, 5, 0),
])
def test_sftmd_equals_plain_network_in_value_and_gradients(scale, h, w, num_blocks):
  """SFTMD (fast SFT layers, im2col-gradient upsampler) vs IKC's network written with plain layers.

  The reference (`plain_sftmd`) concatenates the broadcast code map, runs lax convs and an
  index-formula pixel shuffle; gradients w.r.t. the LR image, the code and every parameter by stock
  autodiff. num_blocks 0 keeps the compile short and still runs the final SFT layer.
  """
  model = sftmd.SFTMD(scale, features=8, num_blocks=num_blocks, code_len=4)
  lr, code, dy = random_arrays(scale + h, (2, h, w, 3), (2, 4), (2, h * scale, w * scale, 3))
  params = random_params(scale, model, lr, code)
  fast = lambda params, lr, code: model.apply({'params': params}, lr, code, clip=False)
  plain = lambda params, lr, code: plain_sftmd(params, lr, code, scale, num_blocks)
  y, y_plain, grads, grads_plain = values_and_vjps(fast, plain, (params, lr, code), dy)
  assert y.shape == (2, h * scale, w * scale, 3)
  assert_close(y, y_plain, VALUE_RTOL)
  assert_trees_close(grads, grads_plain, GRAD_RTOL)
