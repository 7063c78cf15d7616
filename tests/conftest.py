"""Test session set-up: 8 virtual CPU devices so sharded code paths run as on a pod slice."""
import os

# Must happen before jax is imported anywhere in the test session.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import pytest  # noqa: E402  (after the XLA flags above)


@pytest.fixture(scope='session')
def smoke_estimator_workdir(tmp_path_factory):
  """A Gaussian S2K estimator trained for the :smoke preset's 4 steps, shared by the tests of one worker."""
  from configs import gaussian  # pylint: disable=g-import-not-at-top
  from s2k_jax import tasks  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp('smoke_estimator')
  tasks.train_and_evaluate(gaussian.get_config('smoke'), str(workdir))
  return workdir


@pytest.fixture(scope='session')
def smoke_restorer_workdir(tmp_path_factory):
  """A ×4 Gaussian SFTMD trained for the :smoke preset's 4 steps, shared by the tests of one worker."""
  from configs import sftmd  # pylint: disable=g-import-not-at-top
  from s2k_jax import tasks  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp('smoke_restorer')
  tasks.train_and_evaluate(sftmd.get_config('gaussian_x4,smoke'), str(workdir))
  return workdir


@pytest.fixture(scope='session')
def smoke_usrnet_workdir(tmp_path_factory):
  """A mixed-family USRNet (×2/×3/×4) trained for the :smoke preset's 4 steps, shared per worker."""
  from configs import usrnet  # pylint: disable=g-import-not-at-top
  from s2k_jax import tasks  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp('smoke_usrnet')
  tasks.train_and_evaluate(usrnet.get_config('mixed,smoke'), str(workdir))
  return workdir


@pytest.fixture(scope='session')
def kernel_aware_restorer_workdir(tmp_path_factory):
  """A small ×4 Gaussian SFTMD trained long enough (2000 steps) to use the kernel code.

  Trained by `train.py` in a subprocess on one CPU device: 8-way sharding of its tiny batches on the
  8 virtual devices of this session would more than double the minute it takes.
  """
  import pathlib  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = pathlib.Path(__file__).resolve().parents[1]
  workdir = tmp_path_factory.mktemp('kernel_aware_restorer')
  overrides = ['restorer.features=16', 'restorer.num_blocks=2', 'train.num_steps=2000',
               'train.learning_rate=0.0005', 'train.schedule=constant', 'train.log_every=100',
               'train.eval_every=2000', 'train.checkpoint_every=2000',
               'data.grayscale=keep']  # the 11 photos these margins were measured with
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  proc = subprocess.run([sys.executable, str(root / 'train.py'), '--config',
                         'configs/sftmd.py:gaussian_x4,smoke', '--workdir', str(workdir)] +
                        [f'--config.{o}' for o in overrides], cwd=root, env=env, capture_output=True,
                        text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir
