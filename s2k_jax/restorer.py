"""The non-blind restorer: SFTMD trained on (LR, true kernel code) pairs, and its inference (paper §3.4).

Training uses the estimator's driver (`loop.run`) and the same on-device degradation; only the state
(SFTMD parameters plus the fixed PCA basis of the kernel code), the step (L1, Eq. of IKC) and the
evaluation (PSNR with the true kernel) differ. `load_restorer` / `restore` serve the blind SR pipeline.
"""
import dataclasses
import functools
import os
from typing import Any

from flax import struct
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from s2k_jax import export
from s2k_jax import kernels as kernels_lib
from s2k_jax import loop
from s2k_jax import pca
from s2k_jax import visualize
from s2k_jax.models import sftmd

CHECKPOINT_KIND = 'sftmd_restorer'


class RestorerState(train_state.TrainState):
  pca: Any = struct.field(default=None)  # The kernel-code basis: fixed, saved with the parameters.


def with_noise(config: ml_collections.ConfigDict) -> bool:
  return config.degradation.noise_max > 0


def create_model(config: ml_collections.ConfigDict) -> sftmd.SFTMD:
  r = config.restorer
  return sftmd.SFTMD(scale=config.degradation.scale, features=r.features, num_blocks=r.num_blocks,
                     code_len=r.pca_components + int(with_noise(config)))


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


def kernel_codes(state: RestorerState, kernels: jax.Array, noise_sigma: jax.Array | None,
                 config: ml_collections.ConfigDict) -> jax.Array:
  """Kernels of any odd size → the restorer's canvas → PCA code (+ noise entry when noise is on).

  The code is divided by the first component's standard deviation (one global factor: distances
  between codes keep their geometry) so its leading entries are O(1) like the features they are
  concatenated with; raw codes are ~0.01 and a fresh SFTMD learned to ignore them (docs/conventions.md).
  """
  k = kernels_lib.resize_canvas(kernels, config.restorer.kernel_size)
  codes = pca.encode(k, state.pca) / jnp.sqrt(state.pca['variance'][0])
  if not with_noise(config):
    return codes
  return jnp.concatenate([codes, pca.NOISE_CODE_SCALE * noise_sigma[:, None]], axis=1)


def psnr_rgb(a: jax.Array, b: jax.Array) -> jax.Array:
  """Per-image PSNR (dB) on [0, 1] RGB; the training monitor (paper-style Y-channel metrics: evaluation)."""
  mse = jnp.mean((a - b) ** 2, axis=(1, 2, 3))
  return 10.0 * jnp.log10(1.0 / jnp.maximum(mse, 1e-10))


def train_step(state: RestorerState, batch: dict[str, jax.Array], key: jax.Array, *,
               config: ml_collections.ConfigDict) -> tuple[RestorerState, dict[str, jax.Array]]:
  """One L1 step of SFTMD on (LR, true kernel code) → HR."""
  del key  # SFTMD has no dropout; the batch carries all randomness.
  code = kernel_codes(state, batch['kernel'], batch['noise_sigma'], config)

  def loss_fn(params):
    # L1 on the raw output: always a gradient towards the target (see SFTMD.__call__'s `clip`).
    sr = state.apply_fn({'params': params}, batch['lr'], code, clip=False)
    return jnp.mean(jnp.abs(sr - batch['hr'])), sr

  (loss, sr), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads)
  sr = jnp.clip(jax.lax.stop_gradient(sr), 0.0, 1.0)
  return state, dict(l1=loss, psnr=jnp.mean(psnr_rgb(sr, batch['hr'])))


def eval_step(state: RestorerState, batch: dict[str, jax.Array], *, config) -> dict[str, jax.Array]:
  code = kernel_codes(state, batch['kernel'], batch['noise_sigma'], config)
  sr = state.apply_fn({'params': state.params}, batch['lr'], code)
  return dict(sr=sr, psnr=psnr_rgb(sr, batch['hr']))


