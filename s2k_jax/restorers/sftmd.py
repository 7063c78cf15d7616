"""SFTMD (IKC) as a restorer: trained on (LR, true kernel code) pairs, and its inference (paper §3.4).

Its colours and brightness: with `restorer.anchor = 'bicubic'` (the default, and what bundles without
the field get) the output keeps what the LR image already fixes, the bicubic upsampling's chroma
(`color.with_luma_of`, SRCNN's convention) and its luma at the lowest frequencies (`ANCHOR_SIGMA`); the
network supplies the luma detail. Training and inference alike. Unanchored, a restorer trained on
grayscale photos too shifts a colour photo's channel means (measured: docs/conventions.md, "Colour").

Same shape as `s2k_jax/estimator.py`. Training uses the shared driver (`loop.run`) and the same
on-device degradation as the estimator; what differs is the state (SFTMD parameters plus the fixed PCA
basis of the kernel code, `pca.restorer_code`), the step (L1, as IKC) and the evaluation (PSNR with
the true kernel). `load` returns the `base.Restorer` the pipeline and evaluation use.
"""
import functools
import math
from typing import Any

from flax import struct
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from s2k_jax import color
from s2k_jax import data
from s2k_jax import degradation
from s2k_jax import images
from s2k_jax import loop
from s2k_jax import metrics
from s2k_jax import modelio
from s2k_jax import pca
from s2k_jax import visualize
from s2k_jax.models import layers
from s2k_jax.models import sftmd
from s2k_jax.restorers import base

CHECKPOINT_KIND = 'sftmd_restorer'
NAME = 'SFTMD'
ANCHOR_MODES = ('bicubic', 'none')  # restorer.anchor: what the output keeps of the bicubic upsampling
# Gaussian σ (LR pixels) of the luma the output takes from the bicubic upsampling: frequencies below
# ~1/(2π·8) cycles per LR pixel, which blur kernels of the three families barely attenuate.
ANCHOR_SIGMA = 8.0
ANCHOR_REACH = math.ceil(3 * ANCHOR_SIGMA) + 2  # LR pixels: the low-pass, then Keys' cubic (2)
# HR pixels an output moved to another LR grid reads beyond its own: Keys' cubic (2) around an offset
# of up to (4 − 1)/2 = 1.5 (`_restore`).
GRID_REACH = 4


# ---------------------------------------------------------------------------------------------------
# Training.


class RestorerState(train_state.TrainState):
  pca: Any = struct.field(default=None)  # The kernel-code basis: fixed, saved with the parameters.


def with_noise(config: ml_collections.ConfigDict) -> bool:
  return config.degradation.noise_max > 0


