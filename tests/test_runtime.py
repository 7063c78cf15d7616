"""Tests for s2k_jax/runtime.py: the command lines' start-up, multi-process settings above all."""
import os
import subprocess
import sys
import time

import jax
import ml_collections
import pytest

from s2k_jax import runtime


def train_section(**fields):
  base = dict(distributed=True, coordinator_address='', num_processes=0, process_id=-1)
  return ml_collections.ConfigDict({**base, **fields})


def test_cluster_settings_are_all_or_nothing_and_checked_by_name():
  assert runtime.cluster_settings(train_section()) is None  # auto-detection
  assert runtime.cluster_settings(train_section(distributed=False)) is None
  assert runtime.cluster_settings(train_section(coordinator_address='10.0.0.2:1234', num_processes=4,
                                                process_id=3)) == dict(
      coordinator_address='10.0.0.2:1234', num_processes=4, process_id=3)
  for fields, match in (
      (dict(distributed=False, num_processes=2), 'train.num_processes is set but train.distributed is False'),
      (dict(coordinator_address='h:1', num_processes=2), 'missing: train.process_id'),
      (dict(coordinator_address='h', num_processes=2, process_id=0), "'h' must be HOST:PORT"),
      (dict(coordinator_address='h:99999', num_processes=2, process_id=0), 'must be HOST:PORT'),
      (dict(coordinator_address='h:1', num_processes=-2, process_id=0), 'train.num_processes=-2 must be at least 1'),
      (dict(coordinator_address='h:1', num_processes=2, process_id=2), r'train.process_id=2 must be in \[0, 2\)')):
    with pytest.raises(ValueError, match=match):
      runtime.cluster_settings(train_section(**fields))


def test_distributed_start_up_touches_no_backend_first(monkeypatch):
  """jax.distributed.initialize() must run before anything starts a backend (process_count does)."""
  calls = []
  monkeypatch.setattr(jax.distributed, 'is_initialized', lambda: bool(calls))
  monkeypatch.setattr(jax.distributed, 'initialize', lambda **kwargs: calls.append(('initialize', kwargs)))
  monkeypatch.setattr(jax.config, 'update', lambda *args: calls.append(args))
  monkeypatch.setattr(jax, 'process_count', lambda: calls.append('process_count') or 1)
  runtime.maybe_initialize_distributed(train_section(distributed=False))
  assert calls == []
  runtime.maybe_initialize_distributed(train_section(coordinator_address='127.0.0.1:5', num_processes=1,
                                                     process_id=0))
  runtime.maybe_initialize_distributed(train_section())  # the driver calls it again: a no-op
  assert calls == [('jax_cpu_collectives_implementation', 'gloo'), ('initialize', dict(
      coordinator_address='127.0.0.1:5', num_processes=1, process_id=0,
      initialization_timeout=runtime.CONNECT_TIMEOUT, heartbeat_timeout_seconds=runtime.HEARTBEAT_TIMEOUT))]


def _start_up(settings: dict, timeout: int) -> subprocess.CompletedProcess:
  code = ('import ml_collections\nfrom s2k_jax import runtime\n'
          f'runtime.CONNECT_TIMEOUT = {timeout}\n'
          f'runtime.exit_on_user_error(lambda: runtime.maybe_initialize_distributed('
          f'ml_collections.ConfigDict({settings!r})))\n')
  return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, JAX_PLATFORMS='cpu'), check=False)


def test_an_unreachable_coordinator_or_no_cluster_is_a_clear_error_in_time():
  began = time.monotonic()
  run = _start_up(dict(train_section(coordinator_address='127.0.0.1:1', num_processes=2, process_id=1)), 3)
  assert run.returncode == 1 and time.monotonic() - began < 60
  assert 'no coordinator answered at train.coordinator_address=127.0.0.1:1 within 3 s' in run.stderr
  assert 'Traceback' not in run.stderr
  run = _start_up(dict(train_section(coordinator_address='no-such-host.invalid:5', num_processes=2,
                                     process_id=1)), 3)
  assert run.returncode == 1 and "the host 'no-such-host.invalid' does not resolve" in run.stderr
  run = _start_up(dict(train_section()), 3)  # nothing to auto-detect on this machine
  assert run.returncode == 1 and 'multi-process start-up failed (no train.coordinator_address' in run.stderr