def log_eval(out, eval_batch, writer, workdir, step):
  """Validation PSNR (true kernels) and a PNG of LR (nearest-upscaled) | SR | HR rows."""
  writer.write(step, {'eval/psnr_true_kernel': float(np.mean(out['psnr']))})
  hr = np.asarray(jax.device_get(eval_batch['hr']))
  lr = np.asarray(jax.device_get(eval_batch['lr']))
  s = hr.shape[1] // lr.shape[1]
  rows = [np.concatenate([np.repeat(np.repeat(lr[i], s, 0), s, 1), out['sr'][i], hr[i]], axis=1)
          for i in range(min(4, hr.shape[0]))]
  grid = visualize.to_uint8(np.concatenate(rows, axis=0))
  if jax.process_index() == 0:
    visualize.save_png(os.path.join(workdir, 'samples', f'step_{step:07d}.png'), grid)
    writer.write_image(step, 'eval/sr', grid)


def restorer_task(config: ml_collections.ConfigDict) -> loop.Task:
  """SFTMD as a task of the shared training driver; the PCA basis is fitted once here (seeded)."""
  basis = fit_basis(config)
  meta = dict(kind=CHECKPOINT_KIND, config=config.to_dict())
  return loop.Task(
      name='sftmd', kind=CHECKPOINT_KIND, meta=meta,
      create_state=functools.partial(create_train_state, config, basis),
      train_step=functools.partial(train_step, config=config),
      eval_step=functools.partial(eval_step, config=config),
      log_eval=log_eval, progress_keys=('l1', 'psnr'))


# ---------------------------------------------------------------------------------------------------
# Inference.


@dataclasses.dataclass(frozen=True)
class Restorer:
  config: ml_collections.ConfigDict
  state: export.InferenceState  # SFTMD apply_fn, params and the PCA basis
  step: int
  directory: str                # the checkpoints directory or bundle file it was loaded from

  @property
  def scale(self) -> int:
    return int(self.config.degradation.scale)

  @property
  def kernel_size(self) -> int:
    return int(self.config.restorer.kernel_size)


def _basis_shapes(config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """Zero arrays of the basis' shapes (the real basis is restored from the checkpoint or bundle)."""
  r = config.restorer
  return dict(components=np.zeros((r.kernel_size ** 2, r.pca_components), np.float32),
              mean=np.zeros((r.kernel_size ** 2,), np.float32),
              variance=np.zeros((r.pca_components,), np.float32))


def load_restorer(source: str, step: int | None = None) -> Restorer:
  """Loads a restorer (parameters and PCA basis) from a model bundle (`export.py`), a training workdir
  or its `checkpoints/` directory (latest step unless `step` is given)."""
  config, state, step, path, _ = export.load_for_inference(
      source, CHECKPOINT_KIND,
      lambda config: functools.partial(create_train_state, config, _basis_shapes(config)), step)
  return Restorer(config=config, state=state, step=step, directory=path)


@functools.partial(jax.jit, static_argnames=('config',))
def _restore(state, lr, kernels, noise_sigma, config):
  code = kernel_codes(state, kernels, noise_sigma, config)
  return state.apply_fn({'params': state.params}, lr, code)


def restore(restorer: Restorer, lr: jax.Array, kernels: jax.Array,
            noise_sigma: jax.Array | None = None) -> jax.Array:
  """Non-blind SR: LR (B, h, w, 3) in [0, 1] and kernels (B, k, k) of any odd k → (B, h·s, w·s, 3)."""
  lr = jnp.asarray(lr)
  if lr.dtype == jnp.uint8:
    lr = lr.astype(jnp.float32) / 255.0
  sigma = jnp.zeros((lr.shape[0],), jnp.float32) if noise_sigma is None else jnp.asarray(noise_sigma)
  return _restore(restorer.state, lr, jnp.asarray(kernels, jnp.float32), sigma,
                  ml_collections.FrozenConfigDict(restorer.config))
