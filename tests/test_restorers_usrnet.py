"""USRNet as a restorer (s2k_jax/restorers/usrnet.py): config, batches, training through the shared
driver, inference through the one Restorer interface, bundles, tiling and colour."""
import functools
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data

from configs import usrnet as usrnet_config
from s2k_jax import data
from s2k_jax import degradation
from s2k_jax import estimator
from s2k_jax import images
from s2k_jax import kernels
from s2k_jax import loop
from s2k_jax import modelio
from s2k_jax import noise
from s2k_jax import pipeline
from s2k_jax import tasks
from s2k_jax.restorers import usrnet

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_config_argument_and_fields_are_checked():
  config = usrnet_config.get_config('mixed,smoke')
  assert config.task == 'usrnet' and config.degradation.family == 'mixed'
  assert 'scale' not in config.degradation  # restorer.scales instead
  assert config.degradation.motion_bank_size == 0  # fresh trajectories
  assert config.data.hr_crop == config.restorer.hr_patch == 48
  with pytest.raises(ValueError, match='FAMILY'):
    usrnet_config.get_config('blurry')
  for field, value, match in (('degradation.downsample', 'nearest', "downsample method must be one of .*'nearest'"),
                              ('restorer.hr_patch', 50, 'multiple of every scale'),
                              ('restorer.scales', (2, 5), 'subset'),
                              ('restorer.scales', (2, 2), 'twice'),
                              ('train.hyper_lr_scale', 0.0, 'hyper_lr_scale must be > 0')):
    config = usrnet_config.get_config('gaussian,smoke')
    section, name = field.split('.')
    setattr(config[section], name, value)
    with pytest.raises(ValueError, match=match):
      usrnet.task(config)


def test_hyper_lr_scale_scales_the_hyper_network_updates_only():
  config = usrnet_config.get_config('gaussian,smoke')
  config.train.schedule = 'constant'
  params = jax.jit(functools.partial(usrnet.create_train_state, config))(jax.random.key(0)).params
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.3), params)
  plain = usrnet.create_optimizer(config)
  assert type(plain.init(params)) is type(loop.create_optimizer(config).init(params))  # old runs resume
  base_update, _ = plain.update(grads, plain.init(params), params)
  config.train.hyper_lr_scale = 30.0
  scaled = usrnet.create_optimizer(config)
  update, _ = scaled.update(grads, scaled.init(params), params)
  assert set(params) == {usrnet.HYPER_NET, 'prior'}
  for name, factor in ((usrnet.HYPER_NET, 30.0), ('prior', 1.0)):
    jax.tree.map(lambda u, b: np.testing.assert_allclose(u, factor * b, rtol=1e-6),
                 update[name], base_update[name])


