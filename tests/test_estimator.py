"""Tests for s2k_jax/estimator.py: refusing models trained under another kernel-map convention."""
import json
import os
import re
import shutil
import types
from unittest import mock

import jax
import numpy as np
import pytest

from configs import gaussian as gaussian_config
from configs import motion as motion_config
from s2k_jax import estimator
from s2k_jax import modelio
from s2k_jax import tasks
from s2k_jax import spectrum
from s2k_jax import loop

OLD_CONVENTION = 'kernel_to_map v0: nearest-neighbour upsampling, max → 1'


def _meta_file(workdir, step):
  """The JSON file orbax writes for a checkpoint's `meta` item (`checkpoints.save_checkpoint`)."""
  return os.path.join(workdir, 'checkpoints', str(step), 'meta', 'metadata')


def test_a_checkpoint_of_another_kernel_map_convention_is_refused(smoke_estimator_workdir, tmp_path):
  """The reference is the checkpoint's own JSON, edited on disk the way an older version would have saved it.

  Only the edited step is refused: the check reads the metadata of the step that is loaded.
  """
  workdir = str(tmp_path / 'old_estimator')
  shutil.copytree(smoke_estimator_workdir, workdir)
  path = _meta_file(workdir, 4)
  with open(path) as f:
    meta = json.load(f)
  assert meta['kernel_map'] == spectrum.KERNEL_MAP_CONVENTION  # what this version writes
  with open(path, 'w') as f:
    json.dump(dict(meta, kernel_map=OLD_CONVENTION), f)
  with pytest.raises(ValueError, match='kernel-map convention') as info:
    estimator.load(workdir)  # the latest step, 4
  message = str(info.value)
  assert workdir in message and OLD_CONVENTION in message and spectrum.KERNEL_MAP_CONVENTION in message
  assert 'retrain' in message
  assert estimator.load(workdir, step=2).step == 2  # step 2 keeps this version's convention
  # A checkpoint that records no convention at all (older than the field) is refused too.
  meta.pop('kernel_map')
  with open(path, 'w') as f:
    json.dump(meta, f)
  with pytest.raises(ValueError, match='kernel-map convention None differs'):
    estimator.load(os.path.join(workdir, 'checkpoints'))


def test_a_bundle_of_another_kernel_map_convention_is_refused(smoke_estimator_workdir, tmp_path):
  """The reference is a bundle written by `tasks.export_bundle`, its JSON header rewritten with another convention."""
  good = tasks.export_bundle(str(smoke_estimator_workdir), str(tmp_path / 'good.npz'), dtype='float32')
  assert estimator.load(good).step == 4
  with np.load(good, allow_pickle=False) as npz:
    arrays = {name: npz[name] for name in npz.files}
  meta = json.loads(arrays['meta'].tobytes())
  assert meta['kernel_map'] == spectrum.KERNEL_MAP_CONVENTION
  for name, convention in (('old.npz', OLD_CONVENTION), ('none.npz', None)):
    header = dict(meta, kernel_map=convention) if convention else {k: v for k, v in meta.items()
                                                                   if k != 'kernel_map'}
    arrays['meta'] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    path = str(tmp_path / name)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=re.escape(f'convention {convention!r} differs')) as info:
      estimator.load(path)
    assert path in str(info.value) and spectrum.KERNEL_MAP_CONVENTION in str(info.value)
    assert not isinstance(info.value, modelio.BundleError)  # a readable bundle, of another convention


def test_a_spectrum_mode_with_spatial_input_is_an_error_not_ignored():
  from configs import gaussian  # pylint: disable=g-import-not-at-top
  config = gaussian.get_config('smoke')
  config.model.input, config.spectrum.mode = 'spatial', 'welch'
  with pytest.raises(ValueError, match=r"spectrum.mode='welch' has no effect with model.input='spatial'"):
    estimator.task(config)
  config.model.input = 'dft'
  with pytest.raises(ValueError, match=r"the LR training crop is 32² \(data.hr_crop=128 / scale 4\): one "
                                       r'tile, the same as crop mode. Set --config.data.hr_crop to at least 192'):
    estimator.check_model_fields(config)  # Welch over one tile = crop mode: no effect.
  config.data.hr_crop = 256  # 64² LR crops: 3×3 tiles of 32².
  from s2k_jax import data  # pylint: disable=g-import-not-at-top
  data.task_inputs(config)  # The task's other start-up checks accept it too.
  estimator.check_model_fields(config)
  batch = jax.jit(estimator.make_batch_fn(config))(
      data.create_eval_batch(config, 2)['hr'], jax.random.key(0))
  np.testing.assert_allclose(batch['inputs'], spectrum.amplitude_spectrum(batch['lr'], 32, 'welch'), atol=1e-6)
  assert batch['lr'].shape == (2, 64, 64, 3)


