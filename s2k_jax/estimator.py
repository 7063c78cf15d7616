"""The S2K kernel estimator (paper §3.3–3.4): U-Net generator vs conditional PatchGAN, and its inference.

One module per model, all of the same shape (`restorers/sftmd.py` is its neighbour):
  * training: `make_batch_fn` (HR crops → LR → amplitude spectrum and Kernel↑ target, on the device),
    `create_train_state`, `train_step` (one pure, jitted GAN step: the discriminator update of Eq. 12,
    then the generator update of Eq. 11 through the updated discriminator, as pix2pix does),
    `eval_step`, `summarize_eval` and `task`, which hands them to the shared driver `loop.run`; with
    `train.ema_decay` > 0 the generator also keeps an exponential moving average of its weights, which
    evaluation, `load` and export read instead of the raw weights (`load` and export with BatchNorm
    statistics re-estimated for them, `precise_batch_stats`);
  * inference: `load` rebuilds the generator from the config saved with a checkpoint or bundle (so
    inference never guesses sizes or conventions) and `estimate_kernels` runs it, jitted, on a batch of
    LR images of one size.
"""
import dataclasses
import functools
from typing import Any, Callable, Iterable, Iterator

import flax.linen as nn
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from s2k_jax import data
from s2k_jax import degradation
from s2k_jax import images
from s2k_jax import kernels as kernels_lib
from s2k_jax import losses
from s2k_jax import loop
from s2k_jax import modelio
from s2k_jax import spectrum
from s2k_jax import visualize
from s2k_jax.models import layers
from s2k_jax.models import patchgan
from s2k_jax.models import unet

CHECKPOINT_KIND = 's2k_estimator'
MODEL_INPUTS = ('dft', 'spatial')


# ---------------------------------------------------------------------------------------------------
# Training.


