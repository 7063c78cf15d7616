"""Test session set-up: 8 virtual CPU devices so sharded code paths run as on a pod slice, and one
on-disk XLA compilation cache for the session.

Each `train_and_evaluate` (and each train.py / evaluate.py / s2k-sr subprocess) jits fresh closures and
so recompiles what an earlier run compiled: ≈ 20 s of the ≈ 25 s a :smoke run takes on 2 CPU cores. The
cache, shared by the pytest-xdist workers and the subprocesses they start (through the environment), loads
those programs instead. A cached executable is the same machine code, so no compared number changes. The
directory is made by the first process of the session and removed when it exits.
"""
import atexit
import os
import shutil
import tempfile

# Must happen before jax is imported anywhere in the test session.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:  # The controller (or a run without xdist).
  _cache = tempfile.mkdtemp(prefix='s2k-jax-test-xla-cache-')
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _cache
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0.1'

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
