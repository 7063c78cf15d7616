"""Tests for training the estimator (s2k_jax/estimator.py) and the restorer through the driver (s2k_jax/loop.py, s2k_jax/tasks.py) on the :smoke preset."""
import functools
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from jax.sharding import Mesh

from configs import gaussian
from configs import sftmd
from configs import usrnet
from s2k_jax import checkpoints
from s2k_jax import data
from s2k_jax import loop
from s2k_jax import runtime
from s2k_jax import sharding
from s2k_jax import tasks
from s2k_jax.restorers import sftmd as sftmd_restorer
from s2k_jax.restorers import usrnet as usrnet_restorer
from s2k_jax import estimator
from s2k_jax.models import unet
from s2k_jax import modelio

ROOT = pathlib.Path(__file__).resolve().parents[1]


def smoke_config(**overrides):
  config = gaussian.get_config('smoke')
  for key, value in overrides.items():
    section, name = key.split('.')
    config[section][name] = value
  return config


def fixed_batch(config, mesh):
  hr = sharding.shard_batch(data.create_eval_batch(config, config.train.batch_size), mesh)['hr']
  return jax.jit(estimator.make_batch_fn(config))(hr, jax.random.key(7))


def init_state(config, mesh):
  """The estimator's initial train state replicated over `mesh`, as the driver holds it: a step on a batch
  sharded over the mesh returns the state as it took it (a state on one device would compile it twice)."""
  return jax.jit(functools.partial(estimator.create_train_state, config),
                 out_shardings=sharding.replicated(mesh))(jax.random.key(0))


def params_of(state):
  return jax.device_get({'gen': state['gen'].params, 'disc': state['disc'].params})


def assert_trees_close(a, b, atol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


@pytest.mark.parametrize('kernel_loss', ['l1', 'l2'])
def test_steps_lower_the_l1_loss_on_a_fixed_batch(kernel_loss):
  config = smoke_config(**{'train.kernel_loss': kernel_loss})
  mesh = sharding.make_mesh()
  batch = fixed_batch(config, mesh)
  state = init_state(config, mesh)
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


def test_the_cpu_step_options_change_no_number():
  """loop.train_compiler_options only moves convolutions from YNNPACK to XLA's own: two :smoke steps
  give the same losses and parameters within 1e-5 (float32 rounded in another order)."""
  config = smoke_config()
  batch = fixed_batch(config, sharding.make_mesh())
  init = jax.jit(functools.partial(estimator.create_train_state, config))
  runs, programs = [], []
  for options in (None, loop.train_compiler_options('cpu')):
    assert options is None or 'LIBRARY_FUSION_TYPE_REDUCE' in options[loop.YNN_FUSION_FLAG]
    state = init(jax.random.key(0))
    # The compiled program both runs and is read: jit's own call would compile it a second time.
    step = jax.jit(functools.partial(estimator.train_step, config=config),
                   compiler_options=options).lower(state, batch, jax.random.key(1)).compile()
    programs.append(step.as_text())
    losses = []
    for t in range(2):
      state, metrics = step(state, batch, jax.random.key(t))
      losses.append(jax.device_get(metrics))
    runs.append((losses, params_of(state)))
  assert programs[0].count('__ynn_fusion') > programs[1].count('__ynn_fusion')  # it compiled otherwise
  for a, b in zip(runs[0][0], runs[1][0]):
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-5, err_msg=key)
  assert_trees_close(runs[0][1], runs[1][1], atol=1e-5)


