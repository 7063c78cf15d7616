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
  from s2k_jax import train  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp('smoke_estimator')
  train.train_and_evaluate(gaussian.get_config('smoke'), str(workdir))
  return workdir


@pytest.fixture(scope='session')
def smoke_restorer_workdir(tmp_path_factory):
  """A ×4 Gaussian SFTMD trained for the :smoke preset's 4 steps, shared by the tests of one worker."""
  from configs import sftmd  # pylint: disable=g-import-not-at-top
  from s2k_jax import train  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp('smoke_restorer')
  train.train_and_evaluate(sftmd.get_config('gaussian_x4,smoke'), str(workdir))
  return workdir
