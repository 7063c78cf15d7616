"""Tests for s2k_jax.models: the pix2pix U-Net / E-D generators and the PatchGAN (paper §3.3, Fig. 7)."""
import functools

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from s2k_jax.models import layers
from s2k_jax.models import make_generator
from s2k_jax.models import PatchDiscriminator
from s2k_jax.models import UNet


def _abstract_variables(model, *shapes):
  return jax.eval_shape(lambda: model.init(
      jax.random.key(0), *[jnp.zeros(s) for s in shapes], train=False))


def _count(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _torch_conv_transpose(x, weight, bias=None):
  """PyTorch ConvTranspose2d(k=4, s=2, p=1) by its definition: scatter-add, then crop p."""
  b, h, w, _ = x.shape
  out = np.zeros((b, 2 * h + 2, 2 * w + 2, weight.shape[1]))
  for i in range(4):
    for j in range(4):
      out[:, i:i + 2 * h:2, j:j + 2 * w:2] += np.einsum('bhwc,cd->bhwd', x, weight[:, :, i, j])
  out = out[:, 1:-1, 1:-1]
  return out if bias is None else out + bias


# Published parameter counts (pix2pix unet_256 / basic PatchGAN, BatchNorm).
@pytest.mark.parametrize('channels, expected', [(1, 54_407_809), (3, 54_413_955)])
def test_unet_8_64_parameter_count(channels, expected):
  model = make_generator('unet-8-64', out_channels=channels)
  variables = _abstract_variables(model, (1, 256, 256, channels))
  assert _count(variables['params']) == expected


def test_patch_discriminator_parameter_count():
  variables = _abstract_variables(PatchDiscriminator(), (1, 256, 256, 1), (1, 256, 256, 1))
  assert _count(variables['params']) == 2_764_609


@pytest.mark.parametrize('downs, features', [(8, 64), (5, 32)])
def test_removing_skips_drops_the_doubled_decoder_inputs(downs, features):
  # Each up conv except the innermost reads [skip, up] = twice its encoder width;
  # without skips it reads that width once. Difference: sum of 4*4*width*out.
  widths = [features * min(2**i, 8) for i in range(downs)]
  outs = [1] + widths[:-1]
  expected = sum(16 * widths[j] * outs[j] for j in range(downs - 1))
  shape = (1, 2**downs, 2**downs, 1)
  unet = _count(_abstract_variables(make_generator(f'unet-{downs}-{features}'), shape)['params'])
  ed = _count(_abstract_variables(make_generator(f'ed-{downs}-{features}'), shape)['params'])
  assert unet - ed == expected


def test_unet_8_64_shapes_and_pix2pix_dropout_placement():
  model = make_generator('unet-8-64')
  x = jnp.zeros((2, 256, 256, 1))
  out = jax.eval_shape(lambda: model.init_with_output(
      {'params': jax.random.key(0), 'dropout': jax.random.key(1)}, x, train=True,
      capture_intermediates=lambda module, _: isinstance(module, nn.Dropout)))
  y, variables = out
  assert y.shape == (2, 256, 256, 1) and y.dtype == jnp.float32
  # 13 BatchNorms: 6 in the encoder (not outermost/innermost), 7 in the decoder.
  assert len(variables['batch_stats']) == 13
  # pix2pix unet_256 has dropout in the 3 ngf*8 blocks around the innermost one,
  # whose up convs output 512 channels at 4x4, 8x8 and 16x16.
  dropped = sorted(v['__call__'][0].shape
                   for v in variables['intermediates'].values())
  assert dropped == [(2, 4, 4, 512), (2, 8, 8, 512), (2, 16, 16, 512)]


# widths 4, 8, 8, 8, 8: blocks 2 and 3 are capped, so they carry dropout.
_TINY = UNet(num_downs=5, features=4, max_mult=2)
_TINY_INPUT = 2.0 + jax.random.normal(jax.random.key(0), (4, 32, 32, 1))


@functools.partial(jax.jit, static_argnums=(0, 2))
def _tiny_train_step_outputs(model, variables, train, seed):
  return model.apply(variables, _TINY_INPUT, train=train, mutable=['batch_stats'],
                     rngs={'dropout': jax.random.key(seed)})


@pytest.fixture(scope='module')
def tiny_variables():
  return jax.jit(functools.partial(_TINY.init, train=False))(jax.random.key(1), _TINY_INPUT)


@pytest.fixture(scope='module')
def unet_5_32_variables():
  model = make_generator('unet-5-32')
  return jax.jit(functools.partial(model.init, train=False))(
      jax.random.key(1), jnp.zeros((1, 32, 32, 1)))


@pytest.mark.parametrize('name', ['unet-5-32', 'ed-5-32'])
def test_tiny_generators_forward(name, unet_5_32_variables):
  model = make_generator(name)
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 1)) * 3.0
  if name == 'unet-5-32':
    variables = unet_5_32_variables
  else:
    variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(1), x)
  y = jax.jit(functools.partial(model.apply, train=False))(variables, x)
  assert y.shape == (2, 32, 32, 1)
  assert np.all(np.isfinite(y)) and np.all(np.abs(y) <= 1.0)
  assert float(jnp.std(y)) > 0.0