def make_batch_fn(config: ml_collections.ConfigDict):
  """fn(hr uint8 (B, C, C, 3), key) → dict(hr, lr, kernel, noise_sigma) float32, jit-able."""
  deg = ml_collections.FrozenConfigDict(config.degradation)

  def batch_fn(hr_uint8: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
    hr = images.to_float(jnp.asarray(hr_uint8))
    out = degradation.degrade(hr, key, deg)
    return dict(hr=hr, lr=out['lr'], kernel=out['kernel'], noise_sigma=out['noise_sigma'])

  return batch_fn


def training_grid(config: ml_collections.ConfigDict) -> str:
  """The LR grid SFTMD learned (`degradation.lr_grid` of its downsampler): its outputs sit on it."""
  return degradation.lr_grid(config.degradation.downsample)


def anchor_mode(config: ml_collections.ConfigDict) -> str:
  """restorer.anchor, checked."""
  mode = config.restorer.anchor
  if mode not in ANCHOR_MODES:
    raise ValueError(f"restorer.anchor must be 'bicubic' (chroma and the lowest luma frequencies from the "
                     f"bicubic upsampling) or 'none' (the network's output as it is), got {mode!r}.")
  return mode


def _lowpass(x: jax.Array, sigma: float) -> jax.Array:
  """Separable Gaussian of (B, h, w, C), reflect-padded, truncated at 3σ (or the image): exact support."""
  for axis in (1, 2):
    half = min(math.ceil(3 * sigma), x.shape[axis] - 1)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (half, half)
    taps = metrics.gaussian_taps(2 * half + 1, sigma)
    x = metrics.correlate_valid(jnp.pad(x, pad, mode='reflect'), taps, axis)
  return x


def anchor_to_bicubic(sr: jax.Array, lr: jax.Array, scale: int) -> jax.Array:
  """`sr` (B, h·s, w·s, 3) on the bicubic upsampling of `lr`: its chroma, and its luma low-passed at
  `ANCHOR_SIGMA` (the grey difference averaged over each LR pixel's s×s block, low-passed on the LR
  grid, Keys-upsampled). Unclipped, differentiable. Pixel-centre geometry whatever the LR grid: at
  these frequencies an offset of (s − 1)/2 HR pixels is immaterial, and it is what the shipped models
  were trained with."""
  bicubic = degradation.bicubic_upsample(lr, scale, 'centre')
  out = color.with_luma_of(bicubic, sr)
  b, height, width, c = out.shape
  blocks = (bicubic - out).reshape(b, height // scale, scale, width // scale, scale, c).mean(axis=(2, 4))
  return out + jax.image.resize(_lowpass(blocks, ANCHOR_SIGMA), out.shape, 'bicubic')


def create_model(config: ml_collections.ConfigDict) -> sftmd.SFTMD:
  r = config.restorer
  dtype = layers.compute_dtype(r.dtype, 'restorer.dtype') or jnp.float32
  return sftmd.SFTMD(scale=config.degradation.scale, features=r.features, num_blocks=r.num_blocks,
                     code_len=r.pca_components + int(with_noise(config)), dtype=dtype)


def fit_basis(config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """The PCA basis of the configured family at the restorer's kernel size (seeded, deterministic)."""
  r = config.restorer
  return pca.fit_pca_for_config(config.degradation, n=r.pca_samples, seed=r.pca_seed,
                                kernel_size=r.kernel_size, n_components=r.pca_components,
                                center=r.pca_center)


def create_train_state(config: ml_collections.ConfigDict, basis: dict[str, np.ndarray],
                       key: jax.Array) -> RestorerState:
  model = create_model(config)
  lr = jnp.zeros((1, 8, 8, 3), jnp.float32)
  params = model.init(key, lr, jnp.zeros((1, model.code_len), jnp.float32))['params']
  return RestorerState.create(apply_fn=model.apply, params=params, tx=loop.create_optimizer(config),
                              pca={k: jnp.asarray(v) for k, v in basis.items()})


def kernel_codes(state: Any, kernels: jax.Array, noise_sigma: jax.Array | None,
                 config: ml_collections.ConfigDict) -> jax.Array:
  """The code SFTMD reads: `pca.restorer_code`, with the noise entry when trained with noise."""
  return pca.restorer_code(kernels, state.pca, noise_sigma if with_noise(config) else None)


def predict(state: Any, params: Any, lr: jax.Array, code: jax.Array, config: ml_collections.ConfigDict,
            clip: bool) -> jax.Array:
  """SFTMD's SR of `lr` for `code`, anchored per `restorer.anchor`, clipped to [0, 1] if `clip`."""
  sr = state.apply_fn({'params': params}, lr, code, clip=False)
  if anchor_mode(config) == 'bicubic':
    sr = anchor_to_bicubic(sr, lr, int(config.degradation.scale))
  return jnp.clip(sr, 0.0, 1.0) if clip else sr


def train_step(state: RestorerState, batch: dict[str, jax.Array], key: jax.Array, *,
               config: ml_collections.ConfigDict) -> tuple[RestorerState, dict[str, jax.Array]]:
  """One L1 step of SFTMD on (LR, true kernel code) → HR."""
  del key  # SFTMD has no dropout; the batch carries all randomness.
  code = kernel_codes(state, batch['kernel'], batch['noise_sigma'], config)

  def loss_fn(params):
    # L1 on the raw output: always a gradient towards the target (see SFTMD.__call__'s `clip`).
    sr = predict(state, params, batch['lr'], code, config, clip=False)
    return jnp.mean(jnp.abs(sr - batch['hr'])), sr

  (loss, sr), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads)
  sr = jnp.clip(jax.lax.stop_gradient(sr), 0.0, 1.0)
  return state, dict(l1=loss, psnr=jnp.mean(metrics.psnr_rgb(sr, batch['hr'])))


def eval_step(state: RestorerState, batch: dict[str, jax.Array], *, config) -> dict[str, jax.Array]:
  """SR with the true kernels, its PSNR, and the PSNR of bicubic upsampling (the kernel-free baseline)."""
  code = kernel_codes(state, batch['kernel'], batch['noise_sigma'], config)
  sr = predict(state, state.params, batch['lr'], code, config, clip=True)
  bicubic = degradation.bicubic_upsample(batch['lr'], int(config.degradation.scale), training_grid(config))
  return dict(sr=sr, psnr=metrics.psnr_rgb(sr, batch['hr']), psnr_bicubic=metrics.psnr_rgb(bicubic, batch['hr']))


def summarize_eval(out, eval_batch) -> tuple[dict[str, float], np.ndarray]:
  """Validation PSNR (true kernels) and bicubic's on the same batch, and a labelled figure of
  LR (nearest-upscaled) | SR | HR rows."""
  grid = visualize.restoration_grid(eval_batch['lr'], out['sr'], eval_batch['hr'],
                                    sr_label=f'{NAME} (true kernel)')
  return ({'psnr_true_kernel': float(np.mean(out['psnr'])),
           'psnr_bicubic': float(np.mean(out['psnr_bicubic']))}, grid)


def describe_eval(scalars) -> list[str]:
  """The closing summary's reading of the latest eval scalars: PSNR with the true kernel vs bicubic."""
  if 'psnr_true_kernel' not in scalars:
    return []
  line = f'PSNR (RGB) of {NAME} with the true kernels: {scalars["psnr_true_kernel"]:.2f} dB'
  if 'psnr_bicubic' in scalars:
    gain = scalars['psnr_true_kernel'] - scalars['psnr_bicubic']
    line += f'; bicubic upsampling: {scalars["psnr_bicubic"]:.2f} dB ({gain:+.2f} dB).'
    if gain <= 0:
      return [line, f'{NAME} is not yet better than bicubic: train longer (raise --config.train.num_steps).']
    return [line]
  return [line + '.']


def checkpoint_meta(config: ml_collections.ConfigDict) -> dict:
  return dict(kind=CHECKPOINT_KIND, config=config.to_dict())


def task(config: ml_collections.ConfigDict) -> loop.Task:
  """SFTMD as a task of the shared training driver; the PCA basis is fitted once here (seeded)."""
  inputs = data.task_inputs(config)  # Checks the config before the basis is fitted.
  anchor_mode(config)
  training_grid(config)  # one downsampler (not random resizers): its outputs sit on that one's grid
  create_model(config)  # the network's settings (e.g. restorer.dtype)
  basis = fit_basis(config)
  batch_fn = make_batch_fn(config)
  return loop.Task(
      name='sftmd', kind=CHECKPOINT_KIND, meta=checkpoint_meta(config), **inputs,
      make_batch=lambda host, key: batch_fn(host['hr'], key),
      create_state=functools.partial(create_train_state, config, basis),
      train_step=functools.partial(train_step, config=config),
      eval_step=functools.partial(eval_step, config=config),
      summarize_eval=summarize_eval, progress_keys=('l1', 'psnr'), describe_eval=describe_eval,
      warm_start=lambda state, source: modelio.warm_start(state, source, CHECKPOINT_KIND))


# ---------------------------------------------------------------------------------------------------
# Inference.


def _basis_shapes(config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """Zero arrays of the basis' shapes (the real basis is restored from the checkpoint or bundle)."""
  r = config.restorer
  return dict(components=np.zeros((r.kernel_size ** 2, r.pca_components), np.float32),
              mean=np.zeros((r.kernel_size ** 2,), np.float32),
              variance=np.zeros((r.pca_components,), np.float32))


@functools.partial(jax.jit, static_argnames=('scale', 'downsample', 'grid', 'config'))
def _restore(state, lr, kernels, noise_sigma, scale, downsample, grid, config):
  code = kernel_codes(state, kernels, noise_sigma, config)
  sr = predict(state, state.params, lr, code, config, clip=True)
  # SFTMD's output sits on the grid it was trained on; moved (Keys cubic) to the LR image's grid. Its
  # kernel code knows only the blur: a resizer's filter other than its training one is not modelled.
  shift = (degradation.grid_offset(scale, grid or degradation.lr_grid(downsample))
           - degradation.grid_offset(scale, training_grid(config)))
  return jnp.clip(degradation.translate(sr, shift), 0.0, 1.0)


def from_state(config: ml_collections.ConfigDict, state: Any, step: int = 0,
               directory: str = '') -> base.Restorer:
  """A `base.Restorer` around an SFTMD state (a RestorerState or its `modelio.InferenceState`)."""
  scale = int(config.degradation.scale)
  reach = sftmd.receptive_field_radius(scale, config.restorer.num_blocks) + math.ceil(GRID_REACH / scale)
  if anchor_mode(config) == 'bicubic':
    reach += ANCHOR_REACH
  return base.Restorer(
      name=NAME, config=config, state=state, step=step, directory=directory,
      apply=functools.partial(_restore, config=ml_collections.FrozenConfigDict(config)),
      receptive_field=reach,
      kernel_size=int(config.restorer.kernel_size), takes_noise=with_noise(config),
      scales=(int(config.degradation.scale),), families=(str(config.degradation.family),))


def load(source: str, step: int | None = None) -> base.Restorer:
  """Loads SFTMD (parameters and PCA basis) from a model bundle (`python -m s2k_jax.export`), a
  training workdir or its `checkpoints/` directory (latest step unless `step` is given)."""
  config, state, step, path, _ = modelio.load_for_inference(
      source, CHECKPOINT_KIND,
      lambda config: functools.partial(create_train_state, config, _basis_shapes(config)), step)
  return from_state(config, state, step, path)
