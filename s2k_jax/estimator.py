"""Kernel estimation with a trained S2K generator (paper §3.3–3.4: LR → spectrum → Kernel↑ → kernel).

`load_estimator` rebuilds the generator from the config saved in the checkpoint (so inference never
guesses sizes or conventions) and `estimate_kernels` runs it, jitted, on a batch of LR images of one size.
"""
import dataclasses
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from s2k_jax import loop
from s2k_jax import spectrum
from s2k_jax import train


@dataclasses.dataclass(frozen=True)
class Estimator:
  config: ml_collections.ConfigDict
  state: Any            # {'gen': TrainState, 'disc': TrainState}
  step: int
  directory: str


def load_estimator(workdir_or_checkpoints: str, step: int | None = None) -> Estimator:
  """Loads an estimator from a training workdir (or its `checkpoints/` directory); latest step by default."""
  path = os.path.abspath(workdir_or_checkpoints)
  if os.path.isdir(os.path.join(path, 'checkpoints')):
    path = os.path.join(path, 'checkpoints')
  if not os.path.isdir(path):
    raise FileNotFoundError(f'{workdir_or_checkpoints}: no such checkpoint directory.')
  meta = loop.read_meta(path, step)
  if meta.get('kind') != train.CHECKPOINT_KIND:
    raise ValueError(f'{workdir_or_checkpoints} holds a {meta.get("kind")!r} checkpoint, not an S2K '
                     f'estimator ({train.CHECKPOINT_KIND!r}); pass the workdir of `train.py`.')
  if meta.get('kernel_map') != spectrum.KERNEL_MAP_CONVENTION:
    raise ValueError(f'{workdir_or_checkpoints}: kernel-map convention {meta.get("kernel_map")!r} differs '
                     f'from this version\'s {spectrum.KERNEL_MAP_CONVENTION!r}; retrain or use the '
                     'matching s2k-jax version.')
  config = ml_collections.ConfigDict(meta['config'])
  abstract = loop.abstract_like(
      jax.eval_shape(functools.partial(train.create_train_state, config), jax.random.key(0)),
      loop.replicated(loop.make_mesh()))
  mngr = loop.checkpoint_manager(os.path.dirname(path), config.train.keep_checkpoints)
  step = mngr.latest_step() if step is None else step
  state = loop.restore_checkpoint(mngr, step, abstract, data_iter=None)
  mngr.close()
  return Estimator(config=config, state=state, step=int(step), directory=path)


@functools.partial(jax.jit, static_argnames=('size', 'mode', 'ksize', 'spatial'))
def _estimate(state, lr, *, size, mode, ksize, spatial):
  inputs = spectrum.spatial_input(lr, size) if spatial else spectrum.amplitude_spectrum(lr, size, mode)
  maps = train.estimate_maps(state, inputs)
  return spectrum.map_to_kernel(maps, ksize), maps, inputs


def estimate_kernels(est: Estimator, lr: np.ndarray | jax.Array, mode: str | None = None) -> dict:
  """LR batch (B, h, w, 3) in [0, 1] (uint8 is rescaled) → dict(kernel (B, k, k), kernel_map, inputs)."""
  lr = jnp.asarray(lr)
  if lr.dtype == jnp.uint8:
    lr = lr.astype(jnp.float32) / 255.0
  c = est.config
  kernels, maps, inputs = _estimate(est.state, lr, size=int(c.spectrum.size),
                                    mode=str(mode or c.spectrum.mode), ksize=int(c.degradation.kernel_size),
                                    spatial=c.model.input == 'spatial')
  return dict(kernel=kernels, kernel_map=maps, inputs=inputs)