def test_dropout_is_sampled_in_training_only(tiny_variables):
  run = lambda model, train, seed: _tiny_train_step_outputs(model, tiny_variables, train, seed)[0]
  assert not np.allclose(run(_TINY, True, 0), run(_TINY, True, 1))
  np.testing.assert_array_equal(run(_TINY, True, 0), run(_TINY, True, 0))
  np.testing.assert_array_equal(run(_TINY, False, 0), run(_TINY, False, 1))
  no_dropout = UNet(num_downs=5, features=4, max_mult=2, dropout_rate=0.0)
  np.testing.assert_array_equal(run(no_dropout, True, 0), run(no_dropout, True, 1))


def test_batch_stats_update_in_train_mode_only(tiny_variables):
  _, train_update = _tiny_train_step_outputs(_TINY, tiny_variables, True, 0)
  _, eval_update = _tiny_train_step_outputs(_TINY, tiny_variables, False, 0)
  changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.all(a != b)),
                                         tiny_variables['batch_stats'],
                                         train_update['batch_stats']))
  assert len(changed) == 7 * 2 and all(changed)
  jax.tree.map(np.testing.assert_array_equal, tiny_variables['batch_stats'],
               eval_update['batch_stats'])


def test_batch_norm_matches_pytorch_semantics():
  # A large mean, as in log-amplitude spectra: E[x²] - E[x]² would lose the variance.
  x = 1000.0 + 2.0 * jax.random.normal(jax.random.key(0), (8, 5, 5, 6))
  xn = np.asarray(x, np.float64)
  bn_train, bn_eval = layers.batch_norm(train=True), layers.batch_norm(train=False)
  variables = bn_train.init(jax.random.key(1), x)
  scale = np.asarray(variables['params']['scale'])
  y, update = bn_train.apply(variables, x, mutable=['batch_stats'])
  mean, var = xn.mean((0, 1, 2)), xn.var((0, 1, 2))
  np.testing.assert_allclose(y, (xn - mean) / np.sqrt(var + 1e-5) * scale, atol=1e-3)
  # PyTorch momentum 0.1: running = 0.9 * running + 0.1 * batch (starting at 0 and 1).
  np.testing.assert_allclose(update['batch_stats']['mean'], 0.1 * mean, rtol=1e-5)
  np.testing.assert_allclose(update['batch_stats']['var'], 0.9 + 0.1 * var, rtol=1e-4)
  new = {'params': variables['params'], 'batch_stats': update['batch_stats']}
  expected = (xn - 0.1 * mean) / np.sqrt(0.9 + 0.1 * var + 1e-5) * scale
  np.testing.assert_allclose(bn_eval.apply(new, x), expected, atol=1e-3)


def test_pix2pix_normal_initialisation(unet_5_32_variables):
  params = unet_5_32_variables['params']
  kernels = np.concatenate([np.ravel(p['kernel']) for p in params.values() if 'kernel' in p])
  scales = np.concatenate([np.ravel(p['scale']) for p in params.values() if 'scale' in p])
  biases = np.concatenate([np.ravel(p['bias']) for p in params.values() if 'bias' in p])
  assert kernels.size > 4_000_000
  assert abs(kernels.std() - 0.02) < 0.0005 and abs(kernels.mean()) < 0.0005
  assert abs(scales.mean() - 1.0) < 0.005 and abs(scales.std() - 0.02) < 0.005
  np.testing.assert_array_equal(biases, 0.0)
  # The flat draw behind conv_init is the same stream as flax's normal(0.02).
  key, shape = jax.random.key(7), (4, 4, 3, 5)
  np.testing.assert_array_equal(layers.conv_init(key, shape),
                                nn.initializers.normal(0.02)(key, shape))


def test_patch_discriminator_output_and_70x70_receptive_field():
  model = PatchDiscriminator()
  out = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), jnp.zeros((2, 256, 256, 1)), jnp.zeros((2, 256, 256, 1)),
      train=False)[0])
  assert out.shape == (2, 30, 30, 1)

  # Output (7, 7) of a 128x128 input (14x14 scores) sees input rows 33..102.
  small = PatchDiscriminator(features=4)
  spectrum = jax.random.normal(jax.random.key(1), (1, 128, 128, 1))
  kernel_map = jax.random.normal(jax.random.key(2), (1, 128, 128, 1))
  variables = small.init(jax.random.key(3), spectrum, kernel_map, train=False)
  centre_logit = lambda s: small.apply(variables, s, kernel_map, train=False)[0, 7, 7, 0]
  support = np.nonzero(np.asarray(jax.jit(jax.grad(centre_logit))(spectrum))[0, :, :, 0])
  assert support[0].max() - support[0].min() + 1 == 70
  assert support[1].max() - support[1].min() + 1 == 70


