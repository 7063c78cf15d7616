"""Tests for s2k_jax/models/sftmd.py: parameter counts of the PyTorch SFTMD, PyTorch's pixel-shuffle
index formula written out in loops, PyTorch's default init bounds, and a tiny network that conditions on
its code and fits a batch."""
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
  for h, w in [(6, 6), (5, 9)]:
    lr, code = random_inputs(0, 2, h, w)
    out = model.apply(params, lr, code)
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
  # Same image, different codes: different outputs; same code twice: identical outputs.
  assert float(jnp.abs(out[0] - out[1]).mean()) > 1e-4
  same = model.apply(params, lr2, jnp.concatenate([code, code]))
  np.testing.assert_array_equal(same[0], same[1])


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