def test_batches_degrade_one_crop_at_every_scale_with_one_kernel():
  config = usrnet_config.get_config('mixed,smoke')
  hr = data.create_eval_batch(config, 4)['hr']
  batch = jax.jit(usrnet.make_batch_fn(config))(jnp.asarray(hr), jax.random.key(0))
  for s in (2, 3, 4):
    expected = degradation.degrade_with_kernels(
        jnp.asarray(hr, jnp.float32) / 255, batch['kernel'], jax.random.split(jax.random.key(0))[1],
        usrnet.degradation_at(config, s))
    np.testing.assert_allclose(batch[f'lr_x{s}'], expected['lr'], atol=1e-6)
    assert batch[f'lr_x{s}'].shape == (4, 48 // s, 48 // s, 3)
  assert batch['kernel'].shape == (4, 23, 23)
  assert float(batch['noise_sigma'].max()) <= 0.05


def test_steps_cycle_over_the_scales_and_lower_the_loss():
  config = usrnet_config.get_config('gaussian,smoke')
  config.train.num_steps, config.train.learning_rate, config.train.schedule = 1000, 3e-3, 'constant'
  state = jax.jit(functools.partial(usrnet.create_train_state, config))(jax.random.key(0))
  hr = jnp.asarray(data.create_eval_batch(config, 4)['hr'])
  batch = jax.jit(usrnet.make_batch_fn(config))(hr, jax.random.key(1))
  steps = [jax.jit(functools.partial(usrnet.train_step, config=config, variant=v)) for v in range(3)]
  losses = {2: [], 3: [], 4: []}
  for i in range(12):
    state, metrics = steps[i % 3](state, batch, jax.random.key(0))
    losses[int(metrics['scale'])].append(float(metrics['l1']))
  for s, values in losses.items():
    assert len(values) == 4 and values[-1] < values[0], (s, values)


def test_random_resizer_training_tells_the_data_step_bicubic():
  """Trained on LR from a resizer drawn per image, the data step is told 'bicubic', as s2k-sr tells it
  about a photo whose resizer is unknown."""
  config = usrnet_config.get_config('gaussian,smoke')
  config.degradation.downsample = 'random_resizer'
  usrnet.check_fields(config)
  assert usrnet.told_downsample(config) == 'bicubic'
  state = jax.jit(functools.partial(usrnet.create_train_state, config))(jax.random.key(0))
  batch = jax.jit(usrnet.make_batch_fn(config))(jnp.asarray(data.create_eval_batch(config, 2)['hr']),
                                                jax.random.key(1))
  _, out = jax.jit(functools.partial(usrnet.train_step, config=config, variant=0))(state, batch, jax.random.key(0))
  l1 = {}
  for told in ('bicubic', 'direct'):
    sr = state.apply_fn({'params': state.params}, batch['lr_x2'], batch['kernel'], batch['noise_sigma'], 2,
                        clip=False, downsample=told)
    l1[told] = float(jnp.mean(jnp.abs(sr - batch['hr'])))
  np.testing.assert_allclose(float(out['l1']), l1['bicubic'], rtol=1e-5)
  assert abs(l1['bicubic'] - l1['direct']) > 1e-4


def test_kernel_error_tells_widened_kernels_and_leaves_the_rest_of_the_batch_as_it_was():
  """restorer.kernel_error_*: per scale s a told kernel = the true one widened by σ·s HR pixels (σ in
  LR pixels, the same σ at every scale), on about kernel_error_prob of the images; the HR, kernels, LR
  and noise are those of a run without the option (same key), and the train step is told the widened
  kernel: its loss is that of USRNet applied to them."""
  config = usrnet_config.get_config('gaussian,smoke')
  hr = jnp.asarray(data.create_eval_batch(config, 4)['hr'])
  hr = jnp.concatenate([hr] * 8)  # 32 images: enough to see the fraction
  plain = jax.jit(usrnet.make_batch_fn(config))(hr, jax.random.key(3))
  config.restorer.kernel_error_prob, config.restorer.kernel_error_sigma = 0.5, 0.6
  usrnet.check_fields(config)
  batch = jax.jit(usrnet.make_batch_fn(config))(hr, jax.random.key(3))
  assert set(batch) == set(plain) | {'told_kernel_x2', 'told_kernel_x3', 'told_kernel_x4'}
  for name, value in plain.items():
    np.testing.assert_array_equal(batch[name], value, err_msg=name)

  def variance(k):  # mean of the two axes' second moments about the centre, per kernel
    y, x = np.mgrid[:k.shape[1], :k.shape[2]] - (k.shape[1] - 1) / 2
    return ((np.asarray(k) * (x ** 2 + y ** 2)).sum(axis=(1, 2))) / 2

  added = {s: variance(batch[f'told_kernel_x{s}']) - variance(batch['kernel']) for s in (2, 3, 4)}
  widened = added[4] > 1e-6  # at ×2 a σ below ~0.1 LR px is a delta on the HR grid
  assert 8 <= widened.sum() <= 24, added[4]  # ~ half of 32
  for s in (2, 3, 4):
    told = np.asarray(batch[f'told_kernel_x{s}'])
    # Equal up to rounding: XLA may fuse the kernels' computation into each use in its own order.
    np.testing.assert_allclose(told[~widened], np.asarray(batch['kernel'])[~widened], rtol=1e-5, atol=1e-9)
    sigma_hr = np.sqrt(added[s][widened])  # the canvas cuts a little of the widest ones' mass
    assert np.all(sigma_hr <= 0.6 * s + 0.05), (s, sigma_hr)
  # σ is drawn once per image in LR pixels: the same image is widened more at a larger scale.
  assert np.all((added[2] < added[3])[widened] & (added[3] < added[4])[widened])

  state = jax.jit(functools.partial(usrnet.create_train_state, config))(jax.random.key(0))
  small = {k: v[:4] for k, v in batch.items()}
  _, out = jax.jit(functools.partial(usrnet.train_step, config=config, variant=1))(state, small, jax.random.key(0))
  l1 = {}
  for name in ('told_kernel_x3', 'kernel'):
    sr = state.apply_fn({'params': state.params}, small['lr_x3'], small[name], small['noise_sigma'], 3,
                        clip=False, downsample=usrnet.told_downsample(config))
    l1[name] = float(jnp.mean(jnp.abs(sr - small['hr'])))
  np.testing.assert_allclose(float(out['l1']), l1['told_kernel_x3'], rtol=1e-5)
  assert abs(l1['told_kernel_x3'] - l1['kernel']) > 1e-6


def test_told_noise_estimate_tells_the_sigma_read_off_each_lr():
  """restorer.told_noise='estimate': per scale, told_noise_xS = noise.estimate_sigma of each LR image
  (clipped to noise_max); everything else is the batch of a run without the option, and the train
  step's loss is USRNet's told that σ, not the true one."""
  config = usrnet_config.get_config('gaussian,smoke')
  config.degradation.noise_max = 0.004  # low enough that some estimates are clipped to it
  hr = jnp.asarray(data.create_eval_batch(config, 4)['hr'])
  plain = jax.jit(usrnet.make_batch_fn(config))(hr, jax.random.key(5))
  config.restorer.told_noise = 'estimate'
  usrnet.check_fields(config)
  batch = jax.jit(usrnet.make_batch_fn(config))(hr, jax.random.key(5))
  assert set(batch) == set(plain) | {'told_noise_x2', 'told_noise_x3', 'told_noise_x4'}
  for name, value in plain.items():
    np.testing.assert_array_equal(batch[name], value, err_msg=name)
  for s in (2, 3, 4):
    lr = np.asarray(batch[f'lr_x{s}'])
    want = np.minimum([noise.estimate_sigma(x) for x in lr], 0.004)
    np.testing.assert_allclose(batch[f'told_noise_x{s}'], want, rtol=1e-5, atol=1e-7)
  assert any(np.any(np.asarray(batch[f'told_noise_x{s}']) == np.float32(0.004)) for s in (2, 3, 4))
  assert not np.allclose(batch['told_noise_x2'], batch['noise_sigma'])

  state = jax.jit(functools.partial(usrnet.create_train_state, config))(jax.random.key(0))
  # The hyper-network's last layer starts at zero (σ has no effect yet): give it weights.
  params = jax.tree_util.tree_map_with_path(
      lambda path, p: p + 0.5 * jax.random.normal(jax.random.key(1), p.shape)
      if usrnet.HYPER_NET in str(path) and 'kernel' in str(path) else p, state.params)
  state = state.replace(params=params)
  _, out = jax.jit(functools.partial(usrnet.train_step, config=config, variant=0))(state, batch, jax.random.key(0))
  l1 = {}
  for name in ('told_noise_x2', 'noise_sigma'):
    sr = state.apply_fn({'params': state.params}, batch['lr_x2'], batch['kernel'], batch[name], 2,
                        clip=False, downsample=usrnet.told_downsample(config))
    l1[name] = float(jnp.mean(jnp.abs(sr - batch['hr'])))
  np.testing.assert_allclose(float(out['l1']), l1['told_noise_x2'], rtol=1e-5)
  assert abs(l1['told_noise_x2'] - l1['noise_sigma']) > 1e-6  # 10× the tolerance of the equality above


@pytest.mark.parametrize('told, noise_max, match', [
    ('guess', 0.05, r"told_noise must be one of \('true', 'estimate'\)"),
    ('estimate', 0.0, 'needs a restorer that reads noise')])
def test_told_noise_settings_are_checked(told, noise_max, match):
  config = usrnet_config.get_config('gaussian,smoke')
  config.restorer.told_noise, config.degradation.noise_max = told, noise_max
  with pytest.raises(ValueError, match=match):
    usrnet.check_fields(config)


@pytest.mark.parametrize('prob, sigma, match', [
    (1.5, 0.5, r'kernel_error_prob must be in \[0, 1\]'),
    (0.5, -0.1, r'kernel_error_sigma ≥ 0'),
    (0.5, 0.0, r'widened only when both are > 0'),
    (0.0, 0.5, r'widened only when both are > 0')])
def test_kernel_error_settings_are_checked(prob, sigma, match):
  config = usrnet_config.get_config('gaussian,smoke')
  config.restorer.kernel_error_prob, config.restorer.kernel_error_sigma = prob, sigma
  with pytest.raises(ValueError, match=match):
    usrnet.check_fields(config)


def test_told_estimates_are_s2k_reading_of_the_whole_crop(smoke_estimator_workdir):
  """restorer.told_estimate_prob / told_estimators / context: the batch is that of a run on the whole
  hr_patch + 2·context crop (same key) cut to its centred hr_patch and the LR under it; told_kernel_x4 is
  S2K's canonical estimate read off the whole ×4 LR (what s2k-sr tells USRNet) on the Gaussian images
  picked — all of them at probability 1, about half at 0.5 — and the true kernel on the others; the
  scales without a told estimator keep the truth; the σ is read off the whole LR."""
  whole = usrnet_config.get_config('mixed,smoke')
  whole.restorer.hr_patch, whole.restorer.told_noise = 96, 'estimate'
  hr = jnp.asarray(np.concatenate([data.create_eval_batch(whole, 4)['hr']] * 4))  # 16 images
  plain = jax.jit(usrnet.make_batch_fn(whole))(hr, jax.random.key(6))
  config = usrnet_config.get_config('mixed,smoke')
  config.restorer.told_noise, config.restorer.context = 'estimate', 24
  config.restorer.told_estimators = f'x4={smoke_estimator_workdir}'
  config.restorer.told_estimate_prob = 1.0
  assert config.data.hr_crop == 96  # hr_patch 48 + 2·24: the data step's crop follows the context
  usrnet.check_fields(config)
  batch = jax.jit(usrnet.make_batch_fn(config))(hr, jax.random.key(6))
  assert set(batch) == set(plain) | {'told_kernel_x4'}
  np.testing.assert_array_equal(batch['hr'], plain['hr'][:, 24:72, 24:72])
  for s in (2, 3, 4):
    c = 24 // s
    np.testing.assert_array_equal(batch[f'lr_x{s}'], plain[f'lr_x{s}'][:, c:-c, c:-c], err_msg=s)
  np.testing.assert_array_equal(batch['noise_sigma'], plain['noise_sigma'])
  # The same kernels up to float32 rounding: the two graphs are fused differently (1.5e-8 apart measured
  # on an AMD EPYC, bit-equal on other CPUs).
  np.testing.assert_allclose(batch['kernel'], plain['kernel'], rtol=1e-5, atol=1e-7)
  for s in (2, 3, 4):  # equal up to rounding: XLA fuses the σ estimate into its uses in its own order
    np.testing.assert_allclose(batch[f'told_noise_x{s}'], plain[f'told_noise_x{s}'], rtol=1e-5, err_msg=s)
  est = estimator.load(str(smoke_estimator_workdir))
  estimate = np.asarray(kernels.resize_canvas(pipeline.estimate(est, plain['lr_x4'])[0], 23))
  _, family = kernels.sample_kernels_and_families(jax.random.split(jax.random.key(6))[0], 16,
                                                   usrnet.degradation_at(config, 4))
  gaussian = np.asarray(family) == kernels.FAMILIES.index('gaussian')
  assert 0 < gaussian.sum() < 16
  told = np.asarray(batch['told_kernel_x4'])
  np.testing.assert_allclose(told[gaussian], estimate[gaussian], atol=1e-6)
  np.testing.assert_array_equal(told[~gaussian], np.asarray(batch['kernel'])[~gaussian])
  assert not np.allclose(told[gaussian], np.asarray(batch['kernel'])[gaussian], atol=1e-3)

  config.restorer.told_estimate_prob = 0.5
  half = np.asarray(jax.jit(usrnet.make_batch_fn(config))(hr, jax.random.key(6))['told_kernel_x4'])
  estimated = np.all(np.isclose(half, estimate, atol=1e-6), axis=(1, 2)) & gaussian
  assert 0 < estimated.sum() < gaussian.sum()  # the Gaussian images not picked are told the truth
  np.testing.assert_array_equal(half[~estimated], np.asarray(batch['kernel'])[~estimated])


@pytest.mark.parametrize('fields, match', [
    ({'told_estimate_prob': 1.5}, r'told_estimate_prob must be in \[0, 1\]'),
    ({'told_estimate_prob': 0.5, 'context': 10}, 'multiple of every scale'),
    ({'context': 24}, 'no effect unless restorer.told_estimate_prob > 0'),
    ({'told_estimators': 'x4=runs/est'}, 'no effect unless restorer.told_estimate_prob > 0'),
    ({'told_estimate_prob': 0.5, 'told_estimators': 'runs/est'}, 'xS=MODEL'),
    ({'told_estimate_prob': 0.5, 'told_estimators': 'x5=runs/est'}, '×5, which restorer.scales'),
    ({'told_estimate_prob': 0.5, 'told_estimators': 'x4=a, x4=b'}, '×4 twice'),
    ({'hr_crop': 144}, r'data.hr_crop=144 is not restorer.hr_patch \+ 2·restorer.context = 48 \+ 2·0'),
    ({'told_estimate_prob': 0.5, 'told_estimators': 'x2=ESTIMATOR'}, 'reads ×4 LR, not ×2'),
    ({'told_estimate_prob': 0.5, 'told_estimators': 'x4=ESTIMATOR'}, r'too small for kernel estimation'),
    ({'told_estimate_prob': 0.5, 'context': 24, 'told_estimators': 'x4=ESTIMATOR',
      'downsample': 'bicubic'}, "blurs before 'direct' downsampling, but this restorer is told 'bicubic'"),
    ({'told_estimate_prob': 0.5, 'context': 24, 'told_estimators': 'x4=ESTIMATOR', 'family': 'motion'},
     'knows gaussian kernels; this restorer trains on motion kernels only')])
def test_told_estimate_settings_are_checked(smoke_estimator_workdir, fields, match):
  config = usrnet_config.get_config('mixed,smoke')
  for name, value in fields.items():
    section = {'downsample': config.degradation, 'family': config.degradation,
               'hr_crop': config.data}.get(name, config.restorer)
    if isinstance(value, str):
      value = value.replace('ESTIMATOR', str(smoke_estimator_workdir))
    setattr(section, name, value)
  with pytest.raises(ValueError, match=match):
    usrnet.task(config)


def test_told_estimators_default_to_the_shipped_ones_that_read_the_training_lr():
  """told_estimators='': on the centre grid (random resizers, told 'bicubic') the resizer-trained ×2
  and ×4 Gaussian estimators (none ships for ×3), on the direct grid the direct ones at ×2, ×3, ×4."""
  config = usrnet_config.get_config('mixed,smoke')
  config.restorer.told_estimate_prob, config.restorer.context = 0.5, 24  # the ×4 LR 24², ≥ 16
  config.degradation.downsample = 'random_resizer'
  found = usrnet.told_estimators(config)
  assert {s: os.path.basename(e.directory) for s, e in found.items()} == {
      s: os.path.basename(modelio.pretrained_estimator('gaussian', s, 'centre')) for s in (2, 4)}
  config.degradation.downsample = 'direct'
  assert sorted(usrnet.told_estimators(config)) == [2, 3, 4]
  config.degradation.family = 'motion'
  with pytest.raises(ValueError, match=r"told_estimators='' \(the shipped Gaussian estimators\).*knows gaussian"):
    usrnet.told_estimators(config)


def test_told_estimates_replace_widened_kernels_only_on_the_images_they_are_told(smoke_estimator_workdir):
  """With kernel errors on as well, an image told the estimate gets the estimate and every other image
  the kernel it would get without told estimates: widened or true."""
  config = usrnet_config.get_config('gaussian,smoke')
  config.restorer.kernel_error_prob, config.restorer.kernel_error_sigma = 0.5, 0.6
  config.restorer.context = 24
  hr = jnp.asarray(np.concatenate([data.create_eval_batch(config, 4)['hr']] * 3))  # 12 images
  config.restorer.told_estimate_prob, config.restorer.told_estimators = 0.5, f'x4={smoke_estimator_workdir}'
  batch = jax.jit(usrnet.make_batch_fn(config))(hr, jax.random.key(8))
  config.restorer.told_estimate_prob, config.restorer.told_estimators = 0.0, ''
  config.restorer.context, config.restorer.hr_patch = 0, 96  # the same whole crop, without told estimates
  widened = jax.jit(usrnet.make_batch_fn(config))(hr, jax.random.key(8))
  est = estimator.load(str(smoke_estimator_workdir))
  canvas = config.degradation.kernel_size
  estimate = np.asarray(kernels.resize_canvas(pipeline.estimate(est, widened['lr_x4'])[0], canvas))
  told = np.asarray(batch['told_kernel_x4'])
  estimated = np.all(np.isclose(told, estimate, atol=1e-6), axis=(1, 2))
  assert 0 < estimated.sum() < 12
  np.testing.assert_allclose(told[~estimated], np.asarray(widened['told_kernel_x4'])[~estimated], atol=1e-7)
  assert np.any(np.abs(told[~estimated] - np.asarray(batch['kernel'])[~estimated]).max(axis=(1, 2)) > 1e-4)
  for s in (2, 3):  # no told estimator at these scales: the widened kernels, as without the option
    np.testing.assert_allclose(batch[f'told_kernel_x{s}'], widened[f'told_kernel_x{s}'], atol=1e-7)


def test_smoke_run_loads_as_a_restorer_for_every_scale_and_family(smoke_usrnet_workdir):
  rest = tasks.load_restorer(str(smoke_usrnet_workdir))
  assert (rest.name, rest.scales, rest.families) == ('USRNet', (2, 3, 4), kernels.FAMILIES)
  assert rest.takes_noise and rest.scale is None
  lr = np.random.default_rng(0).random((2, 20, 24, 3)).astype(np.float32)
  k = np.full((2, 15, 15), 1 / 225, np.float32)
  for s in (2, 3, 4):
    assert rest.restore(lr, k, np.array([0.0, 0.02]), scale=s, downsample='direct').shape == (2, 20 * s, 24 * s, 3)
  with pytest.raises(ValueError, match='say which one'):
    rest.restore(lr, k, downsample='direct')
  with pytest.raises(ValueError, match='not ×5'):
    rest.restore(lr, k, scale=5, downsample='direct')


def test_bundle_round_trip(smoke_usrnet_workdir, tmp_path):
  rest = tasks.load_restorer(str(smoke_usrnet_workdir))
  path = tasks.export_bundle(str(smoke_usrnet_workdir), str(tmp_path / 'usrnet.npz'), dtype='float32')
  again = tasks.load_restorer(path)
  lr = np.random.default_rng(1).random((1, 16, 16, 3)).astype(np.float32)
  k = np.full((1, 9, 9), 1 / 81, np.float32)
  # The bundle holds the checkpoint's parameters bit for bit ...
  for (path_a, a), (_, b) in zip(jax.tree_util.tree_flatten_with_path(jax.device_get(again.state.params))[0],
                                 jax.tree_util.tree_flatten_with_path(jax.device_get(rest.state.params))[0]):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path_a))
  # ... and restores alike: XLA:CPU on 8 virtual devices runs this network with ~1e-7 run-to-run
  # round-off (the same restorer called twice differed by 1.2e-7), so outputs agree to that, not bitwise.
  np.testing.assert_allclose(np.asarray(again.restore(lr, k, scale=3, downsample='direct')), np.asarray(rest.restore(lr, k, scale=3, downsample='direct')),
                             atol=1e-6, rtol=0)



