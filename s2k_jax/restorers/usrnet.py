"""USRNet as a restorer: one model for every scale, kernel family and noise level (paper §3.4; the
network is `s2k_jax/models/usrnet.py`).

Same shape as `restorers/sftmd.py`. The batch function degrades each HR crop once per scale with the
same kernel and noise σ (an HR crop side divisible by 2, 3 and 4); each training step trains one scale,
in turn (the driver's `train_variants`: step mod the number of scales, one compiled step per scale), so
every scale gets the same number of updates. The loss is L1 (as USRNet). Evaluation reports,
per scale, PSNR with the true kernel, with the family's mean kernel and of bicubic upsampling: the
true − mean gap is the value of an accurate kernel, which S2K's estimate should recover.

A blind pipeline tells USRNet an estimate, not the truth, and on sharp LR the estimate is wider than
the blur (docs/conventions.md, "Told kernels"); with restorer.kernel_error_prob/_sigma > 0 training tells
it such kernels (`kernels.widen` of the truth) on part of the batch, so that it restores less sharply
where the told blur may be too wide, instead of ringing. Likewise the noise σ: s2k-sr tells it the σ
read off the photo (`noise.estimate_sigmas`), which on clean LR is the photo's texture, not noise;
with restorer.told_noise='estimate' training tells it that estimate of each LR instead of the σ added.
With restorer.told_estimate_prob > 0 it is told S2K's own estimate on part of the batch (an estimator
run on each LR inside the data step, as DAN trains its restorer on estimated kernels): the estimate is
too wide on sharp LR and too narrow on blurred LR, and USRNet learns what it means instead of taking it
for the truth (docs/conventions.md, "Told estimates").
"""
import functools
import os
from typing import Any

from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from s2k_jax import data
from s2k_jax import degradation
from s2k_jax import estimator as estimator_lib
from s2k_jax import images
from s2k_jax import kernels as kernels_lib
from s2k_jax import loop
from s2k_jax import metrics
from s2k_jax import modelio
from s2k_jax import noise
from s2k_jax import pipeline
from s2k_jax import visualize
from s2k_jax.models import layers
from s2k_jax.models import usrnet
from s2k_jax.restorers import base

CHECKPOINT_KIND = 'usrnet_restorer'
NAME = 'USRNet'
HYPER_NET = 'HyperNet_0'  # the hyper-network's parameters (models/usrnet.py, its automatic name)
MEAN_KERNEL_SAMPLES = 4000  # Kernels averaged for the eval's mean-kernel baseline (seeded).