@pytest.mark.slow
def test_the_generator_moving_average_follows_its_weights_and_is_what_inference_reads(tmp_path, monkeypatch):
  """train.ema_decay: after each step ema = d·ema + (1 − d)·params with d = min(decay, (1 + t)/(10 + t)),
  from the initial weights (recomputed here step by step); the raw weights train exactly as without an
  average; eval maps, `load` and the exported bundle read the average; a decay outside [0, 1) is refused."""
  mesh = sharding.make_mesh()
  runs = {}
  for decay in (0.0, 0.5):
    config = smoke_config(**{'train.ema_decay': decay})
    batch = fixed_batch(config, mesh)
    state = init_state(config, mesh)
    step = jax.jit(functools.partial(estimator.train_step, config=config))
    expected = jax.device_get(state['gen'].params) if decay else None
    assert (estimator.EMA in state) == (decay > 0)
    for t in range(1, 4):
      state, _ = step(state, batch, jax.random.key(1))
      if decay:
        d = min(decay, (1 + t) / (10 + t))
        expected = jax.tree.map(lambda e, p: d * e + (1 - d) * np.asarray(p), expected,
                                jax.device_get(state['gen'].params))
    runs[decay] = state
  averaged, ema = runs[0.5]['gen'], runs[0.5][estimator.EMA]
  assert_trees_close(ema, expected, atol=1e-6)
  assert_trees_close(averaged.params, runs[0.0]['gen'].params, atol=1e-6)
  assert max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in
             zip(jax.tree.leaves(ema), jax.tree.leaves(averaged.params))) > 1e-4
  x = batch['inputs']
  with_ema = averaged.apply_fn({'params': ema, 'batch_stats': averaged.batch_stats}, x, train=False)
  np.testing.assert_array_equal(np.asarray(estimator.estimate_maps(runs[0.5], x)), np.asarray(with_ema))

  config = smoke_config(**{'train.ema_decay': 0.5, 'train.num_steps': 2})
  trained = tasks.train_and_evaluate(config, str(tmp_path / 'ema'))
  monkeypatch.setattr(estimator, 'PRECISE_BN_BATCHES', 4)  # 50 in use; a few keep the test short.
  loaded = estimator.load(str(tmp_path / 'ema'))
  assert_trees_equal(loaded.state['gen'].params, trained[estimator.EMA])
  # ... with BatchNorm statistics of its own, from training batches, not the raw weights' running ones.
  gen = trained['gen'].replace(params=trained[estimator.EMA])
  precise = estimator.precise_batch_stats(
      gen, estimator.training_inputs(config, estimator.PRECISE_BN_BATCHES), jax.random.key(config.seed + 3))
  assert_trees_close(loaded.state['gen'].batch_stats, precise, atol=1e-6)
  assert not np.allclose(jax.tree.leaves(precise)[0], jax.tree.leaves(trained['gen'].batch_stats)[0])
  bundle = tasks.export_bundle(str(tmp_path / 'ema'), str(tmp_path / 'ema.npz'), dtype='float32')
  _, trees = modelio.read_bundle(bundle)
  assert_trees_equal(trees['params'], trained[estimator.EMA])
  assert_trees_close(trees['batch_stats'], precise, atol=1e-6)
  assert_trees_equal(estimator.load(bundle).state['gen'].params, trained[estimator.EMA])
  raw = tasks.export_bundle(str(tmp_path / 'ema'), str(tmp_path / 'raw.npz'), dtype='float32', raw_weights=True)
  _, trees = modelio.read_bundle(raw)
  assert_trees_equal(trees['params'], trained['gen'].params)
  assert_trees_equal(trees['batch_stats'], trained['gen'].batch_stats)
  with pytest.raises(ValueError, match=r'raw.npz: raw weights were asked for, but it holds no moving average'):
    estimator.load(raw, average=False)
  with pytest.raises(ValueError, match=r'train.ema_decay must be in \[0, 1\).*got 1.0'):
    tasks.train_and_evaluate(smoke_config(**{'train.ema_decay': 1.0}), str(tmp_path / 'bad'))
  # Resuming with the average switched off (or on) is named, not an orbax tree dump.
  off = smoke_config(**{'train.num_steps': 3})
  with pytest.raises(ValueError, match=r'ema/checkpoints: the checkpoint at step 2 holds another train state '
                     r'than this config builds \(differing: gen_ema.*train.ema_decay switched on or off'):
    tasks.train_and_evaluate(off, str(tmp_path / 'ema'))