@pytest.mark.parametrize('c_in, c_out, use_bias', [
    (1, 1, True), (3, 5, False), (16, 8, True), (8, 1, False)])
def test_fast_conv_transpose_equals_stock_layer(c_in, c_out, use_bias):
  x = jax.random.normal(jax.random.key(0), (2, 5, 7, c_in))
  cotangent = jax.random.normal(jax.random.key(1), (2, 10, 14, c_out))
  fast = layers.ConvTranspose4x4S2(c_out, use_bias=use_bias)
  stock = nn.ConvTranspose(c_out, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)),
                           use_bias=use_bias)
  params = fast.init(jax.random.key(2), x)
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(3), p.shape),
                        params)

  @jax.jit
  def value_and_grads(params, x):
    y_fast, vjp_fast = jax.vjp(fast.apply, params, x)
    y_stock, vjp_stock = jax.vjp(stock.apply, params, x)
    return y_fast, y_stock, vjp_fast(cotangent), vjp_stock(cotangent)

  y_fast, y_stock, grads_fast, grads_stock = value_and_grads(params, x)
  assert y_fast.shape == (2, 10, 14, c_out)
  np.testing.assert_allclose(y_fast, y_stock, atol=1e-5)
  assert len(jax.tree.leaves(grads_fast)) == (3 if use_bias else 2)
  for g_fast, g_stock in zip(jax.tree.leaves(grads_fast), jax.tree.leaves(grads_stock)):
    np.testing.assert_allclose(g_fast, g_stock, atol=1e-5, rtol=1e-5)


def test_fast_conv_transpose_matches_lax_and_pytorch_definition():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 3, 4, 3)).astype(np.float32)
  torch_weight = rng.normal(size=(3, 5, 4, 4)).astype(np.float32)
  torch_bias = rng.normal(size=(5,)).astype(np.float32)
  kernel = layers.kernel_from_torch_conv_transpose(jnp.asarray(torch_weight))
  params = {'params': {'kernel': kernel, 'bias': jnp.asarray(torch_bias)}}
  y = layers.ConvTranspose4x4S2(5, use_bias=True).apply(params, x)
  np.testing.assert_allclose(y, _torch_conv_transpose(x, torch_weight, torch_bias), atol=1e-5)
  y_lax = lax.conv_transpose(x, kernel, (2, 2), ((2, 2), (2, 2)),
                             dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  np.testing.assert_allclose(layers.conv_transpose_4x4_s2(x, kernel), y_lax, atol=1e-5)
  # Gradients of <dy, y> by the same definition: output (2h - 1 + i, 2w - 1 + j)
  # received x[h, w] * weight[:, :, i, j], so both read dy there.
  dy = rng.normal(size=(2, 6, 8, 5)).astype(np.float32)
  dx, dkernel = jax.grad(lambda x, k: jnp.sum(layers.conv_transpose_4x4_s2(x, k) * dy),
                         (0, 1))(x, kernel)
  padded = np.pad(dy, ((0, 0), (1, 1), (1, 1), (0, 0)))
  expected_dx = np.zeros_like(x)
  expected_dweight = np.zeros_like(torch_weight)
  for i in range(4):
    for j in range(4):
      window = padded[:, i:i + 6:2, j:j + 8:2]
      expected_dx += np.einsum('bhwd,cd->bhwc', window, torch_weight[:, :, i, j])
      expected_dweight[:, :, i, j] = np.einsum('bhwc,bhwd->cd', x, window)
  np.testing.assert_allclose(dx, expected_dx, atol=1e-5)
  np.testing.assert_allclose(
      dkernel, layers.kernel_from_torch_conv_transpose(jnp.asarray(expected_dweight)), atol=1e-4)


def test_generator_names_and_bad_inputs():
  assert make_generator('unet-8-64') == UNet(num_downs=8, features=64, skip=True)
  assert make_generator('ED-5-32', out_channels=3) == UNet(5, 32, skip=False, out_channels=3)
  for bad in ('unet8-64', 'resnet-9-64', 'unet-8'):
    with pytest.raises(ValueError, match='unet-8-64'):
      make_generator(bad)
  model = make_generator('unet-5-32')
  with pytest.raises(ValueError, match='divisible by 32'):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 48, 48, 1)), train=False))
  with pytest.raises(ValueError, match='NHWC'):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((32, 32, 1)), train=False))
  with pytest.raises(ValueError, match='same'):
    jax.eval_shape(lambda: PatchDiscriminator().init(
        jax.random.key(0), jnp.zeros((1, 64, 64, 1)), jnp.zeros((1, 32, 32, 1)), train=False))
