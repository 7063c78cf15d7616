"""Tests for estimator loading (s2k_jax/estimator.py), kernel evaluation (s2k_jax/evaluation.py) and evaluate.py."""
import csv
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from configs import gaussian
from configs import motion
from s2k_jax import estimator
from s2k_jax import evaluation
from s2k_jax import kernels
from s2k_jax import loop
from s2k_jax import spectrum
from s2k_jax import testsets
from s2k_jax import visualize

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_kernel_errors_hand_computed():
  gt = np.zeros((1, 3, 3), np.float32)
  gt[0, 0, 0] = 1.0
  est = np.zeros((1, 3, 3), np.float32)
  est[0, 2, 2] = 1.0
  np.testing.assert_allclose(evaluation.kernel_errors(est, gt, flip_invariant=False), [2 / 9])
  np.testing.assert_allclose(evaluation.kernel_errors(est, gt, flip_invariant=True), [0.0], atol=1e-7)


def test_load_estimator_restores_the_trained_state(smoke_estimator_workdir):
  est = estimator.load_estimator(str(smoke_estimator_workdir))
  assert est.step == 4
  assert est.config.model.generator == 'unet-5-8'
  lr = np.random.default_rng(0).integers(0, 256, (2, 40, 52, 3), dtype=np.uint8)
  out = estimator.estimate_kernels(est, lr)
  k = np.asarray(out['kernel'])
  assert k.shape == (2, 15, 15)
  np.testing.assert_allclose(k.sum(axis=(1, 2)), 1.0, rtol=1e-5)
  assert (k >= 0).all()
  # Also from the checkpoints directory itself.
  assert estimator.load_estimator(str(smoke_estimator_workdir / 'checkpoints')).step == 4


def test_load_estimator_errors(tmp_path, smoke_estimator_workdir):
  with pytest.raises(FileNotFoundError, match='no such checkpoint directory'):
    estimator.load_estimator(str(tmp_path / 'missing'))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(FileNotFoundError, match='no checkpoint found'):
    estimator.load_estimator(str(tmp_path / 'empty'))
  # A checkpoint of another kind is refused by name.
  mngr = loop.checkpoint_manager(str(tmp_path / 'other'), 1)
  loop.save_checkpoint(mngr, 1, {'w': np.zeros(2)}, None, {'kind': 'sftmd_restorer'})
  mngr.wait_until_finished()
  with pytest.raises(ValueError, match="'sftmd_restorer' checkpoint, not a 's2k_estimator' one"):
    estimator.load_estimator(str(tmp_path / 'other'))


def test_evaluate_kernels_on_a_generated_set(tmp_path, smoke_estimator_workdir):
  est = estimator.load_estimator(str(smoke_estimator_workdir))
  testsets.generate(est.config, str(tmp_path / 'set'), seed=3, hr_crop=128)
  ts = testsets.load(str(tmp_path / 'set'))
  result = evaluation.evaluate_kernels(est, ts, batch_size=1)
  # The mean-kernel baseline error is recomputed independently here.
  mean_k = kernels.mean_kernel(est.config.degradation)
  np.testing.assert_allclose(result['mean_kernel'], np.mean(np.abs(mean_k - ts.kernels), axis=(1, 2)),
                             rtol=1e-5)
  summary = evaluation.write_report(result, est, ts, str(tmp_path / 'out'))
  assert json.loads((tmp_path / 'out' / 'kernels.json').read_text())['D_v'] == summary['D_v']
  rows = list(csv.DictReader(open(tmp_path / 'out' / 'kernels_per_image.csv')))
  assert [r['image'] for r in rows] == list(ts.names)
  assert '| S2K |' in (tmp_path / 'out' / 'kernels.md').read_text()
  assert (tmp_path / 'out' / 'kernels.png').stat().st_size > 0


def test_evaluate_refuses_a_test_set_of_another_family(tmp_path, smoke_estimator_workdir):
  est = estimator.load_estimator(str(smoke_estimator_workdir))
  testsets.generate(motion.get_config('smoke'), str(tmp_path / 'set'), seed=0, hr_crop=128, limit=1)
  with pytest.raises(ValueError, match='trained on 15² gaussian kernels'):
    evaluation.evaluate_kernels(est, testsets.load(str(tmp_path / 'set')))


@pytest.mark.slow
def test_evaluate_py_end_to_end(tmp_path, smoke_estimator_workdir):
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'evaluate.py'), '--workdir', str(smoke_estimator_workdir), '--out',
       str(tmp_path / 'out'), '--limit', '2'], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr
  assert 'S2K: D_v' in proc.stdout
  summary = json.loads((tmp_path / 'out' / 'kernels.json').read_text())
  assert summary['images'] == 2 and summary['family'] == 'gaussian'


def test_estimation_grid_layout():
  size, n = 32, 3
  maps = np.asarray(spectrum.kernel_to_map(kernels.sample_kernels(
      __import__('jax').random.key(0), n, gaussian.get_config('smoke').degradation), size))
  k = np.asarray(spectrum.map_to_kernel(maps, 15))
  grid = visualize.estimation_grid(maps, maps, maps, k, k)
  rep = 4  # 32-px tiles are enlarged to 128.
  assert grid.shape == (rep * (n * (size + 2) - 2), rep * (5 * (size + 2) - 2), 3)
  assert grid.dtype == np.uint8