def check_model_fields(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError for a bad model.input, or a spectrum field that input would not read.

  model.input='spatial' feeds the generator the LR luminance, so spectrum.mode (how the amplitude
  spectrum is taken) has no effect there; only its default is accepted.
  """
  if config.model.input not in MODEL_INPUTS:
    raise ValueError(f'model.input must be one of {MODEL_INPUTS}, got {config.model.input!r}.')
  if config.model.input == 'spatial' and config.spectrum.mode != spectrum.DEFAULT_MODE:
    raise ValueError(f"spectrum.mode={config.spectrum.mode!r} has no effect with model.input='spatial' "
                     '(the generator reads the LR luminance, not its spectrum): leave spectrum.mode '
                     "unset, or add --config.model.input=dft.")
  spectrum.check_training_crop(config)
  if not 0.0 <= ema_decay(config) < 1.0:
    raise ValueError(f'train.ema_decay must be in [0, 1) (0: no moving average of the generator\'s weights; '
                     f'e.g. 0.999), got {ema_decay(config)}.')
  quantile = kernel_quantile(config)
  if not 0.0 < quantile < 1.0:
    raise ValueError(f'train.kernel_quantile must be in (0, 1) (0.5: the paper\'s L1; below it the estimate '
                     f'reads narrower kernels where it is unsure, e.g. 0.3), got {quantile}.')
  loss = kernel_loss(config)
  if loss not in losses.KERNEL_LOSSES:
    raise ValueError(f"train.kernel_loss must be one of {losses.KERNEL_LOSSES} ('l1': the paper's; 'l2': the "
                     f'mean where the spectrum leaves the kernel uncertain), got {loss!r}.')
  if loss == 'l2' and quantile != 0.5:
    raise ValueError(f"train.kernel_quantile={quantile} has no effect with train.kernel_loss='l2' (a "
                     "quantile is of the L1 term): leave one of them unset.")
  if loss == 'l2' and not config.train.loss_weights[0]:
    raise ValueError(f"train.kernel_loss='l2' has no effect with the kernel term off "
                     f'(train.loss_weights={tuple(config.train.loss_weights)}): set λ1 > 0 or leave it unset.')
  if quantile != 0.5 and not config.train.loss_weights[0]:
    raise ValueError(f'train.kernel_quantile={quantile} has no effect with the L1 term off '
                     f'(train.loss_weights={tuple(config.train.loss_weights)}): set λ1 > 0 or leave the '
                     'quantile unset.')


def ema_decay(config: ml_collections.ConfigDict) -> float:
  return float(config.train.ema_decay)


def kernel_loss(config: ml_collections.ConfigDict) -> str:
  """train.kernel_loss (`losses.generator_loss`); 'l1', the paper's, for configs saved before it."""
  return str(config.train.get('kernel_loss', 'l1'))


def kernel_quantile(config: ml_collections.ConfigDict) -> float:
  """train.kernel_quantile (`losses.quantile_map_loss`); 0.5, the paper's L1, for configs saved before it."""
  return float(config.train.get('kernel_quantile', 0.5))


def make_batch_fn(
    config: ml_collections.ConfigDict) -> Callable[[jax.Array, jax.Array], dict[str, jax.Array]]:
  """fn(hr uint8 (B, C, C, 3), key) → the training batch, jit-able (the caller chooses shardings).

  Returns float32 arrays: hr (B, C, C, 3) in [0, 1]; lr (B, C/s, C/s, 3) in [0, 1]; kernel (B, k, k)
  summing to 1 (the blur, whatever resizer made the LR); kernel_map and spectrum (B, S, S, 1) in
  [-1, 1]; inputs (B, S, S, 1), the generator input (= spectrum for model.input='dft', `spectrum.spatial_input` for 'spatial'); noise_sigma (B,).
  Kernels and noise come from `degradation.degrade(hr, key, config.degradation)`.
  """
  check_model_fields(config)
  deg = ml_collections.FrozenConfigDict(config.degradation)
  size, mode = int(config.spectrum.size), str(config.spectrum.mode)
  spatial = config.model.input == 'spatial'

  def batch_fn(hr_uint8: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
    hr = images.to_float(jnp.asarray(hr_uint8))
    out = degradation.degrade(hr, key, deg)
    lr = out['lr']
    spec = spectrum.amplitude_spectrum(lr, size=size, mode=mode)
    inputs = spectrum.spatial_input(lr, size=size) if spatial else spec
    return dict(hr=hr, lr=lr, kernel=out['kernel'], kernel_map=spectrum.kernel_to_map(out['kernel'], size),
                spectrum=spec, inputs=inputs, noise_sigma=out['noise_sigma'])

  return batch_fn


class TrainState(train_state.TrainState):
  batch_stats: Any = None


# The train state is {'gen': TrainState, 'disc': TrainState}, plus EMA: the generator's moving-average
# weights when train.ema_decay > 0 (a separate entry, so that checkpoints without it keep their layout).
EMA = 'gen_ema'


def update_ema(ema: Any, params: Any, step: jax.Array, decay: float) -> Any:
  """ema ← d·ema + (1 − d)·params after update `step` = t, d = min(decay, (1 + t) / (10 + t)) (the
  warm-up of TensorFlow's ExponentialMovingAverage: the first steps, far from the end, count less)."""
  t = step.astype(jnp.float32)
  d = jnp.minimum(decay, (1.0 + t) / (10.0 + t))
  return jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema, params)


# Training batches over which `load` re-estimates the BatchNorm statistics of the averaged weights.
PRECISE_BN_BATCHES = 50


def precise_batch_stats(gen: Any, inputs: Iterable[jax.Array], key: jax.Array) -> Any:
  """Population BatchNorm statistics of the generator `gen` (a TrainState or InferenceState) with its
  present weights, over the given input batches ("precise BN", Wu & Johnson 2021, "Rethinking 'Batch'
  in BatchNorm", §3): per layer the mean of the batch means, and E[batch var] + Var[batch mean] (the
  variance over all the batches' samples, for batches of one size). The running statistics training
  keeps (momentum 0.9: about the last ten batches of 8) belong to the raw weights, not to their moving
  average (docs/results.md §5 measures both).

  Each batch runs G in training mode (dropout on, with keys folded from `key`) from zeroed running
  statistics, so the updated statistics are (1 − momentum) × the batch's own.
  """
  zeros = jax.tree.map(jnp.zeros_like, gen.batch_stats)

  @jax.jit
  def batch_statistics(x, k):
    _, updates = gen.apply_fn({'params': gen.params, 'batch_stats': zeros}, x, train=True,
                              rngs={'dropout': k}, mutable=['batch_stats'])
    return jax.tree.map(lambda v: v / (1.0 - layers.BN_MOMENTUM), updates['batch_stats'])

  per_batch = [batch_statistics(x, jax.random.fold_in(key, i)) for i, x in enumerate(inputs)]
  if not per_batch:
    raise ValueError('precise_batch_stats needs at least one input batch.')
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *per_batch)

  def pool(tree):
    if set(tree) == {'mean', 'var'}:
      return {'mean': jnp.mean(tree['mean'], 0),
              'var': jnp.mean(tree['var'], 0) + jnp.var(tree['mean'], 0)}
    return {name: pool(sub) for name, sub in tree.items()}

  return pool(stacked)


