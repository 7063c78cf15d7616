"""Tests for the estimator training driver (s2k_jax/train.py, s2k_jax/loop.py) on the :smoke preset."""
import functools
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from configs import gaussian
from configs import motion
from s2k_jax import data
from s2k_jax import loop
from s2k_jax import estimator
from s2k_jax import tasks
from s2k_jax import modelio

ROOT = pathlib.Path(__file__).resolve().parents[1]


def smoke_config(**overrides):
  config = gaussian.get_config('smoke')
  for key, value in overrides.items():
    section, name = key.split('.')
    config[section][name] = value
  return config


def fixed_batch(config, mesh):
  hr = loop.shard_batch(data.create_eval_batch(config, config.train.batch_size), mesh)['hr']
  return jax.jit(estimator.make_batch_fn(config))(hr, jax.random.key(7))


def params_of(state):
  return jax.device_get({'gen': state['gen'].params, 'disc': state['disc'].params})


def assert_trees_close(a, b, atol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


def test_steps_lower_the_l1_loss_on_a_fixed_batch():
  config = smoke_config()
  mesh = loop.make_mesh()
  batch = fixed_batch(config, mesh)
  state = estimator.create_train_state(config, jax.random.key(0))
  step = jax.jit(functools.partial(estimator.train_step, config=config))
  key = jax.random.key(1)
  history = []
  for _ in range(8):
    state, metrics = step(state, batch, key)
    history.append(float(metrics['l1']))
  assert all(np.isfinite(history))
  assert history[-1] < 0.92 * history[0], history
  assert np.all(np.diff(history[:4]) < 0), history
  assert int(state['gen'].step) == 8 and int(state['disc'].step) == 8


def test_one_device_and_eight_devices_give_the_same_step():
  """Same parameters and losses after two steps on 1 and on 8 devices (≤ 1e-5).

  Adam's first steps are ≈ lr·g/(|g| + ε): with ε = 1e-8 a coordinate whose gradient is ~1e-7 turns a
  float reduction-order difference (the sum over 8 shards is ordered differently) into a 1e-5 parameter
  difference. ε = 1e-4 keeps the comparison about the data-parallel maths, which is what this tests.
  """
  assert jax.device_count() == 8, 'tests/conftest.py forces 8 CPU devices'
  config = smoke_config(**{'train.eps': 1e-4})
  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = Mesh(np.asarray(devices), ('data',))
    rep, shard = loop.replicated(mesh), loop.data_sharded(mesh)
    state = jax.jit(functools.partial(estimator.create_train_state, config), out_shardings=rep)(
        jax.random.key(0))
    batch = jax.device_put(fixed_batch(config, Mesh(np.asarray(jax.devices()[:1]), ('data',))), shard)
    step = jax.jit(functools.partial(estimator.train_step, config=config),
                   in_shardings=(rep, shard, rep), out_shardings=(rep, rep))
    state, metrics1 = step(state, batch, jax.random.key(1))
    state, metrics2 = step(state, batch, jax.random.key(1))
    results.append((params_of(state), jax.device_get((metrics1, metrics2))))
  assert_trees_close(results[0][0], results[1][0], atol=1e-5)
  for one, eight in zip(results[0][1], results[1][1]):
    for k in one:
      np.testing.assert_allclose(one[k], eight[k], rtol=1e-5, atol=1e-6)


def test_resume_is_exact(tmp_path):
  straight = tasks.train_and_evaluate(smoke_config(**{'train.num_steps': 4}), str(tmp_path / 'a'))
  tasks.train_and_evaluate(smoke_config(**{'train.num_steps': 2}), str(tmp_path / 'b'))
  resumed = tasks.train_and_evaluate(smoke_config(**{'train.num_steps': 4}), str(tmp_path / 'b'))
  a, b = params_of(straight), params_of(resumed)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  steps = sorted(int(p.name) for p in (tmp_path / 'b' / 'checkpoints').iterdir() if p.name.isdigit())
  assert steps[-1] == 4
  meta = modelio.read_meta(str(tmp_path / 'b' / 'checkpoints'))
  assert meta['kind'] == estimator.CHECKPOINT_KIND
  assert meta['config']['model']['generator'] == 'unet-5-8'
  assert 'kernel_map' in meta


def test_nan_loss_stops_with_a_clear_message(tmp_path):
  tasks.train_and_evaluate(smoke_config(**{'train.num_steps': 2}), str(tmp_path))
  config = smoke_config(**{'train.learning_rate': float('nan'), 'train.num_steps': 4})
  # The D update of step 3 makes D NaN, so step 3's generator loss is the first non-finite value.
  with pytest.raises(loop.NonFiniteLossError,
                     match=r'non-finite loss at step 3: .*g_loss.*last good checkpoint is step 2'):
    tasks.train_and_evaluate(config, str(tmp_path))
  steps = sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir() if p.name.isdigit())
  assert steps == [2], 'a non-finite state must never be checkpointed'
  with pytest.raises(loop.NonFiniteLossError, match=r'step 1: .*no checkpoint was saved yet'):
    tasks.train_and_evaluate(config, str(tmp_path / 'fresh'))


