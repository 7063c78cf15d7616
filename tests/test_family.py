"""Tests for s2k_jax/family.py and s2k_jax/models/classifier.py: the kernel-family classifier of
`s2k-sr --family auto` (its batches, step, evaluation, training run, bundle and inference)."""
import csv
import dataclasses
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import family as family_config
from s2k_jax import data
from s2k_jax import degradation
from s2k_jax import family
from s2k_jax import images
from s2k_jax import kernels
from s2k_jax import modelio
from s2k_jax import spectrum
from s2k_jax import tasks
from s2k_jax.models import classifier


def _hr(batch: int, size: int, seed: int = 0) -> np.ndarray:
  """Smooth random uint8 HR crops (a photo-like 1/f spectrum is not needed for the checks here)."""
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(0, 255, (batch, size // 8, size // 8, 3))
  return np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2).astype(np.uint8)


def test_batches_are_the_estimators_degradations_labelled_with_their_family():
  """Reference: degradation.degrade with the same key (the estimators' batches) and
  kernels.sample_kernels_and_families' labels; the spectrum the classifier reads is that LR's."""
  config = family_config.get_config('smoke')
  hr = _hr(16, int(config.data.hr_crop))
  key = jax.random.key(3)
  batch = jax.jit(family.make_batch_fn(config))(hr, key)
  deg = ml_collections.FrozenConfigDict(config.degradation)
  made = degradation.degrade(images.to_float(jnp.asarray(hr)), key, deg)
  np.testing.assert_allclose(batch['kernel'], made['kernel'], atol=1e-7)
  expected_spectra = spectrum.amplitude_spectrum(made['lr'], size=int(config.spectrum.size), mode='welch')
  np.testing.assert_allclose(batch['inputs'], expected_spectra, atol=1e-5)
  _, labels = kernels.sample_kernels_and_families(jax.random.split(key)[0], 16, deg)
  np.testing.assert_array_equal(batch['family'], labels)
  assert batch['inputs'].shape == (16, 32, 32, 1) and set(np.asarray(labels).tolist()) == {0, 1, 2}


def test_config_refusals():
  config = family_config.get_config('smoke')
  config.degradation.family = 'gaussian'
  with pytest.raises(ValueError, match="train it with degradation.family='mixed', not 'gaussian'"):
    family.make_batch_fn(config)
  config = family_config.get_config('smoke')
  config.data.hr_crop = 128  # 32² LR: one 32² Welch tile
  with pytest.raises(ValueError, match="spectrum.mode='welch' averages 32² tiles.*data.hr_crop to at least 192"):
    family.task(config)
  # The estimator's loss has no meaning here: its fields are not in the config at all.
  assert 'loss_weights' not in config.train and 'kernel_quantile' not in config.train
  config = family_config.get_config('smoke')
  config.model.features = (8, 12)
  with pytest.raises(ValueError, match=r'model.features must be positive multiples of 8.*got \(8, 12\)'):
    family.task(config)


def test_network_shapes_and_refusal():
  model = classifier.FamilyClassifier(features=(8, 16), hidden=8)
  x = jnp.zeros((2, 32, 32, 1))
  variables = model.init(jax.random.key(0), x)
  assert set(variables) == {'params'}  # no batch statistics: a photo is classified alone
  logits = model.apply(variables, x)
  assert logits.shape == (2, 3) and logits.dtype == jnp.float32
  with pytest.raises(ValueError, match=r'reads \(B, S, S, 1\) spectra, got shape \(2, 32, 32, 3\)'):
    model.apply(variables, jnp.zeros((2, 32, 32, 3)))


def test_steps_fit_a_fixed_batch():
  """Adam on the cross-entropy learns a fixed batch: the loss falls below a quarter of its start, and the
  step's loss is optax's cross-entropy of the state's own logits (independent reference)."""
  config = family_config.get_config('smoke')
  config.train.learning_rate = 3e-3
  config.model.features, config.model.hidden = (16, 32), 32
  hr = next(data.create_train_iterator(config))['hr']  # crops of the bundled photos
  batch = jax.jit(family.make_batch_fn(config))(hr, jax.random.key(5))
  state = family.create_train_state(config, jax.random.key(0))
  logits = state.apply_fn({'params': state.params}, batch['inputs'])
  first = float(optax.softmax_cross_entropy_with_integer_labels(logits, batch['family']).mean())
  step = jax.jit(lambda s, b: family.train_step(s, b, jax.random.key(0), config=config))
  state, metrics = step(state, batch)
  assert float(metrics['loss']) == pytest.approx(first, rel=1e-5)
  for _ in range(60):
    state, metrics = step(state, batch)
  assert float(metrics['loss']) < first / 4 and float(metrics['accuracy']) > 0.5


def test_eval_summary_counts_per_true_family():
  probs = np.array([[.8, .1, .1], [.2, .7, .1], [.6, .3, .1], [.1, .1, .8]])
  out = dict(probs=probs, predicted=probs.argmax(-1))
  scalars, figure = family.summarize_eval(out, dict(family=np.array([0, 1, 1, 2])))
  assert figure is None
  assert scalars == {'accuracy': 0.75, 'accuracy_gaussian': 1.0, 'accuracy_motion': 0.5, 'accuracy_disk': 1.0}
  assert family.describe_eval(scalars) == [
      'family recognised on 75% of the eval batch (chance 33%; per true family: gaussian 100%, motion 50%, '
      'disk 100%).']
  assert family.recognised(probs[1]) == ('motion', pytest.approx(0.7))
  assert family.describe(probs[1]) == 'gaussian 20%, motion 70%, disk 10%'


def test_training_run_bundle_and_inference(tmp_path, smoke_classifier_workdir):
  """train.py's driver trained it (the session's :smoke run), export writes a bundle, and the bundle and
  the checkpoint recognise alike; probabilities are a distribution over FAMILIES for a photo of any size."""
  workdir = str(smoke_classifier_workdir)
  bundle = tasks.export_bundle(workdir, str(tmp_path / 'family.npz'), dtype='float32')
  from_checkpoint, from_bundle = family.load(workdir), family.load(bundle)
  assert from_bundle.step == from_checkpoint.step == 4 and from_bundle.scale == 4
  lr = np.asarray(_hr(2, 96, seed=2))[:, :70, :90]
  p = family.recognise(from_checkpoint, lr)
  assert p.shape == (2, 3)
  np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-6)
  np.testing.assert_allclose(family.recognise(from_bundle, lr), p, atol=1e-6)
  name, probabilities = family.classify(from_checkpoint, lr[1])  # one image, the classifier's costs
  np.testing.assert_allclose(probabilities, p[1], atol=1e-6)
  assert name == family.recognised(p[1], from_checkpoint.costs)[0]
  with pytest.raises(ValueError, match="raw_weights applies to estimators"):
    tasks.export_bundle(workdir, str(tmp_path / 'x.npz'), raw_weights=True)
  with pytest.raises(ValueError, match="holds a 's2k_estimator' model, not a 'family_classifier' one"):
    family.load(modelio.pretrained_estimator('gaussian', 4))