def training_inputs(config: ml_collections.ConfigDict, num_batches: int) -> Iterator[jax.Array]:
  """`num_batches` generator-input batches made as training makes them (the config's photos, crops and
  degradations), from a fixed key."""
  iterator = data.create_train_iterator(config)
  batch_fn = jax.jit(make_batch_fn(config))
  key = jax.random.key(config.seed + 2)
  for i in range(num_batches):
    yield batch_fn(jnp.asarray(next(iterator)['hr']), jax.random.fold_in(key, i))['inputs']


def inference_weights(state: dict[str, Any]) -> TrainState:
  """The generator as evaluation and inference read it: its moving average where training keeps one."""
  return state['gen'] if EMA not in state else state['gen'].replace(params=state[EMA])


def create_models(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
  dtype = layers.compute_dtype(config.model.dtype, 'model.dtype')
  gen = unet.make_generator(config.model.generator, dtype=dtype)
  disc = patchgan.PatchDiscriminator(features=config.model.disc_features,
                                     n_layers=config.model.disc_layers, dtype=dtype)
  return gen, disc


def create_train_state(config: ml_collections.ConfigDict, key: jax.Array) -> dict[str, TrainState]:
  gen, disc = create_models(config)
  size = config.spectrum.size
  x = jnp.zeros((1, size, size, 1), jnp.float32)
  k_gen, k_disc, k_drop = jax.random.split(key, 3)
  gvars = gen.init({'params': k_gen, 'dropout': k_drop}, x, train=False)
  dvars = disc.init({'params': k_disc}, x, x, train=False)
  tx = loop.create_optimizer(config)
  state = {
      'gen': TrainState.create(apply_fn=gen.apply, params=gvars['params'], tx=tx,
                               batch_stats=gvars.get('batch_stats', {})),
      'disc': TrainState.create(apply_fn=disc.apply, params=dvars['params'], tx=tx,
                                batch_stats=dvars.get('batch_stats', {})),
  }
  return {**state, EMA: gvars['params']} if ema_decay(config) > 0 else state


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
                                 flip_invariant=kernels_lib.flip_invariant(config.degradation.family),
                                 quantile=kernel_quantile(config), kernel_loss=kernel_loss(config))

  (g_loss, terms), d_fake_map = jax.value_and_grad(gen_loss, has_aux=True)(fake)
  (g_grads,) = gen_vjp(d_fake_map)
  gs = gs.apply_gradients(grads=g_grads, batch_stats=gen_stats)
  new_state = {'gen': gs, 'disc': ds}
  if EMA in state:
    new_state[EMA] = update_ema(state[EMA], gs.params, gs.step, ema_decay(config))

  metrics = dict(g_loss=g_loss, d_loss=d_loss, d_real=d_real, d_fake=d_fake, **terms)
  return new_state, metrics


def estimate_maps(state: dict[str, TrainState], inputs: jax.Array) -> jax.Array:
  """Deterministic generator output (eval mode: running BatchNorm statistics, no dropout; the moving
  average of the weights where training keeps one)."""
  gs = inference_weights(state)
  return gs.apply_fn({'params': gs.params, 'batch_stats': gs.batch_stats}, inputs, train=False)


def eval_step(state, batch, *, config):
  """Kernel maps → kernels, and their error against the true kernels (flip-invariant for motion)."""
  pred_map = estimate_maps(state, batch['inputs'])
  kernels = spectrum.map_to_kernel(pred_map, config.degradation.kernel_size)
  err = spectrum.kernel_distance(kernels, batch['kernel'], kernels_lib.flip_invariant(config.degradation.family))
  return dict(pred_map=pred_map, kernel=kernels, kernel_mae=err)


