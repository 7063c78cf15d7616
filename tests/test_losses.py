"""Tests for s2k_jax/losses.py against hand-computed values (paper Eq. 11–12)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2k_jax import kernels
from s2k_jax import losses
from s2k_jax import spectrum


def test_total_variation_hand_computed():
  x = jnp.array([[0., 1.], [2., 4.]])[None, :, :, None]
  # Vertical diffs |2-0|, |4-1| → mean 2.5; horizontal |1-0|, |4-2| → mean 1.5.
  np.testing.assert_allclose(losses.total_variation(x), 4.0, rtol=1e-6)


def test_total_variation_constant_is_zero():
  assert float(losses.total_variation(jnp.full((2, 5, 5, 1), 0.3))) == 0.0


def test_lsgan_losses():
  ones, zeros = jnp.ones((2, 3, 3, 1)), jnp.zeros((2, 3, 3, 1))
  assert float(losses.lsgan_discriminator_loss(real_logits=ones, fake_logits=zeros)) == 0.0
  assert float(losses.lsgan_discriminator_loss(real_logits=zeros, fake_logits=ones)) == 2.0
  assert float(losses.lsgan_generator_loss(ones)) == 0.0
  np.testing.assert_allclose(losses.lsgan_generator_loss(jnp.full((1, 2, 2, 1), 0.5)), 0.25)


def test_l1_and_flip_invariance():
  rng = np.random.default_rng(0)
  target = jnp.asarray(rng.uniform(-1, 1, (3, 8, 8, 1)), jnp.float32)
  pred = jnp.asarray(rng.uniform(-1, 1, (3, 8, 8, 1)), jnp.float32)
  np.testing.assert_allclose(losses.l1_map_loss(pred, target), np.mean(np.abs(pred - target)), rtol=1e-6)
  flipped = jnp.flip(target, axis=(1, 2))
  assert float(losses.l1_map_loss(flipped, target, flip_invariant=True)) == 0.0
  assert float(losses.l1_map_loss(flipped, target)) > 0.1
  # Per-sample minimum: only the first sample is flipped.
  mixed = pred.at[0].set(flipped[0])
  per = np.minimum(np.mean(np.abs(pred - target), axis=(1, 2, 3)),
                   np.mean(np.abs(pred - flipped), axis=(1, 2, 3)))
  np.testing.assert_allclose(losses.l1_map_loss(mixed, target, flip_invariant=True),
                             (0.0 + per[1] + per[2]) / 3, rtol=1e-6)  # measured 6e-8


@pytest.mark.parametrize('size', [32, 64])
def test_map_flip_is_kernel_rotation(size):
  """The flip in l1_map_loss is the 180° rotation of the kernel under the kernel-map convention."""
  k = kernels.motion_kernel(jax.random.key(3), size=23)
  np.testing.assert_allclose(jnp.flip(spectrum.kernel_to_map(k, size), axis=(-3, -2)),
                             spectrum.kernel_to_map(jnp.flip(k, axis=(-2, -1)), size), atol=1e-6)


def test_generator_loss_weights():
  pred = jnp.zeros((1, 4, 4, 1)).at[0, 1, 1, 0].set(1.0)
  target = jnp.zeros((1, 4, 4, 1))
  logits = jnp.full((1, 2, 2, 1), 0.5)
  total, terms = losses.generator_loss(pred, target, logits, (100.0, 1.0, 1.0))
  np.testing.assert_allclose(terms['l1'], 1 / 16, rtol=1e-6)
  np.testing.assert_allclose(terms['adv'], 0.25, rtol=1e-6)
  np.testing.assert_allclose(terms['tv'], 2 / 12 + 2 / 12, rtol=1e-6)
  np.testing.assert_allclose(total, 100 / 16 + 0.25 + 4 / 12, rtol=1e-6)
  total0, _ = losses.generator_loss(pred, target, logits, (0.0, 0.0, 1.0))
  np.testing.assert_allclose(total0, 4 / 12, rtol=1e-6)


def _pinball(pred, target, tau):
  """Twice the mean pinball loss, written from its definition (float64)."""
  r = np.asarray(target, np.float64) - np.asarray(pred, np.float64)
  return 2 * np.mean(np.where(r >= 0, tau * r, (tau - 1) * r), axis=(1, 2, 3))


@pytest.mark.parametrize('tau', [0.5, 0.3, 0.8])
def test_quantile_map_loss_is_the_pinball_loss_with_its_flip(tau):
  rng = np.random.default_rng(1)
  target = rng.uniform(-1, 1, (3, 8, 8, 1)).astype(np.float32)
  pred = rng.uniform(-1, 1, (3, 8, 8, 1)).astype(np.float32)
  pred[0] = np.flip(target[0], axis=(0, 1)) + 0.05 * rng.standard_normal((8, 8, 1)).astype(np.float32)
  np.testing.assert_allclose(losses.quantile_map_loss(pred, target, tau), np.mean(_pinball(pred, target, tau)),
                             rtol=1e-6)
  flip = np.flip(target, axis=(1, 2))
  want = np.mean(np.minimum(_pinball(pred, target, tau), _pinball(pred, flip, tau)))
  np.testing.assert_allclose(losses.quantile_map_loss(pred, target, tau, flip_invariant=True), want, rtol=1e-6)
  if tau == 0.5:
    np.testing.assert_allclose(losses.quantile_map_loss(pred, target, tau), losses.l1_map_loss(pred, target))


def test_l2_map_loss_is_the_mean_squared_error_with_its_flip():
  rng = np.random.default_rng(3)
  target = rng.uniform(-1, 1, (3, 8, 8, 1))
  pred = rng.uniform(-1, 1, (3, 8, 8, 1))
  pred[0] = np.flip(target[0], axis=(0, 1)) + 0.05 * rng.standard_normal((8, 8, 1))
  mse = lambda a, b: np.mean((a - b) ** 2, axis=(1, 2, 3))  # float64, from the definition
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  np.testing.assert_allclose(losses.l2_map_loss(f32(pred), f32(target)), np.mean(mse(pred, target)), rtol=1e-5)
  want = np.mean(np.minimum(mse(pred, target), mse(pred, np.flip(target, axis=(1, 2)))))
  np.testing.assert_allclose(losses.l2_map_loss(f32(pred), f32(target), flip_invariant=True), want, rtol=1e-5)


def test_l2_map_loss_is_minimised_by_the_mean():
  """Fitted to many targets at once, the best single map is their per-pixel mean (the L1's: the median)."""
  rng = np.random.default_rng(4)
  targets = jnp.asarray(rng.exponential(0.3, (400, 2, 2, 1)) - 1, jnp.float32)  # skewed: mean ≠ median
  grad = jax.jit(jax.grad(lambda p: losses.l2_map_loss(jnp.broadcast_to(p, targets.shape), targets)))
  p = jnp.zeros((1, 2, 2, 1))
  for _ in range(100):  # the gradient is (p − mean) / 2 per pixel: halves the gap each step
    p = p - grad(p)
  np.testing.assert_allclose(p[0], np.mean(np.asarray(targets), axis=0), atol=1e-4)
  assert np.min(np.abs(np.asarray(p[0]) - np.median(np.asarray(targets), axis=0))) > 0.02


def test_generator_loss_with_the_l2_pulls_by_twice_the_residual_and_logs_the_l1():
  pred = jnp.zeros((1, 4, 4, 1)).at[0, 1, 1, 0].set(0.5)
  target = jnp.zeros((1, 4, 4, 1)).at[0, 2, 2, 0].set(1.0)
  logits = jnp.ones((1, 2, 2, 1))
  total, terms = losses.generator_loss(pred, target, logits, (100.0, 0.0, 0.0), kernel_loss='l2')
  np.testing.assert_allclose(terms['l1'], 1.5 / 16, rtol=1e-6)
  np.testing.assert_allclose(total, 100 * 1.25 / 16, rtol=1e-6)
  grad = jax.grad(lambda p: losses.generator_loss(p, target, logits, (100.0, 0.0, 0.0), kernel_loss='l2')[0])(pred)
  np.testing.assert_allclose(grad[0, 1, 1, 0], 100 * 2 * 0.5 / 16, rtol=1e-6)
  np.testing.assert_allclose(grad[0, 2, 2, 0], 100 * 2 * -1.0 / 16, rtol=1e-6)
  np.testing.assert_allclose(grad[0, 0, 0, 0], 0.0)


def test_generator_loss_refuses_an_unknown_kernel_loss_and_a_quantile_of_the_l2():
  pred = target = jnp.zeros((1, 4, 4, 1))
  logits = jnp.ones((1, 2, 2, 1))
  with pytest.raises(ValueError, match="kernel_loss must be one of"):
    losses.generator_loss(pred, target, logits, (100.0, 1.0, 1.0), kernel_loss='huber')
  with pytest.raises(ValueError, match=r'a quantile \(0.3\) has no effect with the squared-error'):
    losses.generator_loss(pred, target, logits, (100.0, 1.0, 1.0), quantile=0.3, kernel_loss='l2')


@pytest.mark.parametrize('tau', [0.2, 0.5, 0.7])
def test_quantile_map_loss_is_minimised_by_the_quantile(tau):
  """Fitted to many targets at once, the best single map is their per-pixel τ-quantile."""
  rng = np.random.default_rng(2)
  targets = jnp.asarray(rng.uniform(-1, 1, (400, 2, 2, 1)), jnp.float32)
  grad = jax.jit(jax.grad(lambda p: losses.quantile_map_loss(jnp.broadcast_to(p, targets.shape), targets, tau)))
  p = jnp.zeros((1, 2, 2, 1))
  for i in range(3000):  # subgradient descent with a decaying step
    p = p - 0.02 / (1 + i / 300) * grad(p) * targets.shape[0]
  np.testing.assert_allclose(p[0], np.quantile(np.asarray(targets), tau, axis=0), atol=0.02)


def test_generator_loss_uses_the_quantile_and_logs_the_l1():
  pred = jnp.zeros((1, 4, 4, 1)).at[0, 1, 1, 0].set(1.0)
  target = jnp.zeros((1, 4, 4, 1))
  logits = jnp.ones((1, 2, 2, 1))
  total, terms = losses.generator_loss(pred, target, logits, (100.0, 0.0, 0.0), quantile=0.25)
  np.testing.assert_allclose(terms['l1'], 1 / 16, rtol=1e-6)
  np.testing.assert_allclose(total, 100 * 2 * 0.75 / 16, rtol=1e-6)  # over-prediction weighs 1 − τ
