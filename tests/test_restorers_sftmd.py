"""Tests for SFTMD as a restorer (s2k_jax/restorers/sftmd.py): training through the shared driver and inference."""
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import skimage.data

from configs import sftmd as sftmd_config
from s2k_jax import color
from s2k_jax import data
from s2k_jax import degradation
from s2k_jax import images
from s2k_jax import kernels
from s2k_jax import modelio
from s2k_jax import pca
from s2k_jax import sharding
from s2k_jax import tasks
from s2k_jax.models import sftmd
from s2k_jax.restorers import sftmd as sftmd_restorer


def test_config_argument_is_checked():
  config = sftmd_config.get_config('motion_x2,smoke')
  assert (config.degradation.family, config.degradation.scale, config.task) == ('motion', 2, 'sftmd')
  assert config.restorer.kernel_size == 23
  with pytest.raises(ValueError, match='FAMILY_xSCALE'):
    sftmd_config.get_config('gaussian_x5')


# Anchored, the untrained output already has bicubic's chroma and lowest luma frequencies: L1 starts
# near bicubic's and falls less in 10 steps.
@pytest.mark.parametrize('anchor,factor', [('none', 0.7), ('bicubic', 0.95)])
def test_step_lowers_l1_on_a_fixed_batch(anchor, factor):
  config = sftmd_config.get_config('gaussian_x4,smoke')
  config.restorer.anchor = anchor
  # The smoke preset's 4-step cosine schedule would reach lr 0 by step 4.
  config.train.num_steps, config.train.learning_rate = 1000, 1e-3
  basis = sftmd_restorer.fit_basis(config)
  mesh = sharding.make_mesh()
  # Replicated over the mesh as the driver holds it: the step then returns it as it took it (one compile).
  state = jax.jit(functools.partial(sftmd_restorer.create_train_state, config),
                  out_shardings=sharding.replicated(mesh))(basis, jax.random.key(0))
  hr = sharding.shard_batch(data.create_eval_batch(config, 8), mesh)['hr']
  batch = jax.jit(sftmd_restorer.make_batch_fn(config))(hr, jax.random.key(3))
  step = jax.jit(functools.partial(sftmd_restorer.train_step, config=config))
  losses = []
  for _ in range(10):
    state, metrics = step(state, batch, jax.random.key(0))
    losses.append(float(metrics['l1']))
  assert losses[-1] < factor * losses[0], losses
  # The basis rides along unchanged.
  np.testing.assert_array_equal(np.asarray(state.pca['components']), basis['components'])


@pytest.mark.slow
def test_outputs_beyond_a_target_on_the_bound_are_pulled_back():
  """Black targets and outputs below 0: the raw-output L1 still has a gradient (a clipped one has none,
  which let the release restorers drift until they collapsed; docs/conventions.md, Restorer). Without
  the anchor, which would pull such an offset back to bicubic's brightness itself."""
  config = sftmd_config.get_config('gaussian_x4,smoke')
  config.restorer.anchor = 'none'
  config.train.num_steps = 1000
  state = jax.jit(functools.partial(sftmd_restorer.create_train_state, config))(
      sftmd_restorer.fit_basis(config), jax.random.key(0))
  bias = state.params['out_conv']['bias']
  state = state.replace(params={**state.params, 'out_conv': {**state.params['out_conv'], 'bias': bias - 5.0}})
  lr = jnp.full((2, 8, 8, 3), 0.5)
  code_kernels = jnp.broadcast_to(kernels.mean_kernel(config.degradation), (2, 15, 15))
  code = sftmd_restorer.kernel_codes(state, code_kernels, None, config)
  assert float(jnp.max(state.apply_fn({'params': state.params}, lr, code))) == 0.0  # clipped at inference
  batch = dict(lr=lr, hr=jnp.zeros((2, 32, 32, 3)), kernel=code_kernels, noise_sigma=jnp.zeros((2,)))
  new_state, metrics = sftmd_restorer.train_step(state, batch, jax.random.key(0), config=config)
  assert float(metrics['l1']) > 4.0  # the raw output, 5 below the black target
  assert np.all(np.asarray(new_state.params['out_conv']['bias']) > np.asarray(bias) - 5.0)


def test_codes_use_the_basis_and_resize_foreign_kernel_sizes():
  config = sftmd_config.get_config('gaussian_x4,smoke')
  basis = sftmd_restorer.fit_basis(config)
  state = jax.jit(functools.partial(sftmd_restorer.create_train_state, config))(basis, jax.random.key(0))
  k23 = kernels.resize_canvas(kernels.gaussian_kernel(15, 2.0, 1.2, 0.4)[None], 23)
  code = sftmd_restorer.kernel_codes(state, k23, None, config)
  expected = (np.asarray(kernels.gaussian_kernel(15, 2.0, 1.2, 0.4)).reshape(-1) - basis['mean']) \
      @ basis['components'] / np.sqrt(basis['variance'][0])
  np.testing.assert_allclose(np.asarray(code)[0], expected, rtol=1e-5, atol=1e-5)
  assert 0.3 < np.abs(expected).max() < 10  # O(1), like the features it is concatenated with.