def checkpoint_meta(config: ml_collections.ConfigDict) -> dict:
  """What inference needs besides the arrays: what this is and how its maps are defined."""
  return dict(kind=CHECKPOINT_KIND, config=config.to_dict(),
              kernel_map=spectrum.KERNEL_MAP_CONVENTION)


def summarize_eval(out, eval_batch, *, config: ml_collections.ConfigDict,
                   mean_kernel: Callable[[], np.ndarray]) -> tuple[dict[str, float], np.ndarray]:
  """Validation kernel error, the mean kernel's on the same batch (the kernel-unaware baseline) and a
  labelled grid (input | true map | estimated map | true kernel | estimated kernel).

  `mean_kernel` () → `kernels.mean_kernel(config.degradation)`, computed once by the caller.
  """
  true = np.asarray(eval_batch['kernel'])
  baseline = spectrum.kernel_distance(jnp.broadcast_to(mean_kernel(), true.shape), true,
                                      kernels_lib.flip_invariant(config.degradation.family))
  first = 'LR luma' if config.model.input == 'spatial' else 'spectrum'
  grid = visualize.estimation_grid(eval_batch['inputs'], eval_batch['kernel_map'], out['pred_map'],
                                   true, out['kernel'], input_label=first)
  return {'kernel_mae': float(np.mean(out['kernel_mae'])),
          'kernel_mae_mean_kernel': float(np.mean(baseline))}, grid


def describe_eval(scalars) -> list[str]:
  """The closing summary's reading of the latest eval scalars: S2K's kernel error vs the mean kernel's."""
  if 'kernel_mae' not in scalars:
    return []
  mae, base = scalars['kernel_mae'], scalars.get('kernel_mae_mean_kernel')
  if base is None:
    return [f'kernel error (mean |k̂ − k|): {mae:.4g}.']
  lines = [f'kernel error (mean |k̂ − k|): S2K {mae:.4g}, the mean kernel {base:.4g} '
           '(the kernel-unaware baseline, same eval batch).']
  if 0 < mae < base:
    lines.append(f'S2K\'s error is {base / mae:.2f}× lower than the mean kernel\'s.')
  else:
    lines.append('S2K is not yet better than the mean kernel: train longer (raise --config.train.num_steps).')
  return lines


def task(config: ml_collections.ConfigDict) -> loop.Task:
  """The S2K estimator as a task of the shared training driver."""
  inputs = data.task_inputs(config)  # Checks the config before any image is scanned or kernel drawn.
  create_models(config)  # and the networks' settings (e.g. model.dtype)
  batch_fn = make_batch_fn(config)
  return loop.Task(
      name='s2k', kind=CHECKPOINT_KIND, meta=checkpoint_meta(config), **inputs,
      make_batch=lambda host, key: batch_fn(host['hr'], key),
      create_state=functools.partial(create_train_state, config),
      train_step=functools.partial(train_step, config=config),
      eval_step=functools.partial(eval_step, config=config),
      summarize_eval=functools.partial(
          summarize_eval, config=config,
          mean_kernel=functools.cache(lambda: kernels_lib.mean_kernel(config.degradation))),
      progress_keys=('g_loss', 'd_loss', 'l1'), describe_eval=describe_eval, warm_start=warm_start)


def warm_start(state: dict[str, TrainState], source: str) -> dict[str, TrainState]:
  """Fine-tuning: the generator (and its moving average) starts from the bundle's (which holds only
  it); D starts fresh."""
  gen = modelio.warm_start(state['gen'], source, CHECKPOINT_KIND,
                           check_meta=functools.partial(_check_convention, source))
  return {**state, 'gen': gen, **({EMA: gen.params} if EMA in state else {})}


# ---------------------------------------------------------------------------------------------------
# Inference.


@dataclasses.dataclass(frozen=True)
class Estimator:
  config: ml_collections.ConfigDict
  state: dict[str, modelio.InferenceState]  # {'gen': generator apply_fn, params, batch_stats}
  step: int
  directory: str       # the checkpoints directory or bundle file it was loaded from


