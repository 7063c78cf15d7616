"""Kernel estimation with a trained S2K generator (paper §3.3–3.4: LR → spectrum → Kernel↑ → kernel).

`load_estimator` rebuilds the generator from the config saved in the checkpoint (so inference never
guesses sizes or conventions) and `estimate_kernels` runs it, jitted, on a batch of LR images of one size.
"""
import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from s2k_jax import export
from s2k_jax import loop
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


def _from_bundle(path: str) -> Estimator:
  meta, trees = export.read_bundle(path, CHECKPOINT_KIND)
  _check_convention(path, meta)
  config = ml_collections.ConfigDict(meta['config'])
  expected = jax.eval_shape(functools.partial(train.create_train_state, config), jax.random.key(0))['gen']
  export.check_tree_shapes(path, 'parameters', trees['params'], expected.params)
  export.check_tree_shapes(path, 'BatchNorm statistics', trees['batch_stats'] or {}, expected.batch_stats)
  gen = export.InferenceState(apply_fn=expected.apply_fn, params=trees['params'],
                              batch_stats=trees['batch_stats'] or {})
  return Estimator(config=config, state={'gen': jax.device_put(gen, loop.replicated(loop.make_mesh()))}, step=int(meta['step']),
                   directory=os.path.abspath(path))


def load_estimator(source: str, step: int | None = None) -> Estimator:
  """Loads an estimator from a model bundle (`export.py`), a training workdir or its `checkpoints/`.

  A checkpoint loads its latest step unless `step` is given; only the generator is kept.
  """
  if export.is_bundle(source):
    if step is not None:
      raise ValueError(f'{source} is a model bundle (one fixed step); --step applies to training workdirs.')
    return _from_bundle(source)
  config, state, step, path, meta = loop.restore_for_inference(
      source, CHECKPOINT_KIND, lambda config: functools.partial(train.create_train_state, config), step)
  _check_convention(source, meta)
  gs = state['gen']
  gen = export.InferenceState(apply_fn=gs.apply_fn, params=gs.params, batch_stats=gs.batch_stats)
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