def test_precise_batch_stats_are_the_population_statistics_of_the_batches():
  """One batch: eval mode with its statistics = training mode on it (the smoke U-Net has no dropout),
  at every BatchNorm layer at once; two batches of 8: at the first layer (whose input no BatchNorm
  has normalised yet, per half) the statistics of the 16 samples together."""
  config = smoke_config(**{'train.batch_size': 16})
  inputs = fixed_batch(config, sharding.make_mesh())['inputs']
  gen = jax.jit(functools.partial(estimator.create_train_state, config))(jax.random.key(0))['gen']
  key = jax.random.key(5)
  stats = estimator.precise_batch_stats(gen, [inputs], key)
  evaluated = jax.jit(functools.partial(gen.apply_fn, train=False))(
      {'params': gen.params, 'batch_stats': stats}, inputs)
  trained, _ = jax.jit(functools.partial(gen.apply_fn, train=True, mutable=['batch_stats']))(
      {'params': gen.params, 'batch_stats': gen.batch_stats}, inputs)
  np.testing.assert_allclose(np.asarray(evaluated), np.asarray(trained), atol=2e-5, rtol=0)
  halves = estimator.precise_batch_stats(gen, [inputs[:8], inputs[8:]], key)
  assert_trees_close(halves['BatchNorm_0'], stats['BatchNorm_0'], atol=1e-6)
  with pytest.raises(ValueError, match='at least one input batch'):
    estimator.precise_batch_stats(gen, [], key)


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
    rep, shard = sharding.replicated(mesh), sharding.data_sharded(mesh)
    state = init_state(config, mesh)
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


def reference_gan_step(gen, disc, tx, state, batch, key, *, weights):
  """Paper Eq. 12 then Eq. 11 written out plainly: two generator forwards, `jax.grad` of each loss.

  `state` = {'step', 'gen', 'disc'}, each model a dict of params, batch_stats and opt_state. The
  discriminator's running statistics follow its fake then its real call in ℓ_D; its call inside ℓ_G
  (through the updated D) is made with `mutable` but its statistics are dropped; the generator's come
  from the forward inside ℓ_G. Dropout draws from `fold_in(key, step)`, as the training step does.
  (PyTorch pix2pix would move D's statistics a third time in ℓ_G; nothing reads them, D only ever
  runs in training mode, but the checkpoints hold them, so which calls move them is pinned.)
  """
  g, d = state['gen'], state['disc']
  cond, target = batch['inputs'], batch['kernel_map']
  rngs = {'dropout': jax.random.fold_in(key, state['step'])}

  def generator(params):
    out, new = gen.apply({'params': params, 'batch_stats': g['batch_stats']}, cond, train=True,
                         rngs=rngs, mutable=['batch_stats'])
    return out, new['batch_stats']

  def discriminator(params, stats, kernel_map):
    out, new = disc.apply({'params': params, 'batch_stats': stats}, cond, kernel_map, train=True,
                          mutable=['batch_stats'])
    return out, new['batch_stats']

  def d_loss_fn(d_params):  # Eq. 12: ℓ_D = D(s; G(s))² + [D(s; k) − 1]².
    fake, _ = generator(g['params'])  # Forward 1; its gradient is not asked for.
    fake_logits, stats = discriminator(d_params, d['batch_stats'], fake)
    real_logits, stats = discriminator(d_params, stats, target)
    loss = jnp.mean(fake_logits**2) + jnp.mean((real_logits - 1.0)**2)
    return loss, (stats, jnp.mean(real_logits), jnp.mean(fake_logits))

  (d_loss, (d_stats, d_real, d_fake)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
      d['params'])
  updates, d_opt = tx.update(d_grads, d['opt_state'], d['params'])
  d = dict(params=optax.apply_updates(d['params'], updates), batch_stats=d_stats, opt_state=d_opt)

  def g_loss_fn(g_params):  # Eq. 11 through the updated D: λ1·L1 + λ2·[D(s; G(s)) − 1]² + λ3·TV.
    fake, stats = generator(g_params)  # Forward 2.
    fake_logits, _ = discriminator(d['params'], d['batch_stats'], fake)
    l1 = jnp.mean(jnp.abs(target - fake))
    adv = jnp.mean((fake_logits - 1.0)**2)
    tv = jnp.mean(jnp.abs(jnp.diff(fake, axis=1))) + jnp.mean(jnp.abs(jnp.diff(fake, axis=2)))
    loss = weights[0] * l1 + weights[1] * adv + weights[2] * tv
    return loss, (stats, dict(l1=l1, adv=adv, tv=tv))

  (g_loss, (g_stats, terms)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(g['params'])
  updates, g_opt = tx.update(g_grads, g['opt_state'], g['params'])
  g = dict(params=optax.apply_updates(g['params'], updates), batch_stats=g_stats, opt_state=g_opt)
  metrics = dict(g_loss=g_loss, d_loss=d_loss, d_real=d_real, d_fake=d_fake, **terms)
  return dict(step=state['step'] + 1, gen=g, disc=d), metrics


def assert_trees_match(actual, expected, rtol):
  """Same structure; every leaf within rtol of the largest |value| of its expected leaf."""
  actual, expected = jax.device_get((actual, expected))
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(actual)[0], jax.tree.leaves(expected)):
    y = np.asarray(y)
    np.testing.assert_allclose(np.asarray(x), y, rtol=0, atol=rtol * np.max(np.abs(y)),
                               err_msg=jax.tree_util.keystr(path))