def test_trained_restorer_loads_and_restores_odd_sizes(smoke_restorer_workdir):
  r = tasks.load_restorer(str(smoke_restorer_workdir))
  assert (r.step, r.scale, r.kernel_size) == (4, 4, 15)
  lr = np.random.default_rng(0).random((2, 13, 21, 3), np.float32)
  k = np.stack([kernels.gaussian_kernel(15, 1.5, 2.5, 0.1)] * 2)
  sr = np.asarray(r.restore(lr, k, downsample='direct'))
  assert sr.shape == (2, 52, 84, 3) and sr.min() >= 0 and sr.max() <= 1
  records = [json.loads(line) for line in (smoke_restorer_workdir / 'metrics.jsonl').read_text().splitlines()]
  assert any('eval/psnr_true_kernel' in rec for rec in records)
  assert sorted(p.name for p in (smoke_restorer_workdir / 'samples').iterdir())[-1] == 'step_0000004.png'


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_restore_shapes_for_every_scale(scale):
  config = sftmd_config.get_config(f'disk_x{scale},smoke')
  basis = pca.fit_pca(np.asarray(kernels.sample_kernels(jax.random.key(0), 64, config.degradation)), 10)
  state = jax.jit(functools.partial(sftmd_restorer.create_train_state, config))(basis, jax.random.key(1))
  r = sftmd_restorer.from_state(config, state, directory='')
  sr = r.restore(jnp.zeros((1, 7, 9, 3)), jnp.asarray(kernels.disk_kernel(2.0, 15))[None],
                downsample='direct')
  assert sr.shape == (1, 7 * scale, 9 * scale, 3)


def test_load_restorer_refuses_an_estimator(smoke_estimator_workdir):
  with pytest.raises(ValueError, match="'s2k_estimator' model, not a restorer"):
    tasks.load_restorer(str(smoke_estimator_workdir))


@pytest.mark.parametrize('mode', ['bicubic', 'none'])
def test_anchor_keeps_bicubic_chroma_and_lowest_luma_frequencies(mode):
  config = sftmd_config.get_config('gaussian_x2,smoke')
  config.restorer.anchor = mode
  state = jax.jit(functools.partial(sftmd_restorer.create_train_state, config))(
      sftmd_restorer.fit_basis(config), jax.random.key(0))
  lr = jax.random.uniform(jax.random.key(1), (2, 30, 34, 3))
  code = sftmd_restorer.kernel_codes(state, jnp.asarray(kernels.sample_kernels(
      jax.random.key(2), 2, config.degradation)), None, config)
  raw = np.asarray(state.apply_fn({'params': state.params}, lr, code, clip=False), np.float64)
  sr = np.asarray(sftmd_restorer.predict(state, state.params, lr, code, config, clip=False), np.float64)
  rest = sftmd_restorer.from_state(config, state)
  plain = sftmd.receptive_field_radius(2, config.restorer.num_blocks) + sftmd_restorer.GRID_REACH // 2
  if mode == 'none':
    np.testing.assert_allclose(sr, raw, atol=1e-6)
    assert rest.receptive_field == plain
    return
  assert rest.receptive_field == plain + sftmd_restorer.ANCHOR_REACH
  bicubic = np.asarray(degradation.bicubic_upsample(lr, 2, 'centre'), np.float64)
  np.testing.assert_allclose(color.rgb_to_cbcr(sr), color.rgb_to_cbcr(bicubic), atol=2e-3)
  # Luma: the network's, plus bicubic's minus the network's low-passed as the docstring says, written
  # out with scipy (mirror padding = numpy's 'reflect'; radius int(3σ + ½) = 24).
  gap = (color.rgb_to_y(bicubic) - color.rgb_to_y(raw)).reshape(2, 30, 2, 34, 2).mean(axis=(2, 4))
  low = scipy.ndimage.gaussian_filter(np.asarray(gap), sftmd_restorer.ANCHOR_SIGMA, axes=(1, 2),
                                      mode='mirror', truncate=3.0)
  expected = color.rgb_to_y(raw) + jax.image.resize(low, (2, 60, 68), 'bicubic')
  np.testing.assert_allclose(color.rgb_to_y(sr), expected, atol=1e-4)


def test_an_unknown_anchor_is_refused_by_name():
  config = sftmd_config.get_config('gaussian_x2,smoke')
  config.restorer.anchor = 'lab'
  with pytest.raises(ValueError, match="restorer.anchor must be 'bicubic'.*got 'lab'"):
    sftmd_restorer.task(config)


def test_shipped_restorer_keeps_the_colours_of_a_colour_photo():
  """The shipped ×4 SFTMD on crops of the held-out coffee photo (red, teal, brown): unanchored it moved
  the channel means by 6–8 levels (whole photo); anchored, each stays within 2 levels of the HR's."""
  rest = tasks.load_restorer(modelio.pretrained_restorer('gaussian', 4, 'sftmd'))
  photo = images.to_uint8(images.read_image(os.path.join(skimage.data.data_dir, 'coffee.png')))
  hr = np.stack([data.spread_crop(photo, 192, r) for r in range(3)]).astype(np.float32) / 255
  deg = rest.config.degradation
  k = kernels.sample_kernels(jax.random.key(0), hr.shape[0], deg)
  lr = degradation.degrade_with_kernels(jnp.asarray(hr), k, jax.random.key(1), deg)['lr']
  sr = np.asarray(rest.restore(lr, k, downsample='direct'))
  shift = np.abs(sr.mean(axis=(1, 2)) - hr.mean(axis=(1, 2))) * 255
  assert shift.max() < 2.0, shift


def test_random_resizers_are_refused_by_name():
  """SFTMD learns one grid and one downsampler: a resizer drawn per image is USRNet's and the estimators'."""
  config = sftmd_config.get_config('gaussian_x2,smoke')
  config.degradation.downsample = 'random_resizer'
  with pytest.raises(ValueError, match="'random_resizer'.*one downsampler is needed"):
    sftmd_restorer.task(config)
