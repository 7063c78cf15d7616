"""Training of the S2K kernel estimator: U-Net generator vs conditional PatchGAN (paper §3.3, Eq. 11–12).

`train_step` is one pure, jitted step (discriminator update, then generator update through the updated
discriminator, as pix2pix does). `train_and_evaluate` hands it, as a `loop.Task`, to the linear driver
`loop.run` (data, state, checkpoints, the loop, evaluation and logging), which the restorer shares.
"""
import functools
import os
from typing import Any

import flax.linen as nn
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from s2k_jax import loop
from s2k_jax import losses
from s2k_jax import spectrum
from s2k_jax import visualize
from s2k_jax.models import patchgan
from s2k_jax.models import unet

CHECKPOINT_KIND = 's2k_estimator'


class TrainState(train_state.TrainState):
  batch_stats: Any = None


def create_models(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
  gen = unet.make_generator(config.model.generator)
  disc = patchgan.PatchDiscriminator(features=config.model.disc_features,
                                     n_layers=config.model.disc_layers)
  return gen, disc


def create_train_state(config: ml_collections.ConfigDict, key: jax.Array) -> dict[str, TrainState]:
  gen, disc = create_models(config)
  size = config.spectrum.size
  x = jnp.zeros((1, size, size, 1), jnp.float32)
  k_gen, k_disc, k_drop = jax.random.split(key, 3)
  gvars = gen.init({'params': k_gen, 'dropout': k_drop}, x, train=False)
  dvars = disc.init({'params': k_disc}, x, x, train=False)
  tx = loop.create_optimizer(config)
  return {
      'gen': TrainState.create(apply_fn=gen.apply, params=gvars['params'], tx=tx,
                               batch_stats=gvars.get('batch_stats', {})),
      'disc': TrainState.create(apply_fn=disc.apply, params=dvars['params'], tx=tx,
                                batch_stats=dvars.get('batch_stats', {})),
  }


def train_step(state: dict[str, TrainState], batch: dict[str, jax.Array], key: jax.Array, *,
               config: ml_collections.ConfigDict) -> tuple[dict[str, TrainState], dict[str, jax.Array]]:
  """One GAN step: D on stop_gradient(G(s)) and k (Eq. 12), then G on Eq. 11 through the new D."""
  gs, ds = state['gen'], state['disc']
  cond, target = batch['inputs'], batch['kernel_map']
  dropout_key = jax.random.fold_in(key, gs.step)

  def generate(params):
    out, updates = gs.apply_fn({'params': params, 'batch_stats': gs.batch_stats}, cond, train=True,
                               rngs={'dropout': dropout_key}, mutable=['batch_stats'])
    return out, updates['batch_stats']

  # One generator forward serves both updates: its VJP is pulled back after the D update.
  fake, gen_vjp, gen_stats = jax.vjp(generate, gs.params, has_aux=True)

  def discriminate(params, stats, kernel_map):
    logits, updates = ds.apply_fn({'params': params, 'batch_stats': stats}, cond, kernel_map,
                                  train=True, mutable=['batch_stats'])
    return logits, updates['batch_stats']

  def disc_loss(params):
    fake_logits, stats = discriminate(params, ds.batch_stats, jax.lax.stop_gradient(fake))
    real_logits, stats = discriminate(params, stats, target)
    loss = losses.lsgan_discriminator_loss(real_logits, fake_logits)
    return loss, (stats, jnp.mean(real_logits), jnp.mean(fake_logits))

  (d_loss, (d_stats, d_real, d_fake)), d_grads = jax.value_and_grad(disc_loss, has_aux=True)(ds.params)
  ds = ds.apply_gradients(grads=d_grads, batch_stats=d_stats)

  def gen_loss(fake_map):
    # D's running statistics are only used by D itself; G's term leaves them as they are.
    fake_logits, _ = discriminate(ds.params, ds.batch_stats, fake_map)
    return losses.generator_loss(fake_map, target, fake_logits, tuple(config.train.loss_weights),
                                 flip_invariant=config.train.flip_invariant_l1)

  (g_loss, terms), d_fake_map = jax.value_and_grad(gen_loss, has_aux=True)(fake)
  (g_grads,) = gen_vjp(d_fake_map)
  gs = gs.apply_gradients(grads=g_grads, batch_stats=gen_stats)

  metrics = dict(g_loss=g_loss, d_loss=d_loss, d_real=d_real, d_fake=d_fake, **terms)
  return {'gen': gs, 'disc': ds}, metrics


def estimate_maps(state: dict[str, TrainState], inputs: jax.Array) -> jax.Array:
  """Deterministic generator output (eval mode: running BatchNorm statistics, no dropout)."""
  gs = state['gen']
  return gs.apply_fn({'params': gs.params, 'batch_stats': gs.batch_stats}, inputs, train=False)


def eval_step(state, batch, *, config):
  """Kernel maps → kernels, and their error against the true kernels (flip-invariant for motion)."""
  pred_map = estimate_maps(state, batch['inputs'])
  kernels = spectrum.map_to_kernel(pred_map, config.degradation.kernel_size)
  if config.train.flip_invariant_l1:
    err = spectrum.flip_invariant_l1(kernels, batch['kernel'])
  else:
    err = jnp.mean(jnp.abs(kernels - batch['kernel']), axis=(1, 2))
  return dict(pred_map=pred_map, kernel=kernels, kernel_mae=err)


def checkpoint_meta(config: ml_collections.ConfigDict) -> dict:
  """What inference needs besides the arrays: what this is and how its maps are defined."""
  return dict(kind=CHECKPOINT_KIND, config=config.to_dict(),
              kernel_map=spectrum.KERNEL_MAP_CONVENTION)


def estimator_task(config: ml_collections.ConfigDict) -> loop.Task:
  """The S2K estimator as a task of the shared training driver."""
  return loop.Task(
      name='s2k', kind=CHECKPOINT_KIND, meta=checkpoint_meta(config),
      create_state=functools.partial(create_train_state, config),
      train_step=functools.partial(train_step, config=config),
      eval_step=functools.partial(eval_step, config=config),
      log_eval=evaluate_and_log, progress_keys=('g_loss', 'd_loss', 'l1'))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Trains the model `config.task` names (the S2K estimator by default, or the SFTMD restorer) in
  `workdir`, resuming from its latest checkpoint if there is one; returns the final state."""
  task = config.get('task', 'estimator')
  if task == 'estimator':
    return loop.run(estimator_task(config), config, workdir)
  if task == 'restorer':
    from s2k_jax import restorer  # pylint: disable=g-import-not-at-top
    return loop.run(restorer.restorer_task(config), config, workdir)
  raise ValueError(f"config.task must be 'estimator' or 'restorer', got {task!r}")


def evaluate_and_log(out, eval_batch, writer, workdir, step):
  """Validation kernel error and a PNG grid (spectrum | true map | estimated map | kernels)."""
  writer.write(step, {'eval/kernel_mae': float(np.mean(out['kernel_mae']))})
  grid = visualize.estimation_grid(
      np.asarray(jax.device_get(eval_batch['inputs'])), np.asarray(jax.device_get(eval_batch['kernel_map'])),
      out['pred_map'], np.asarray(jax.device_get(eval_batch['kernel'])), out['kernel'])
  if jax.process_index() == 0:
    visualize.save_png(os.path.join(workdir, 'samples', f'step_{step:07d}.png'), grid)
    writer.write_image(step, 'eval/estimation', grid)