@pytest.mark.slow
def test_gan_step_matches_a_two_forward_reference(monkeypatch):
  """`train_step` = the plain two-forward GAN step of Eq. 11–12 (`reference_gan_step`), two steps.

  Reference: `reference_gan_step` above (written from the paper's losses, independent of
  s2k_jax/losses.py and of the single-forward VJP), with its own `optax.adam` from the config values.
  Compared: both models' parameters, BatchNorm statistics, Adam states and step counts after two
  steps on two different batches, and every loss of both steps.

  The :smoke U-Net has no dropout (pix2pix puts it only in middle blocks at the width cap, none for 3
  downs), so its cap is lowered to the base width here: its middle up block then has dropout, and the
  check that a different key changes the step shows that the dropout keys of both sides must agree.

  Tolerance: the two compute the same float32 arithmetic, fused and reduced in different orders. 1e-6
  of each leaf's scale for the losses, BatchNorm statistics and Adam moments; 4e-6 for the parameters:
  with the tests' XLA flags (tests/conftest.py) two of the 2048 weights of one transposed conv differ by
  1.9e-6 of that leaf's largest value after the two Adam updates. ε = 1e-4 (as in the 1-vs-8-device
  test) keeps Adam's first steps, ≈ lr·g/(|g| + ε), from turning a rounding-level difference in a
  near-zero gradient into a flipped lr-sized update.
  """
  make_generator = unet.make_generator
  monkeypatch.setattr(unet, 'make_generator', lambda name, **kwargs: make_generator(name, max_mult=1, **kwargs))
  config = smoke_config(**{'train.eps': 1e-4})
  hr = jnp.asarray(data.create_eval_batch(config, config.train.batch_size)['hr'])  # One device.
  make_batch = jax.jit(estimator.make_batch_fn(config))
  batches = [make_batch(hr, jax.random.key(7)), make_batch(hr, jax.random.key(8))]
  key = jax.random.key(1)

  state = jax.jit(functools.partial(estimator.create_train_state, config))(jax.random.key(0))
  gen, disc = estimator.create_models(config)
  t = config.train
  tx = optax.adam(t.learning_rate, b1=t.b1, b2=t.b2, eps=t.eps)
  ref = dict(step=0, **{name: dict(params=s.params, batch_stats=s.batch_stats,
                                   opt_state=tx.init(s.params)) for name, s in state.items()})
  step = jax.jit(functools.partial(estimator.train_step, config=config))
  ref_step = jax.jit(functools.partial(reference_gan_step, gen, disc, tx,
                                       weights=tuple(t.loss_weights)))

  first = ref
  for batch in batches:
    state, metrics = step(state, batch, key)
    ref, ref_metrics = ref_step(ref, batch, key)
    assert_trees_match(metrics, ref_metrics, rtol=1e-6)
  # Dropout is live: another key gives another first step, so the keys of both sides had to agree.
  assert (float(ref_step(first, batches[0], jax.random.key(2))[1]['g_loss']) !=
          float(ref_step(first, batches[0], key)[1]['g_loss']))
  for name in ('gen', 'disc'):
    assert int(state[name].step) == int(ref['step']) == 2
    ours, theirs = state[name], ref[name]
    # Gradients are summed in another order by each CPU's fusions, and Adam divides by √v: on a 2-core
    # Xeon (2026-12-07) the moments differed by 1.7e-6 and the parameters by 5e-6 of their largest value.
    # A wrong step (another loss, key or order of updates) moves them by ~lr = 1e-3, far above 1e-5.
    assert_trees_match((ours.batch_stats, ours.opt_state), (theirs['batch_stats'], theirs['opt_state']),
                       rtol=1e-5)
    assert_trees_match(ours.params, theirs['params'], rtol=1e-5)