def test_next_steps_point_to_s2k_sr_with_it():
  lines = tasks.next_steps(family_config.get_config('smoke'), 'W')
  assert lines == ['s2k-sr your_photo.png --out sr_out --scale 4 --family auto --classifier W   # blind ×4 SR '
                   'with the shipped estimator of the kernel family it recognises']


def test_config_reads_the_lr_the_shipped_estimators_learn_from():
  """Reference: the estimators' :photo preset for every family (real-photo LR, Welch spectra of 96² LR
  crops, fresh motion trajectories), at every scale."""
  from configs import common  # pylint: disable=g-import-not-at-top
  photo = common.apply_preset(common.get_estimator_config(kernels.MIXED), 'photo')
  config = family_config.get_config('photo')
  assert config.degradation.to_dict() == photo.degradation.to_dict()
  assert (config.spectrum.size, config.spectrum.mode, config.data.hr_crop) == (64, 'welch', 384)
  config.degradation.scale = 2
  assert config.data.hr_crop == 192
  family.check_config(config)


def test_decision_weighs_what_running_the_wrong_estimator_costs():
  """Reference: the expected costs written out by hand."""
  p = np.array([0.3, 0.6, 0.1])
  assert family.decide(p) == 1  # no costs: the most probable family
  costs = np.array([[0, 16, 16], [2, 0, 6], [8, 10, 0]], float)
  # Expected costs: Gaussian 0.6·2 + 0.1·8 = 2.0, motion 0.3·16 + 0.1·10 = 5.8, disk 0.3·16 + 0.6·6 = 8.4.
  assert family.recognised(p, costs) == ('gaussian', pytest.approx(0.3))
  assert family.decide(np.array([0.02, 0.97, 0.01]), costs) == 1  # Gaussian 2.02, motion 0.42
  config = family_config.get_config('smoke')
  np.testing.assert_array_equal(family.decision_costs(config), 1 - np.eye(3))  # default: most probable
  for bad in (((0.0, 1.0), (1.0, 0.0)), ((1.0, 1.0, 1.0), (1.0, 0.0, 1.0), (1.0, 1.0, 0.0)),
              ((0.0, -1.0, 1.0), (1.0, 0.0, 1.0), (1.0, 1.0, 0.0)), ((0.0, 1.0), (1.0, 0.0, 1.0), (1.0, 1.0)),
              ((0.0,) * 3,) * 3):
    config.recognition.costs = bad
    with pytest.raises(ValueError, match='recognition.costs must be 3 rows of 3 costs'):
      family.make_batch_fn(config)


