"""Kernel estimation with a trained S2K generator (paper §3.3–3.4: LR → spectrum → Kernel↑ → kernel).

`load_estimator` rebuilds the generator from the config saved in the checkpoint (so inference never
guesses sizes or conventions) and `estimate_kernels` runs it, jitted, on a batch of LR images of one size.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from s2k_jax import export
from s2k_jax import spectrum
from s2k_jax import train


CHECKPOINT_KIND = train.CHECKPOINT_KIND


@dataclasses.dataclass(frozen=True)
class Estimator:
  config: ml_collections.ConfigDict
  state: dict[str, export.InferenceState]  # {'gen': generator apply_fn, params, batch_stats}
  step: int
  directory: str       # the checkpoints directory or bundle file it was loaded from


def _check_convention(source: str, meta: dict) -> None:
  if meta.get('kernel_map') != spectrum.KERNEL_MAP_CONVENTION:
    raise ValueError(f'{source}: kernel-map convention {meta.get("kernel_map")!r} differs from this '
                     f'version\'s {spectrum.KERNEL_MAP_CONVENTION!r}; retrain or use the matching s2k-jax '
                     'version.')


def load_estimator(source: str, step: int | None = None) -> Estimator:
  """Loads an estimator from a model bundle (`export.py`), a training workdir or its `checkpoints/`.

  A checkpoint loads its latest step unless `step` is given; only the generator is kept.
  """
  config, gen, step, path, meta = export.load_for_inference(
      source, CHECKPOINT_KIND, lambda config: functools.partial(train.create_train_state, config), step,
      select=lambda state: state['gen'])
  _check_convention(source, meta)
  return Estimator(config=config, state={'gen': gen}, step=step, directory=path)


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