def resume_config(model, num_steps):
  if model == 'estimator':
    config = gaussian.get_config('smoke')
    config.train.ema_decay = 0.9  # The generator's moving average is state too: it must resume exactly.
  elif model == 'usrnet':  # Steps cycle over its 3 scales: the resumed run must pick up the cycle.
    config = usrnet.get_config('gaussian,smoke')
    config.train.schedule = 'constant'
  else:
    config = sftmd.get_config('gaussian_x4,smoke')
    # A cosine schedule is a function of num_steps: a run stopped cleanly at 2 of 2 steps took its
    # second step at another rate than a 4-step run does, so resuming it cannot equal the 4-step run.
    config.train.schedule = 'constant'
  config.train.num_steps = num_steps
  return config


class SigtermAtStep(loop.MetricWriter):
  """Sends this process a real SIGTERM while the training metrics of step `stop_at` are written."""
  stop_at = 3

  def write(self, step, scalars):
    super().write(step, scalars)
    if step == self.stop_at and any(k.startswith('train/') for k in scalars):
      handler = signal.getsignal(signal.SIGTERM)
      assert callable(handler), 'the preemption guard must handle SIGTERM (else it ends pytest)'
      os.kill(os.getpid(), signal.SIGTERM)


def checkpoint_steps(workdir):
  return sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir() if p.name.isdigit())


def batches_after_checkpoint(config, workdir, step, n):
  """The next n host batches of a fresh training iterator restored from checkpoint `step`."""
  iterator = data.create_train_iterator(config)
  mngr = ocp.CheckpointManager(str(workdir / 'checkpoints'), item_names=('data_iter',),
                               options=ocp.CheckpointManagerOptions(create=False))
  mngr.restore(step, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointRestore(iterator)))
  mngr.close()
  return [next(iterator)['hr'] for _ in range(n)]


def assert_trees_equal(actual, expected):
  """Same leaves at the same paths, bit for bit (static fields such as apply_fn are not compared)."""
  actual, expected = (jax.tree_util.tree_flatten_with_path(jax.device_get(t))[0]
                      for t in (actual, expected))
  assert [p for p, _ in actual] == [p for p, _ in expected]
  for (path, x), (_, y) in zip(actual, expected):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


