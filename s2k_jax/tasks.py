"""The models this project trains, in one table: what `train.py` and the loaders dispatch on.

`config.task` names the model a config trains; a checkpoint's or bundle's recorded `kind` names the
module that loads it. A new restorer is one module in `s2k_jax/restorers/` with the shape of
`restorers/sftmd.py` plus one line in each table below.
"""
import os
from types import ModuleType

import ml_collections

from s2k_jax import checkpoints
from s2k_jax import estimator
from s2k_jax import loop
from s2k_jax import modelio
from s2k_jax.restorers import base
from s2k_jax.restorers import sftmd
from s2k_jax.restorers import usrnet

# config.task → the model module whose `task(config)` the driver runs.
TASKS: dict[str, ModuleType] = {'estimator': estimator, 'sftmd': sftmd, 'usrnet': usrnet}
# Checkpoint/bundle kind → the restorer module whose `load(source, step)` reads it.
RESTORERS: dict[str, ModuleType] = {sftmd.CHECKPOINT_KIND: sftmd, usrnet.CHECKPOINT_KIND: usrnet}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Trains the model `config.task` names in `workdir`, resuming from its latest checkpoint if there is
  one; returns the final train state."""
  name = config.task
  if name not in TASKS:
    raise ValueError(f'config.task must be one of {sorted(TASKS)}, got {name!r}.')
  return loop.run(TASKS[name].task(config), config, workdir)


def load_restorer(source: str, step: int | None = None) -> base.Restorer:
  """Any restorer from a bundle or training workdir, by the kind recorded in it."""
  kind = modelio.read_kind(source)
  if kind not in RESTORERS:
    raise ValueError(f'{source} holds a {kind!r} model, not a restorer ({", ".join(sorted(RESTORERS))}); '
                     'pass a restorer trained with configs/usrnet.py or configs/sftmd.py, or its bundle.')
  return RESTORERS[kind].load(source, step)


def export_bundle(workdir: str, out: str, *, step: int | None = None,
                  dtype: str = modelio.DEFAULT_DTYPE, trained_on: str = '', raw_weights: bool = False) -> str:
  """Writes the estimator or restorer checkpoint in `workdir` (latest step by default) as a model
  bundle `out` (`modelio.write_bundle`); returns its path. `raw_weights`: an estimator's raw generator
  weights instead of their moving average (`estimator.load`)."""
  checkpoint_dir = checkpoints.checkpoints_dir(workdir)
  meta = checkpoints.read_meta(checkpoint_dir, step)
  kind = meta.get('kind')
  if kind in RESTORERS:
    if raw_weights:
      raise ValueError(f'{workdir} holds a {kind!r} checkpoint: raw_weights applies to estimators trained '
                       'with train.ema_decay > 0; leave it out.')
    model = RESTORERS[kind].load(workdir, step)
    state = model.state
  else:  # estimator.load names the kind if it is neither.
    model = estimator.load(workdir, step, average=not raw_weights)
    kind, state = estimator.CHECKPOINT_KIND, model.state['gen']
  meta = dict(meta, checkpoint=os.path.relpath(checkpoint_dir), trained_on=trained_on)
  return modelio.write_bundle(out, kind=kind, step=model.step, meta=meta, params=state.params,
                              batch_stats=state.batch_stats, pca=state.pca, dtype=dtype)