def _check_convention(source: str, meta: dict) -> None:
  if meta.get('kernel_map') != spectrum.KERNEL_MAP_CONVENTION:
    raise ValueError(f'{source}: kernel-map convention {meta.get("kernel_map")!r} differs from this '
                     f'version\'s {spectrum.KERNEL_MAP_CONVENTION!r}; retrain or use the matching s2k-jax '
                     'version.')


def load(source: str, step: int | None = None, average: bool = True) -> Estimator:
  """Loads an estimator from a model bundle (`export.py`), a training workdir or its `checkpoints/`.

  A checkpoint loads its latest step unless `step` is given; only the generator is kept. A checkpoint
  that keeps a moving average of G's weights (train.ema_decay > 0) loads the average, with BatchNorm
  statistics re-estimated for it on PRECISE_BN_BATCHES training batches (`precise_batch_stats`; a
  bundle exported from it holds those). `average=False` loads its raw weights with their running
  statistics instead.
  """
  config, gen, step, path, meta = modelio.load_for_inference(
      source, CHECKPOINT_KIND, lambda config: functools.partial(create_train_state, config), step,
      select=inference_weights if average else lambda state: state['gen'])
  _check_convention(source, meta)
  keeps_average = not modelio.is_bundle(source) and ema_decay(config) > 0
  if not average and not keeps_average:
    raise ValueError(f'{source}: raw weights were asked for, but it holds no moving average of them (a '
                     'bundle, or a run with train.ema_decay = 0): its weights are the raw ones; leave the '
                     'option out.')
  if keeps_average and average:
    print(f'{source}: BatchNorm statistics of the averaged weights (step {step}) from '
          f'{PRECISE_BN_BATCHES} training batches', flush=True)
    gen = gen.replace(batch_stats=precise_batch_stats(
        gen, training_inputs(config, PRECISE_BN_BATCHES), jax.random.key(config.seed + 3)))
  return Estimator(config=config, state={'gen': gen}, step=step, directory=path)


@functools.partial(jax.jit, static_argnames=('size', 'mode', 'ksize', 'spatial'))
def _estimate(state, lr, *, size, mode, ksize, spatial):
  inputs = spectrum.spatial_input(lr, size) if spatial else spectrum.amplitude_spectrum(lr, size, mode)
  maps = estimate_maps(state, inputs)
  return spectrum.map_to_kernel(maps, ksize), maps, inputs


def estimate_kernels(est: Estimator, lr: np.ndarray | jax.Array, mode: str | None = None) -> dict:
  """LR batch (B, h, w, 3) in [0, 1] (uint8 is rescaled) → dict(kernel (B, k, k), kernel_map, inputs)."""
  lr = jnp.asarray(lr)
  if lr.dtype == jnp.uint8:
    lr = images.to_float(lr)
  c = est.config
  if mode is not None and c.model.input == 'spatial':
    raise ValueError(f'a spectrum mode ({mode!r}) has no effect on the estimator in {est.directory}: it reads '
                     "the LR image itself (model.input='spatial', the Table 3 ablation), not its spectrum; "
                     'leave --spectrum-mode out.')
  kernels, maps, inputs = _estimate(est.state, lr, size=int(c.spectrum.size),
                                    mode=str(mode or c.spectrum.mode), ksize=int(c.degradation.kernel_size),
                                    spatial=c.model.input == 'spatial')
  return dict(kernel=kernels, kernel_map=maps, inputs=inputs)


def estimate_canonical(est: Estimator, lr: np.ndarray | jax.Array,
                       mode: str | None = None) -> tuple[jax.Array, jax.Array]:
  """What a blind pipeline tells a restorer (s2k-sr; a USRNet trained told S2K's estimates): LR batch
  (B, h, w, 3) → the estimated kernels in canonical form (B, k, k) (`spectrum.canonical_kernel`: centred
  on their mass, the amplitude spectrum's 180° ambiguity resolved one fixed way) and the generator
  inputs (B, S, S, 1). Traceable: it runs inside a jitted training batch function as well."""
  out = estimate_kernels(est, lr, mode=mode)
  return spectrum.canonical_kernel(out['kernel']), out['inputs']