@pytest.mark.slow
@pytest.mark.parametrize('model', ['estimator', 'restorer', 'usrnet'])
def test_resume_after_a_clean_stop_and_a_sigterm_is_exact(model, tmp_path, monkeypatch):
  """Stopped cleanly at step 2 and by SIGTERM at step 3, resumed twice: the 4-step run's exact state.

  References: an uninterrupted 4-step run in another workdir, for the whole final train state (every
  parameter, BatchNorm statistic, Adam moment and count, step; the restorer's PCA basis) bit for bit;
  and a fresh training iterator read by hand, for the data position saved at each stop and at the end
  (a restored iterator must yield the batches the uninterrupted run reads next).
  """
  assert threading.current_thread() is threading.main_thread(), 'SIGTERM handlers need the main thread'
  config = resume_config(model, 4)
  iterator = data.create_train_iterator(config)
  by_hand = [next(iterator)['hr'] for _ in range(5)]  # Batches of steps 1..4, then the next one.
  straight = tasks.train_and_evaluate(config, str(tmp_path / 'straight'))

  workdir = tmp_path / 'stopped'
  tasks.train_and_evaluate(resume_config(model, 2), str(workdir))  # Clean stop: the run ends at 2.
  assert checkpoint_steps(workdir) == [2]
  np.testing.assert_array_equal(batches_after_checkpoint(config, workdir, 2, 2), by_hand[2:4])

  with monkeypatch.context() as patch:
    patch.setattr(loop, 'MetricWriter', SigtermAtStep)
    stopped = tasks.train_and_evaluate(config, str(workdir))  # Resumed at 2; SIGTERM during step 3.
  assert checkpoint_steps(workdir) == [2, 3]  # 3 is not a checkpoint_every step: the guard saved it.
  steps = [int(s.step) for s in jax.tree.leaves(stopped, is_leaf=lambda x: hasattr(x, 'step'))
           if hasattr(s, 'step')]
  assert steps and set(steps) == {3}, steps
  np.testing.assert_array_equal(batches_after_checkpoint(config, workdir, 3, 2), by_hand[3:5])

  resumed = tasks.train_and_evaluate(config, str(workdir))  # Resumed at 3, runs to 4.
  assert checkpoint_steps(workdir) == [2, 3, 4]
  assert_trees_equal(resumed, straight)
  for run in (workdir, tmp_path / 'straight'):
    np.testing.assert_array_equal(batches_after_checkpoint(config, run, 4, 1), by_hand[4:])

  meta = checkpoints.read_meta(str(workdir / 'checkpoints'))
  if model == 'estimator':
    assert meta['kind'] == estimator.CHECKPOINT_KIND
    assert meta['config']['model']['generator'] == 'unet-3-8'
    assert 'kernel_map' in meta
  elif model == 'usrnet':
    assert meta['kind'] == usrnet_restorer.CHECKPOINT_KIND
  else:
    assert meta['kind'] == sftmd_restorer.CHECKPOINT_KIND


def test_nan_loss_stops_with_a_clear_message(tmp_path, smoke_estimator_workdir):
  shutil.copytree(smoke_estimator_workdir, tmp_path, dirs_exist_ok=True)  # 4 :smoke steps, checkpoints 2 and 4
  config = smoke_config(**{'train.learning_rate': float('nan'), 'train.num_steps': 6})
  # The D update of step 5 makes D NaN, so step 5's generator loss is the first non-finite value.
  with pytest.raises(runtime.NonFiniteLossError,
                     match=r'non-finite loss at step 5: .*g_loss.*last good checkpoint is step 4'):
    tasks.train_and_evaluate(config, str(tmp_path))
  steps = sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir() if p.name.isdigit())
  assert steps == [2, 4], 'a non-finite state must never be checkpointed'
  with pytest.raises(runtime.NonFiniteLossError, match=r'step 1: .*no checkpoint was saved yet'):
    tasks.train_and_evaluate(config, str(tmp_path / 'fresh'))


def test_batch_not_divisible_by_devices_is_refused(tmp_path):
  with pytest.raises(ValueError, match='not divisible by the 8 devices'):
    tasks.train_and_evaluate(smoke_config(**{'train.batch_size': 4}), str(tmp_path))