def scales(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  return tuple(int(s) for s in config.restorer.scales)


def check_fields(config: ml_collections.ConfigDict) -> None:
  """The settings USRNet cannot honour, refused with what to do."""
  r = config.restorer
  degradation.lr_grid(told_downsample(config))  # a known downsampler (its data step models each)
  if not scales(config) or any(s not in degradation.SCALES for s in scales(config)):
    raise ValueError(f'restorer.scales must be a non-empty subset of {degradation.SCALES}, got {r.scales}.')
  if len(set(scales(config))) != len(scales(config)):
    raise ValueError(f'restorer.scales lists a scale twice: {r.scales}.')
  for s in scales(config):
    if r.hr_patch % s:
      raise ValueError(f'restorer.hr_patch={r.hr_patch} must be a multiple of every scale in '
                       f'restorer.scales={r.scales} (e.g. 96 for 2, 3 and 4).')
  if r.iterations < 1 or r.border < 0:
    raise ValueError(f'restorer.iterations must be ≥ 1 and restorer.border ≥ 0, got {r.iterations}, {r.border}.')
  layers.compute_dtype(r.dtype, 'restorer.dtype')
  prob, sigma = kernel_error(config)
  if not 0 <= prob <= 1 or sigma < 0:
    raise ValueError(f'restorer.kernel_error_prob must be in [0, 1] and restorer.kernel_error_sigma ≥ 0, got '
                     f'{prob} and {sigma}.')
  if (prob > 0) != (sigma > 0):
    raise ValueError(f'restorer.kernel_error_prob={prob} and restorer.kernel_error_sigma={sigma}: the told '
                     'kernel is widened only when both are > 0; set both (e.g. 0.5 and 0.5) or both to 0.')
  if base.told_noise(config) not in base.TOLD_NOISE:
    raise ValueError(f'restorer.told_noise must be one of {base.TOLD_NOISE}, got {base.told_noise(config)!r}.')
  if base.told_noise(config) == 'estimate' and not config.degradation.noise_max > 0:
    raise ValueError("restorer.told_noise='estimate' needs a restorer that reads noise "
                     '(degradation.noise_max > 0), got noise_max=0.')
  prob, models, context = told_estimate(config)
  if not 0 <= prob <= 1:
    raise ValueError(f'restorer.told_estimate_prob must be in [0, 1], got {prob}.')
  if context < 0 or any(context % s for s in scales(config)):
    raise ValueError(f'restorer.context={context} must be ≥ 0 and a multiple of every scale in '
                     f'restorer.scales={r.scales} (e.g. 120 for 2, 3 and 4).')
  if int(config.data.hr_crop) != int(r.hr_patch) + 2 * context:
    raise ValueError(f'data.hr_crop={config.data.hr_crop} is not restorer.hr_patch + 2·restorer.context = '
                     f'{r.hr_patch} + 2·{context}: USRNet trains on hr_patch² crops (and degrades context more '
                     'on each side for told estimates); set --config.restorer.hr_patch (and .context) '
                     'instead of --config.data.hr_crop.')
  if prob == 0 and (models or context):
    raise ValueError(f'restorer.told_estimators={models!r} and restorer.context={context} have no effect '
                     'unless restorer.told_estimate_prob > 0 (USRNet is told S2K\'s estimates on that share '
                     'of the images); set it (e.g. 0.5) or leave them at their defaults (\'\' and 0).')
  if not hyper_lr_scale(config) > 0:
    raise ValueError(f'train.hyper_lr_scale must be > 0 (the hyper-network\'s learning rate over the '
                     f'rest\'s), got {hyper_lr_scale(config)}.')


def told_downsample(config: ml_collections.ConfigDict) -> str:
  """The downsampler the data step is told in training: the training LR's, or with random resizers
  'bicubic' whatever resizer made each image — what `s2k-sr` tells it about a photo."""
  return degradation.nominal_downsample(config.degradation.downsample)


def kernel_error(config: ml_collections.ConfigDict) -> tuple[float, float]:
  """(restorer.kernel_error_prob, restorer.kernel_error_sigma); (0, 0) for configs saved before them."""
  r = config.restorer
  return float(r.get('kernel_error_prob', 0.0)), float(r.get('kernel_error_sigma', 0.0))


def told_estimate(config: ml_collections.ConfigDict) -> tuple[float, str, int]:
  """(restorer.told_estimate_prob, restorer.told_estimators, restorer.context); (0, '', 0) for configs
  saved before them."""
  r = config.restorer
  return float(r.get('told_estimate_prob', 0.0)), str(r.get('told_estimators', '')), int(r.get('context', 0))


def told_estimators(config: ml_collections.ConfigDict) -> dict[int, estimator_lib.Estimator]:
  """scale → the estimator whose kernels training tells USRNet (restorer.told_estimate_prob > 0): those
  of restorer.told_estimators ('x2=MODEL,x4=MODEL'), or the shipped Gaussian estimator of each scale
  that reads the training LR's grid; {} when the option is off. Each is checked against the data step:
  its scale, the downsampler its kernels are blurs before, its families and kernel size, the LR side."""
  prob, models, _ = told_estimate(config)
  if prob == 0:
    return {}
  told = told_downsample(config)
  if models:
    paths = modelio.models_per_scale(models.split(','), f'restorer.told_estimators={models!r}',
                                     scales(config), f'restorer.scales={config.restorer.scales}')
    ests = {s: estimator_lib.load(path) for s, path in paths.items()}
  else:  # the shipped ones that read this LR: on the centre grid the resizer-trained Gaussian estimators
    ests = {}
    for s in scales(config):
      try:
        est = estimator_lib.load(modelio.pretrained_estimator('gaussian', s, degradation.lr_grid(told)))
      except ValueError:  # none ships for this scale
        continue
      if pipeline.kernel_downsample(est) == told:
        ests[s] = est
    if not ests:
      raise ValueError(f'no shipped Gaussian estimator reads LR made by {config.degradation.downsample!r} at '
                       f'{config.restorer.scales}; name one with restorer.told_estimators=xS=MODEL.')
  crop = int(config.data.hr_crop)  # hr_patch + 2·context (check_fields)
  for s, est in ests.items():
    e = est.config.degradation
    where = (f'restorer.told_estimators: the ×{s} estimator {est.directory}' if models else
             f'restorer.told_estimators=\'\' (the shipped Gaussian estimators): the ×{s} one {est.directory}')
    if int(e.scale) != s:
      raise ValueError(f'{where} reads ×{e.scale} LR, not ×{s}.')
    if pipeline.kernel_downsample(est) != told:
      raise ValueError(f'{where} reads kernels as blurs before {pipeline.kernel_downsample(est)!r} '
                       f'downsampling, but this restorer is told {told!r} (degradation.downsample='
                       f'{config.degradation.downsample!r}); use an estimator trained on that LR.')
    if not set(kernels_lib.members(e.family)) & set(kernels_lib.members(config.degradation.family)):
      raise ValueError(f'{where} knows {e.family} kernels; this restorer trains on '
                       f'{config.degradation.family} kernels only, so it would never be told its estimates; '
                       'name an estimator of that family (restorer.told_estimators=xS=MODEL).')
    if int(e.kernel_size) > int(config.degradation.kernel_size):
      raise ValueError(f'{where} returns {e.kernel_size}×{e.kernel_size} kernels, larger than the '
                       f'restorer\'s {config.degradation.kernel_size}² canvas.')
    pipeline.check_image_size((crop // s, crop // s), est,
                              f'{where}: the training LR (data.hr_crop={crop} / {s})')
  return ests


def hyper_lr_scale(config: ml_collections.ConfigDict) -> float:
  return float(config.train.hyper_lr_scale)


def degradation_at(config: ml_collections.ConfigDict, scale: int) -> ml_collections.FrozenConfigDict:
  """The degradation section with `scale` set (USRNet's config lists scales in restorer.scales)."""
  d = config.degradation.to_dict()
  d['scale'] = int(scale)
  return ml_collections.FrozenConfigDict(d)


# ---------------------------------------------------------------------------------------------------
# Training.


def make_batch_fn(config: ml_collections.ConfigDict):
  """fn(hr uint8 (B, C, C, 3), key) → dict(hr, kernel, noise_sigma, lr_x2, lr_x3, ...) float32.

  Every scale's LR comes from the same HR crop, kernel and noise key (so the same σ); with
  restorer.told_noise='estimate', told_noise_xS is the σ read off each scale's LR (clipped to noise_max).
  With restorer.told_estimate_prob > 0, told_kernel_xS is S2K's estimate read off the LR of the whole
  C = hr_patch + 2·context crop on that share of the images of the estimator's family (else the kernel
  told without the option); the HR and LR returned are the centred hr_patch crop and its LR.
  """
  degs = {s: degradation_at(config, s) for s in scales(config)}
  error_prob, error_sigma = kernel_error(config)
  estimate_prob, _, context = told_estimate(config)
  estimators = told_estimators(config)
  ksize = int(config.degradation.kernel_size)
  estimate_noise = base.told_noise(config) == 'estimate'
  noise_max = float(config.degradation.noise_max)

  def batch_fn(hr_uint8: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
    hr = images.to_float(jnp.asarray(hr_uint8))
    kernel_key, noise_key = jax.random.split(key)
    kernels, family = kernels_lib.sample_kernels_and_families(kernel_key, hr.shape[0],
                                                              next(iter(degs.values())))
    out = dict(hr=_centre(hr, context), kernel=kernels)
    whole_lr = {}
    for s, deg in degs.items():
      degraded = degradation.degrade_with_kernels(hr, kernels, noise_key, deg)
      whole_lr[s] = degraded['lr']
      out[f'lr_x{s}'] = _centre(degraded['lr'], context // s)
      out['noise_sigma'] = degraded['noise_sigma']
      if estimate_noise:  # read off the whole LR, as s2k-sr reads it off a photo
        out[f'told_noise_x{s}'] = jnp.minimum(noise.estimate_sigmas(degraded['lr']), noise_max)
    if error_prob > 0:  # its own key, so the draws above are those of a run without the option
      widen_key, pick_key = jax.random.split(jax.random.fold_in(key, 1))
      widen = jax.random.uniform(widen_key, (hr.shape[0],)) * error_sigma
      widen = jnp.where(jax.random.uniform(pick_key, (hr.shape[0],)) < error_prob, widen, 0.0)
      for s in degs:
        out[f'told_kernel_x{s}'] = kernels_lib.widen(kernels, widen * s)  # LR pixels → HR pixels
    if estimate_prob > 0:  # likewise its own key; one draw per image for every scale
      pick = jax.random.uniform(jax.random.fold_in(key, 2), (hr.shape[0],)) < estimate_prob
      for s, est in estimators.items():
        ours = [kernels_lib.FAMILIES.index(f) for f in kernels_lib.members(est.config.degradation.family)]
        told = pick & jnp.isin(family, jnp.asarray(ours))
        estimate = kernels_lib.resize_canvas(estimator_lib.estimate_canonical(est, whole_lr[s])[0], ksize)
        otherwise = out.get(f'told_kernel_x{s}', kernels)
        out[f'told_kernel_x{s}'] = jnp.where(told[:, None, None], estimate, otherwise)
    return out

  return batch_fn


def _centre(images_: jax.Array, margin: int) -> jax.Array:
  """(B, H, W, C) without `margin` pixels on each side."""
  return images_[:, margin:images_.shape[1] - margin, margin:images_.shape[2] - margin] if margin else images_


def create_model(config: ml_collections.ConfigDict) -> usrnet.USRNet:
  r = config.restorer
  return usrnet.USRNet(iterations=r.iterations, features=tuple(r.features), num_blocks=r.num_blocks,
                       border=r.border, hyper_features=r.hyper_features,
                       dtype=layers.compute_dtype(r.dtype, 'restorer.dtype'))


def create_train_state(config: ml_collections.ConfigDict, key: jax.Array) -> train_state.TrainState:
  model = create_model(config)
  params = model.init(key, jnp.zeros((1, 8, 8, 3), jnp.float32), jnp.full((1, 3, 3), 1 / 9, jnp.float32),
                      jnp.zeros((1,), jnp.float32), scales(config)[0])['params']
  return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=create_optimizer(config))


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The driver's Adam; with train.hyper_lr_scale ≠ 1, the hyper-network's updates scaled by it (its
  α and β are a few numbers that Adam's per-step limit of ~lr moves slowly; docs/results.md §4)."""
  tx = loop.create_optimizer(config)
  factor = hyper_lr_scale(config)
  if factor == 1.0:
    return tx  # the optimiser state of runs saved before the field
  labels = lambda params: {name: 'hyper' if name == HYPER_NET else 'rest' for name in params}  # a prefix
  return optax.multi_transform({'hyper': optax.chain(tx, optax.scale(factor)), 'rest': tx}, labels)


def train_step(state: train_state.TrainState, batch: dict[str, jax.Array], key: jax.Array, *,
               config: ml_collections.ConfigDict, variant: int = 0):
  """One L1 step at scale scales[variant] with the true kernels and noise level (the driver cycles
  `variant` over the scales, one per step); with restorer.kernel_error_*, told the widened kernels, with
  restorer.told_noise='estimate' the σ read off the LR."""
  del key  # No dropout; the batch carries all randomness.
  scale = scales(config)[variant]
  told = batch.get(f'told_kernel_x{scale}', batch['kernel'])
  sigma = _told_sigma(batch, scale)

  def loss_fn(params):
    sr = state.apply_fn({'params': params}, batch[f'lr_x{scale}'], told, sigma,
                        scale, clip=False, downsample=told_downsample(config))
    return jnp.mean(jnp.abs(sr - batch['hr'])), sr

  (loss, sr), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads)
  psnr = jnp.mean(metrics.psnr_rgb(jnp.clip(jax.lax.stop_gradient(sr), 0.0, 1.0), batch['hr']))
  return state, dict(l1=loss, psnr=psnr, scale=jnp.asarray(scale, jnp.float32))


def _told_sigma(batch: dict[str, jax.Array], scale: int) -> jax.Array:
  """The noise σ USRNet is told at `scale`: the estimate read off the LR where the batch has one
  (restorer.told_noise='estimate'), else the true σ."""
  return batch.get(f'told_noise_x{scale}', batch['noise_sigma'])


def eval_step(state, batch: dict[str, jax.Array], *, config, mean_kernel: np.ndarray) -> dict[str, jax.Array]:
  """Per scale: SR with the true kernels, with the family's mean kernel, and bicubic; their PSNRs. The
  noise σ is told as in training (`_told_sigma`)."""
  out = {}
  b = batch['hr'].shape[0]
  mean = jnp.broadcast_to(jnp.asarray(mean_kernel), (b,) + mean_kernel.shape)
  method = told_downsample(config)
  for s in scales(config):
    lr = batch[f'lr_x{s}']
    sigma = _told_sigma(batch, s)
    true_sr = state.apply_fn({'params': state.params}, lr, batch['kernel'], sigma, s, downsample=method)
    mean_sr = state.apply_fn({'params': state.params}, lr, mean, sigma, s, downsample=method)
    bicubic = degradation.bicubic_upsample(lr, s, degradation.lr_grid(method))
    out[f'psnr_true_kernel_x{s}'] = metrics.psnr_rgb(true_sr, batch['hr'])
    out[f'psnr_mean_kernel_x{s}'] = metrics.psnr_rgb(mean_sr, batch['hr'])
    out[f'psnr_bicubic_x{s}'] = metrics.psnr_rgb(bicubic, batch['hr'])
    out[f'sr_x{s}'] = true_sr
  return out


def summarize_eval(out, eval_batch, *, config) -> tuple[dict[str, float], np.ndarray]:
  """Mean PSNR per scale and kernel (true / mean) and bicubic's; a labelled LR | SR | HR figure at the
  largest scale."""
  scalars = {k: float(np.mean(v)) for k, v in out.items() if k.startswith('psnr_')}
  s = max(scales(config))
  grid = visualize.restoration_grid(eval_batch[f'lr_x{s}'], out[f'sr_x{s}'], eval_batch['hr'],
                                    sr_label=f'{NAME} ×{s} (true kernel)')
  return scalars, grid


def describe_eval(scalars) -> list[str]:
  """The closing summary's reading: per scale, true kernel vs mean kernel vs bicubic."""
  lines = []
  for s in degradation.SCALES:
    if f'psnr_true_kernel_x{s}' not in scalars:
      continue
    true, mean = scalars[f'psnr_true_kernel_x{s}'], scalars[f'psnr_mean_kernel_x{s}']
    bicubic = scalars[f'psnr_bicubic_x{s}']
    lines.append(f'×{s}: PSNR (RGB) of {NAME} with the true kernels {true:.2f} dB, with the mean kernel '
                 f'{mean:.2f} dB ({true - mean:+.2f} dB for knowing the kernel), bicubic {bicubic:.2f} dB.')
  return lines


def checkpoint_meta(config: ml_collections.ConfigDict) -> dict:
  return dict(kind=CHECKPOINT_KIND, config=config.to_dict())


def task(config: ml_collections.ConfigDict) -> loop.Task:
  """USRNet as a task of the shared training driver."""
  check_fields(config)
  inputs = data.task_inputs(config)
  batch_fn = make_batch_fn(config)
  mean = kernels_lib.mean_kernel(degradation_at(config, scales(config)[0]), n=MEAN_KERNEL_SAMPLES,
                                 seed=config.seed + 7)
  return loop.Task(
      name='usrnet', kind=CHECKPOINT_KIND, meta=checkpoint_meta(config), **inputs,
      make_batch=lambda host, key: batch_fn(host['hr'], key),
      create_state=functools.partial(create_train_state, config),
      train_step=functools.partial(train_step, config=config),
      eval_step=functools.partial(eval_step, config=config, mean_kernel=mean),
      summarize_eval=functools.partial(summarize_eval, config=config), progress_keys=('l1', 'psnr'),
      describe_eval=describe_eval,
      train_variants=len(scales(config)),
      warm_start=lambda state, source: modelio.warm_start(state, source, CHECKPOINT_KIND))


# ---------------------------------------------------------------------------------------------------
# Inference.


@functools.partial(jax.jit, static_argnames=('scale', 'downsample', 'grid'))
def _restore(state, lr, kernels, noise_sigma, scale, downsample, grid):
  return state.apply_fn({'params': state.params}, lr, kernels, noise_sigma, scale, downsample=downsample, grid=grid)


# Reflect padding (LR pixels) at inference, whatever the training border: the trained data steps reach
# ~30–40 LR pixels, so with the :cpu model's training border of 8 the photo's edges depended on the
# far side of the circular canvas (tiled vs whole differed by 44 levels there); with 48 they agree to
# 0.01 levels (docs/conventions.md, "USRNet").
INFERENCE_BORDER = 48


def inference_border(config: ml_collections.ConfigDict) -> int:
  return max(int(config.restorer.border), INFERENCE_BORDER)


def receptive_field(config: ml_collections.ConfigDict) -> int:
  """LR pixels each side that matter to an output pixel (to float32 round-off on photos: the data
  step is global, but its influence decays; measured in tests/test_restorers_usrnet.py)."""
  return inference_border(config) + 16


def from_state(config: ml_collections.ConfigDict, state: Any, step: int = 0,
               directory: str = '') -> base.Restorer:
  family = str(config.degradation.family)
  model = create_model(config).clone(border=inference_border(config))
  return base.Restorer(
      name=NAME, config=config, state=state.replace(apply_fn=model.apply), step=step, directory=directory,
      apply=_restore,
      receptive_field=receptive_field(config), kernel_size=usrnet.MAX_KERNEL_SIZE,
      takes_noise=config.degradation.noise_max > 0, scales=scales(config),
      families=kernels_lib.members(family))


def load(source: str, step: int | None = None) -> base.Restorer:
  """Loads USRNet from a model bundle (`python -m s2k_jax.export`), a training workdir or its
  `checkpoints/` directory (latest step unless `step` is given)."""
  config, state, step, path, _ = modelio.load_for_inference(
      source, CHECKPOINT_KIND, lambda config: functools.partial(create_train_state, config), step)
  return from_state(config, state, step, path)


def widen_bundle(source: str, out: str, features: tuple[int, ...], seed: int = 0) -> str:
  """A USRNet bundle with its prior grown to `features` (`models.usrnet.widen_prior`: the same restorer,
  more channels to fine-tune with `train.init_from=out` and `restorer.features=features`); returns `out`.
  The bundle's config records the new widths, its `trained_on` what it was grown from."""
  meta, trees = modelio.read_bundle(source, CHECKPOINT_KIND)
  params = usrnet.widen_prior(trees['params'], features, jax.random.key(seed))
  header = {key: meta[key] for key in ('format', 'kind', 'step', 'dtype')}
  meta = {key: value for key, value in meta.items() if key not in header}
  grown = (f'{os.path.basename(source)} (step {header["step"]}, prior widths '
           f'{tuple(meta["config"]["restorer"]["features"])}) widened to {tuple(features)}')
  meta['trained_on'] = '; '.join(filter(None, (grown, meta.get('trained_on', ''))))
  meta['config'] = dict(meta['config'], restorer=dict(meta['config']['restorer'], features=list(features)))
  return modelio.write_bundle(out, kind=CHECKPOINT_KIND, step=header['step'], meta=meta, params=params,
                              pca=trees['pca'], dtype=header['dtype'])