def test_a_widened_bundle_restores_alike_and_fine_tunes_as_the_wider_config(smoke_usrnet_workdir, tmp_path):
  """`python -m s2k_jax.widen`: the exported :smoke USRNet (prior widths 4, 8) grown to (6, 12) is the
  same restorer (models/usrnet.py's test checks a random prior), records its widths, and is what
  `train.init_from` starts a (6, 12) run from; widths that shrink are refused by name."""
  small = tasks.export_bundle(str(smoke_usrnet_workdir), str(tmp_path / 'small.npz'), dtype='float32')
  wide = usrnet.widen_bundle(small, str(tmp_path / 'wide.npz'), (6, 12))
  rest, grown = tasks.load_restorer(small), tasks.load_restorer(wide)
  assert tuple(grown.config.restorer.features) == (6, 12)
  assert modelio.read_bundle(wide)[0]['trained_on'].startswith('small.npz (step 4, prior widths (4, 8)) widened')
  lr = np.random.default_rng(1).random((1, 16, 16, 3)).astype(np.float32)
  k = np.full((1, 9, 9), 1 / 81, np.float32)
  np.testing.assert_allclose(np.asarray(grown.restore(lr, k, scale=2, downsample='direct')),
                             np.asarray(rest.restore(lr, k, scale=2, downsample='direct')), atol=1e-6, rtol=0)
  config = usrnet_config.get_config('mixed,smoke')
  config.restorer.features = (6, 12)
  state = jax.eval_shape(functools.partial(usrnet.create_train_state, config), jax.random.key(0))
  started = modelio.warm_start(jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), state), wide, usrnet.CHECKPOINT_KIND)
  np.testing.assert_array_equal(started.params['prior']['tail']['kernel'],
                                np.asarray(grown.state.params['prior']['tail']['kernel']))
  bad = subprocess.run([sys.executable, '-m', 's2k_jax.widen', f'--bundle={small}', '--features=6,4',
                        f'--out={tmp_path / "bad.npz"}'], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert bad.returncode == 1 and 'widths (4, 8) can only grow' in bad.stderr, bad.stderr[-2000:]
  assert not (tmp_path / 'bad.npz').exists()

def _held_out_lr(scale, n=3, family='gaussian', seed=0, size=96):
  """Crops of the held-out bundled photos (chelsea, coffee) at spread positions, degraded at `scale`:
  (hr, lr, kernels, degradation config)."""
  config = usrnet_config.get_config(f'{family},smoke')
  paths = [os.path.join(skimage.data.data_dir, name) for name in data.BUNDLED_EVAL]
  crops = [data.spread_crop(images.to_uint8(images.read_image(p)), size, r) for p in paths for r in range(n)]
  hr = jnp.asarray(np.stack(crops), jnp.float32) / 255
  deg = usrnet.degradation_at(config, scale).as_configdict()
  deg.noise_max, deg.noise_prob, deg.quantize = 0.0, 1.0, True
  kernel_key, noise_key = jax.random.split(jax.random.key(seed))
  k = kernels.sample_kernels(kernel_key, hr.shape[0], deg)
  lr = degradation.degrade_with_kernels(hr, k, noise_key, deg)['lr']
  return np.asarray(hr), np.asarray(lr), np.asarray(k), deg


def _psnr(a, b):
  return float(np.mean(10 * np.log10(1 / np.mean((np.asarray(a) - np.asarray(b)) ** 2, axis=(1, 2, 3)))))


def test_true_kernel_beats_mean_kernel_on_held_out_crops(smoke_usrnet_workdir):
  """Even barely trained, the exact data step uses the kernel: true > mean by a margin at ×2
  (measured 1.2 dB on these 6 crops) and both above bicubic."""
  rest = tasks.load_restorer(str(smoke_usrnet_workdir))
  hr, lr, k, deg = _held_out_lr(2)
  mean = kernels.mean_kernel(deg, n=2000)
  true_psnr = _psnr(rest.restore(lr, k, scale=2, downsample='direct'), hr)
  mean_psnr = _psnr(rest.restore(lr, np.broadcast_to(mean, k.shape), scale=2, downsample='direct'), hr)
  bicubic = _psnr(np.clip(jax.image.resize(lr, hr.shape, 'bicubic'), 0, 1), hr)
  assert true_psnr > mean_psnr + 0.5 and mean_psnr > bicubic, (true_psnr, mean_psnr, bicubic)


def test_colour_photo_keeps_its_channel_means(smoke_usrnet_workdir):
  rest = tasks.load_restorer(str(smoke_usrnet_workdir))
  for scale in (2, 4):
    hr, lr, k, _ = _held_out_lr(scale)
    sr = np.asarray(rest.restore(lr, k, scale=scale, downsample='direct'))
    shift = np.abs(sr.mean(axis=(1, 2)) - hr.mean(axis=(1, 2))) * 255
    assert shift.max() < 2.0, shift


def test_tiles_are_seamless(smoke_usrnet_workdir):
  """The data step is global, but its reach decays: with the inference border (48 LR pixels, whatever
  the training border) tiles overlapping by the receptive field agree with the whole image to within
  1/255, at the photo's outer edges too (the shipped model measured 0.009 levels; with its training
  border of 8 the edges differed by 44 levels)."""
  rest = pipeline.on_one_device(tasks.load_restorer(str(smoke_usrnet_workdir)))
  assert rest.config.restorer.border == 4 and rest.receptive_field == usrnet.INFERENCE_BORDER + 16
  _, lr, k, _ = _held_out_lr(2, n=1, size=288)
  lr, k = lr[:1], k[:1]
  whole = np.asarray(rest.restore(lr, k, scale=2, downsample='direct'))
  overlap = pipeline.default_overlap(rest, 96)
  tiled = pipeline.restore_tiled(rest, jnp.asarray(lr), jnp.asarray(k), 96, overlap, scale=2, downsample='direct')
  assert np.abs(tiled - whole).max() < 1 / 255


def test_bad_kernels_noise_and_scales_are_refused(smoke_usrnet_workdir):
  rest = tasks.load_restorer(str(smoke_usrnet_workdir))
  lr = np.zeros((1, 16, 16, 3), np.float32)
  good = np.full((1, 5, 5), 1 / 25, np.float32)
  for bad, match in ((good * np.nan, 'NaN or inf'), (-good, 'negative'), (good * 0, 'sums to 0'),
                     (np.ones((1, 4, 4)), 'odd'), (np.full((1, 65, 65), 1 / 65 ** 2), 'larger than the 63×63')):
    with pytest.raises(ValueError, match=match):
      rest.restore(lr, bad, scale=2, downsample='direct')
  for sigma in (-0.01, 0.3, np.nan):
    with pytest.raises(ValueError, match=r'noise σ must be in \[0, 0.2\]'):
      rest.restore(lr, good, np.array([sigma]), scale=2, downsample='direct')
  # The largest kernel fits the canvas of the smallest image (inference border 48 LR pixels).
  assert rest.restore(np.zeros((1, 4, 4, 3), np.float32), np.full((1, 63, 63), 1 / 63 ** 2), scale=2,
                      downsample='direct').shape == (1, 8, 8, 3)