def test_batch_not_divisible_by_devices_is_refused(tmp_path):
  with pytest.raises(ValueError, match='not divisible by the 8 devices'):
    tasks.train_and_evaluate(smoke_config(**{'train.batch_size': 4}), str(tmp_path))


def _run_train(args, **kw):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2', JAX_PLATFORMS='cpu')
  return subprocess.Popen([sys.executable, str(ROOT / 'train.py'), *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


@pytest.mark.slow
def test_train_py_end_to_end(tmp_path):
  proc = _run_train(['--config', 'configs/gaussian.py:smoke', '--workdir', str(tmp_path)])
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out
  records = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert {r['step'] for r in records} >= {1, 2, 3, 4}
  assert any('eval/kernel_mae' in r for r in records)
  assert (tmp_path / 'checkpoints' / '4').is_dir()
  assert sorted(p.name for p in (tmp_path / 'samples').iterdir()) == ['step_0000002.png',
                                                                      'step_0000004.png']


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
  proc = _run_train(['--config', 'configs/gaussian.py:smoke', '--workdir', str(tmp_path),
                     '--config.train.num_steps=100000', '--config.train.checkpoint_every=100000',
                     '--config.train.eval_every=100000'])
  metrics = tmp_path / 'metrics.jsonl'
  deadline = time.time() + 300
  while time.time() < deadline and not (metrics.exists() and metrics.read_text().count('\n') >= 3):
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, out
  steps = [int(p.name) for p in (tmp_path / 'checkpoints').iterdir() if p.name.isdigit()]
  assert len(steps) == 1 and steps[0] >= 3, (steps, out)
  assert 'after saving a checkpoint' in out


def test_motion_config_uses_flip_invariant_l1():
  assert motion.get_config('smoke').train.flip_invariant_l1
  assert not gaussian.get_config('smoke').train.flip_invariant_l1


@pytest.mark.parametrize('schedule, at_half, at_end', [('constant', 1.0, 1.0), ('cosine', 0.5, 0.0),
                                                         ('linear_decay', 1.0, 0.0)])
def test_learning_rate_schedules(schedule, at_half, at_end):
  """The Adam step size over training, read back from a 1-D quadratic's updates (Adam's step ≈ lr)."""
  config = smoke_config(**{'train.schedule': schedule, 'train.num_steps': 100, 'train.learning_rate': 0.1})
  tx = loop.create_optimizer(config)
  params = jnp.zeros(())
  state = tx.init(params)
  sizes = []
  for _ in range(101):
    updates, state = tx.update(jnp.ones(()), state, params)  # Constant gradient: Adam's step = lr.
    sizes.append(-float(updates))
  np.testing.assert_allclose([sizes[0], sizes[50], sizes[100]], [0.1, 0.1 * at_half, 0.1 * at_end],
                             atol=2e-3)


def test_unknown_schedule_is_refused():
  with pytest.raises(ValueError, match="train.schedule must be"):
    loop.create_optimizer(smoke_config(**{'train.schedule': 'step'}))


def test_train_py_reports_bad_input_without_a_traceback(tmp_path):
  # Paper-scale 1024² crops are larger than the bundled photos: a clear error naming them, exit 1.
  proc = _run_train(['--config', 'configs/gaussian.py', '--workdir', str(tmp_path)])
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 1, out
  assert 'error:' in out and 'smaller than the 1024×1024 crop' in out
  assert 'Traceback' not in out