def test_a_spectrum_mode_at_inference_with_spatial_input_is_an_error(smoke_estimator_workdir):
  """--spectrum-mode / estimate_kernels(mode=...) would be silently ignored by a spatial-input estimator."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  est = estimator.load(str(smoke_estimator_workdir))
  config = est.config.copy_and_resolve_references()
  config.model.input = 'spatial'
  spatial = dataclasses.replace(est, config=config)
  lr = np.zeros((1, 40, 40, 3), np.float32)
  with pytest.raises(ValueError, match=r"spectrum mode \('welch'\) has no effect .* leave --spectrum-mode out"):
    estimator.estimate_kernels(spatial, lr, mode='welch')
  assert estimator.estimate_kernels(est, lr, mode='welch')['kernel'].shape == (1, 15, 15)


def test_the_demo_closing_lines_compare_with_the_mean_kernel(smoke_estimator_workdir):
  """After a smoke run: the last held-out kernel error beside the mean kernel's (both read back from
  metrics.jsonl, the reference). The next commands: tests/test_tasks.py."""
  step, scalars = loop.last_eval(str(smoke_estimator_workdir))
  assert step == 4 and {'kernel_mae', 'kernel_mae_mean_kernel'} <= set(scalars)
  text = '\n'.join(estimator.describe_eval(scalars))
  assert f'{scalars["kernel_mae"]:.4g}' in text or f'{scalars["kernel_mae"]:.4f}' in text
  assert 'mean kernel' in text


def test_flip_invariance_comes_from_the_family_alone():
  """One source of truth: the kernel family (kernels.flip_invariant), not a config field beside it."""
  assert 'flip_invariant_l1' not in motion_config.get_config('smoke').train
  rng = np.random.default_rng(0)
  true = rng.random((2, 15, 15)).astype(np.float32)
  true /= true.sum(axis=(1, 2), keepdims=True)
  rotated_maps = spectrum.kernel_to_map(true[:, ::-1, ::-1], 32)
  for config, blind in ((motion_config.get_config('smoke'), True), (gaussian_config.get_config('smoke'), False)):
    config.degradation.kernel_size = 15
    state = {'gen': types.SimpleNamespace()}
    with mock.patch.object(estimator, 'estimate_maps', lambda state, inputs: rotated_maps):
      out = estimator.eval_step(state, {'inputs': None, 'kernel': true}, config=config)
    assert (float(np.max(out['kernel_mae'])) < 1e-6) == blind, config.degradation.family


@pytest.mark.parametrize('quantile, weights, message', [
    (0.0, (100.0, 1.0, 1.0), r'train.kernel_quantile must be in \(0, 1\)'),
    (1.2, (100.0, 1.0, 1.0), r'train.kernel_quantile must be in \(0, 1\)'),
    (0.3, (0.0, 1.0, 1.0), r'train.kernel_quantile=0.3 has no effect with the L1 term off'),
])
def test_a_kernel_quantile_out_of_range_or_without_effect_is_refused(quantile, weights, message):
  from configs import gaussian  # pylint: disable=g-import-not-at-top
  config = gaussian.get_config('smoke')
  config.train.kernel_quantile, config.train.loss_weights = quantile, weights
  with pytest.raises(ValueError, match=message):
    estimator.check_model_fields(config)
  config.train.kernel_quantile = 0.3
  config.train.loss_weights = (100.0, 1.0, 1.0)
  estimator.check_model_fields(config)


@pytest.mark.parametrize('loss, quantile, weights, message', [
    ('l3', 0.5, (100.0, 1.0, 1.0), r"train.kernel_loss must be one of \('l1', 'l2'\)"),
    ('l2', 0.3, (100.0, 1.0, 1.0), r"train.kernel_quantile=0.3 has no effect with train.kernel_loss='l2'"),
    ('l2', 0.5, (0.0, 1.0, 1.0), r"train.kernel_loss='l2' has no effect with the kernel term off"),
])
def test_a_kernel_loss_unknown_or_without_effect_is_refused(loss, quantile, weights, message):
  from configs import motion  # pylint: disable=g-import-not-at-top
  config = motion.get_config('smoke')
  config.train.kernel_loss, config.train.kernel_quantile, config.train.loss_weights = loss, quantile, weights
  with pytest.raises(ValueError, match=message):
    estimator.check_model_fields(config)
  config.train.kernel_loss, config.train.kernel_quantile, config.train.loss_weights = 'l2', 0.5, (100.0, 1.0, 1.0)
  estimator.check_model_fields(config)
  del config.train['kernel_loss']  # a config saved before the field: the paper's L1
  assert estimator.kernel_loss(config) == 'l1'

