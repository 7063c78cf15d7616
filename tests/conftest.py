"""Test session set-up: 8 virtual CPU devices so sharded code paths run as on a pod slice, one on-disk
XLA compilation cache for the session, and :smoke models trained once for all workers.

Each `train_and_evaluate` (and each train.py / evaluate.py / s2k-sr subprocess) jits fresh closures and
so recompiles what an earlier run compiled: ≈ 20 s of the ≈ 25 s a :smoke run takes on 2 CPU cores. The
cache, shared by the pytest-xdist workers and the subprocesses they start (through the environment), loads
those programs instead. A cached executable is the same machine code, so no compared number changes. The
directory is made by the first process of the session and removed when it exits.
"""
import atexit
import fcntl
import os
import shutil
import tempfile

# Must happen before jax is imported anywhere in the test session. The test models are tiny, so XLA's
# compile time dominates the suite: LLVM at optimisation level 0 compiles much faster than the default
# (the whole suite on 2 cores: 11 min 42 s at level 1, 10 min 0 s at level 0; tests/test_train.py
# 190 → 129 s). The maths is the same IEEE float32, rounded in another order: the one bound it moved
# is documented at SR_SSIM_ATOL (tests/test_evaluation.py). XLA:CPU's older elemental loop emitters
# (`--xla_cpu_use_fusion_emitters=false`) compile a small model ~40% faster than the MLIR fusion emitters
# and run it ~30% slower: the suite, compile-bound (4300 XLA compilations took 506 of its 1460 worker-
# seconds), went from 683 to 576 s on 2 cores (2026-12-06). It moved one more bound, documented in
# test_gan_step_matches_a_two_forward_reference. The flag exists in jaxlib 0.10 (pyproject pins < 0.11);
# a jaxlib without it stops at start-up with "Unknown flags in XLA_FLAGS" naming it: drop it then.
# Benchmarks and real runs keep the defaults.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8 '
                      '--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:  # The controller (or a run without xdist).
  _cache = tempfile.mkdtemp(prefix='s2k-jax-test-xla-cache-')
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _cache
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0.1'

import pytest  # noqa: E402  (after the XLA flags above)


def pytest_collection_modifyitems(items):
  """The `slow` tests first, the rest in file order after them.

  pytest-xdist hands tests to its 2 workers in collection order; a minute-long test handed out last
  leaves the other worker idle for that minute. Long ones first, short ones fill the gaps at the end.
  Sorting is stable and the same on every worker (xdist checks that they collected the same list).
  """
  items.sort(key=lambda item: item.get_closest_marker('slow') is None)


def _trained_once(tmp_path_factory, name, make_config):
  """Trains `make_config()` once per test session, shared by the pytest-xdist workers (read-only).

  The first worker to ask trains it under a file lock in the session's common temporary folder; the
  others wait for it instead of training their own copy on the same 2 cores.
  """
  from s2k_jax import tasks  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.getbasetemp()
  if os.environ.get('PYTEST_XDIST_WORKER'):
    root = root.parent  # The workers' folders (popen-gw0, ...) share this parent.
  workdir = root / name
  with open(root / f'{name}.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # Released when the file closes.
    if not (root / f'{name}.done').exists():
      shutil.rmtree(workdir, ignore_errors=True)  # A run that failed part-way.
      tasks.train_and_evaluate(make_config(), str(workdir))
      (root / f'{name}.done').touch()
  return workdir


@pytest.fixture(scope='session')
def smoke_estimator_workdir(tmp_path_factory):
  """A Gaussian S2K estimator trained for the :smoke preset's 4 steps."""
  from configs import gaussian  # pylint: disable=g-import-not-at-top
  return _trained_once(tmp_path_factory, 'smoke_estimator', lambda: gaussian.get_config('smoke'))


@pytest.fixture(scope='session')
def smoke_restorer_workdir(tmp_path_factory):
  """A ×4 Gaussian SFTMD trained for the :smoke preset's 4 steps."""
  from configs import sftmd  # pylint: disable=g-import-not-at-top
  return _trained_once(tmp_path_factory, 'smoke_restorer', lambda: sftmd.get_config('gaussian_x4,smoke'))


@pytest.fixture(scope='session')
def smoke_usrnet_workdir(tmp_path_factory):
  """A mixed-family USRNet (×2/×3/×4) trained for the :smoke preset's 4 steps."""
  from configs import usrnet  # pylint: disable=g-import-not-at-top
  return _trained_once(tmp_path_factory, 'smoke_usrnet', lambda: usrnet.get_config('mixed,smoke'))


@pytest.fixture(scope='session')
def smoke_classifier_workdir(tmp_path_factory):
  """A ×4 kernel-family classifier trained for the :smoke preset's 4 steps."""
  from configs import family  # pylint: disable=g-import-not-at-top
  return _trained_once(tmp_path_factory, 'smoke_classifier', lambda: family.get_config('smoke'))