def _run_train(args, **kw):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2', JAX_PLATFORMS='cpu')
  return subprocess.Popen([sys.executable, str(ROOT / 'train.py'), *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


# train.py end to end (metrics, evaluation, checkpoints, samples) and stopped by SIGTERM: run A of
# tests/test_multihost.py's two-process test and its SIGTERM test launch it; the preemption guard's save
# and exact resume are tested in-process above (test_resume_after_a_clean_stop_and_a_sigterm_is_exact).


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


def test_train_py_refuses_a_folder_field_without_the_folder_source(tmp_path):
  # --config.data.train_dir alone used to train on the bundled photos without a word.
  proc = _run_train(['--config', 'configs/gaussian.py:smoke', '--workdir', str(tmp_path),
                     '--config.data.train_dir=/tmp/x'])
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 1, out
  assert "error: data.train_dir='/tmp/x' is read only by data.source=folder" in out
  assert 'add --config.data.source=folder' in out and 'Traceback' not in out


def test_init_from_starts_the_generator_from_a_bundle(smoke_estimator_workdir, tmp_path):
  """train.init_from (fine-tuning): step 0's generator is the bundle's, D and Adam start fresh; with a
  zero learning rate the trained parameters stay the bundle's exactly; the wrong kind or network shape
  is refused naming the file."""
  bundle = tasks.export_bundle(str(smoke_estimator_workdir), str(tmp_path / 'est.npz'), dtype='float32')
  _, trees = modelio.read_bundle(bundle)
  config = smoke_config(**{'train.init_from': bundle, 'train.learning_rate': 0.0, 'train.num_steps': 2})
  state = tasks.train_and_evaluate(config, str(tmp_path / 'ft'))
  assert_trees_equal(state['gen'].params, trees['params'])
  init_key = jax.random.split(jax.random.key(config.seed), 3)[0]  # The driver's.
  fresh = jax.device_get(jax.jit(functools.partial(estimator.create_train_state, config))(init_key))
  assert_trees_close(state['disc'].params, fresh['disc'].params, atol=1e-7)
  assert int(state['gen'].step) == 2

  other_kind = modelio.write_bundle(tmp_path / 'usrnet.npz', kind=usrnet_restorer.CHECKPOINT_KIND, step=1,
                                    meta={'config': {}}, params={'w': np.zeros(2, np.float32)})
  with pytest.raises(modelio.BundleError, match=r'usrnet.npz holds a .usrnet_restorer. model'):
    tasks.train_and_evaluate(smoke_config(**{'train.init_from': other_kind}), str(tmp_path / 'a'))
  wider = smoke_config(**{'train.init_from': bundle, 'model.generator': 'unet-3-16'})
  with pytest.raises(modelio.BundleError, match=r'est.npz: the parameters do not match'):
    tasks.train_and_evaluate(wider, str(tmp_path / 'b'))
  with pytest.raises(FileNotFoundError, match='missing.npz'):
    tasks.train_and_evaluate(smoke_config(**{'train.init_from': str(tmp_path / 'missing.npz')}),
                             str(tmp_path / 'c'))


@pytest.mark.parametrize('name,make_config,section', [
    ('estimator', lambda: gaussian.get_config('smoke'), 'model'),
    ('usrnet', lambda: usrnet.get_config('gaussian,smoke'), 'restorer'),
    ('sftmd', lambda: sftmd.get_config('gaussian_x4,smoke'), 'restorer')])
def test_bfloat16_compute_trains_like_float32_with_float32_state(name, make_config, section):
  """`<section>.dtype = 'bfloat16'`: the networks' convolutions run in bfloat16 (the step's program holds
  bfloat16 convolutions), parameters and optimiser state stay float32, and the first three steps'
  losses are within 2% of float32's (bfloat16 keeps 8 bits of mantissa: ~0.4% per operation)."""
  losses, programs = {}, {}
  for dtype in ('float32', 'bfloat16'):
    config = make_config()
    config[section].dtype = dtype
    task = tasks.TASKS[name].task(config)
    state = jax.jit(task.create_state)(jax.random.key(0))
    batch = jax.jit(task.make_batch)(next(task.train_iterator()), jax.random.key(1))
    # One program per dtype: a multi-scale task's first variant (its other scales run the same layers).
    step = jax.jit(functools.partial(task.train_step, **({'variant': 0} if task.train_variants > 1 else {})))
    programs[dtype] = str(jax.make_jaxpr(step)(state, batch, jax.random.key(2)))
    losses[dtype] = []
    for _ in range(3):
      state, metrics = step(state, batch, jax.random.key(2))
      losses[dtype].append(float(metrics['l1']))
    assert {leaf.dtype for leaf in jax.tree.leaves(state) if jnp.issubdtype(leaf.dtype, jnp.floating)} == {
        jnp.dtype(jnp.float32)}
  assert 'bf16' not in programs['float32'] and 'conv_general_dilated' in programs['bfloat16']
  assert any('conv_general_dilated' in line and 'bf16[' in line for line in programs['bfloat16'].splitlines())
  np.testing.assert_allclose(losses['bfloat16'], losses['float32'], rtol=0.02)
  bad = make_config()
  bad[section].dtype = 'float16'
  with pytest.raises(ValueError, match=f"{section}.dtype='float16'.*one of float32, bfloat16"):
    tasks.TASKS[name].task(bad)  # before anything is read or compiled