def test_recognition_scripts_score_kernels_and_restored_images(tmp_path, smoke_classifier_workdir,
                                                               smoke_usrnet_workdir):
  """scripts/eval_recognition.py --restorer: per image the family decided, the kernel PSNR of each shipped
  estimator, and the PSNR-Y of the image restored with each kernel and the true one ("auto" = the decided
  family's); scripts/family_separability.py: a disk and its closest Gaussian, one row per radius."""
  from configs import disk  # pylint: disable=g-import-not-at-top
  from s2k_jax import testsets  # pylint: disable=g-import-not-at-top
  scripts = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'scripts')
  testsets.generate(disk.get_config('cpu'), str(tmp_path / 'set'), seed=3, hr_crop=256, limit=1)
  run = subprocess.run([sys.executable, os.path.join(scripts, 'eval_recognition.py'), '--out',
                        str(tmp_path / 'out'), '--classifier', str(smoke_classifier_workdir), '--restorer',
                        str(smoke_usrnet_workdir), str(tmp_path / 'set')],
                       capture_output=True, text=True, check=False, timeout=600)
  assert run.returncode == 0, run.stderr
  with open(tmp_path / 'out' / 'recognition.csv', encoding='utf-8') as f:
    row, = list(csv.DictReader(f))
  assert row['family'] == 'disk' and row['recognised'] in family.FAMILIES
  assert float(row['auto']) == float(row[f'{row["recognised"]} estimator'])
  assert float(row['sr auto']) == float(row[f'sr {row["recognised"]} estimator'])
  assert float(row['sr named']) == float(row['sr disk estimator'])
  assert all(np.isfinite(float(row[k])) for k in row if k.startswith('sr '))
  assert 'PSNR-Y' in (tmp_path / 'out' / 'recognition.md').read_text(encoding='utf-8')
  run = subprocess.run([sys.executable, os.path.join(scripts, 'family_separability.py'), '--radii', '2'],
                       capture_output=True, text=True, check=False, timeout=300)
  assert run.returncode == 0, run.stderr
  row = next(line for line in run.stdout.splitlines() if line.startswith('| 2 |'))
  sigmas = [float(s) for s in row.split('|')[2].split('/')]
  assert all(1.0 < s < 1.3 for s in sigmas), row  # measured 1.13 / 1.15 on chelsea / coffee
