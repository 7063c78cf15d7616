"""Kernel estimation with a trained S2K generator (paper §3.3–3.4: LR → spectrum → Kernel↑ → kernel).

`load_estimator` rebuilds the generator from the config saved in the checkpoint (so inference never
guesses sizes or conventions) and `estimate_kernels` runs it, jitted, on a batch of LR images of one size.
"""
import dataclasses
import functools
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
  config, state, step, path, meta = loop.restore_for_inference(
      workdir_or_checkpoints, train.CHECKPOINT_KIND,
      lambda config: functools.partial(train.create_train_state, config), step)
  if meta.get('kernel_map') != spectrum.KERNEL_MAP_CONVENTION:
    raise ValueError(f'{workdir_or_checkpoints}: kernel-map convention {meta.get("kernel_map")!r} differs '
                     f'from this version\'s {spectrum.KERNEL_MAP_CONVENTION!r}; retrain or use the '
                     'matching s2k-jax version.')
  return Estimator(config=config, state=state, step=step, directory=path)


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
