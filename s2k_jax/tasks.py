"""The models this project trains, in one table: what `train.py` and the loaders dispatch on.

`config.task` names the model a config trains; a checkpoint's or bundle's recorded `kind` names the
module that loads it. A new restorer is one module in `s2k_jax/restorers/` with the shape of
`restorers/sftmd.py` plus one line in each table below.
"""
import dataclasses
import functools
import os
from types import ModuleType

import ml_collections

from s2k_jax import checkpoints
from s2k_jax import estimator
from s2k_jax import family as family_lib
from s2k_jax import kernels
from s2k_jax import loop
from s2k_jax import modelio
from s2k_jax.restorers import base
from s2k_jax.restorers import sftmd
from s2k_jax.restorers import usrnet

# config.task → the model module whose `task(config)` the driver runs.
TASKS: dict[str, ModuleType] = {'estimator': estimator, 'sftmd': sftmd, 'usrnet': usrnet, 'family': family_lib}
# Checkpoint/bundle kind → the restorer module whose `load(source, step)` reads it.
RESTORERS: dict[str, ModuleType] = {sftmd.CHECKPOINT_KIND: sftmd, usrnet.CHECKPOINT_KIND: usrnet}
# The other kinds `export_bundle` reads with their module's `load`; an estimator has its own options.
_NOT_ESTIMATORS: dict[str, ModuleType] = {**RESTORERS, family_lib.CHECKPOINT_KIND: family_lib}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Trains the model `config.task` names in `workdir`, resuming from its latest checkpoint if there is
  one; returns the final train state. The run closes with `next_steps`."""
  name = config.task
  if name not in TASKS:
    raise ValueError(f'config.task must be one of {sorted(TASKS)}, got {name!r}.')
  task = dataclasses.replace(TASKS[name].task(config), next_steps=functools.partial(next_steps, config))
  return loop.run(task, config, workdir)


def next_steps(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
  """Commands to try with the model trained in `workdir`, as typed in an activated environment
  (`commands.runnable` makes them runnable as printed): evaluate it, super-resolve a photo with it and
  the shipped model it goes with."""
  if config.task == 'family':
    scale = int(config.degradation.scale)
    return [f's2k-sr your_photo.png --out sr_out --scale {scale} --family auto --classifier {workdir}   # '
            f'blind ×{scale} SR with the shipped estimator of the kernel family it recognises']
  family, task = config.degradation.family, config.task
  # The scale to try: a restorer of several scales (USRNet) at its largest.
  scale = max(int(s) for s in config.restorer.scales) if task == 'usrnet' else int(config.degradation.scale)
  kind = 'estimator' if task == 'estimator' else 'restorer'
  evaluated = ('kernel errors on the held-out photos (Figure 6)' if kind == 'estimator' else
               f'PSNR/SSIM: bicubic, {TASKS[task].NAME} with the mean and the true kernels (Table 1)')
  lines = [f'python evaluate.py --{kind} {workdir} --out {os.path.join(workdir, "eval")}   # {evaluated}']
  sr = f's2k-sr your_photo.png --out sr_out --{kind} {workdir}'
  if kind == 'restorer':
    family = 'gaussian' if family == kernels.MIXED else family
    if (family, scale) in modelio.PRETRAINED_ESTIMATORS:
      return lines + [f'{sr} --family {family} --scale {scale}   # blind ×{scale} SR with the shipped {family} '
                      'estimator']
    train = f'--config configs/{family}.py:photo --config.degradation.scale={scale} --workdir ESTIMATOR_WORKDIR'
    return lines + [f'{sr} --estimator ESTIMATOR_WORKDIR   # train a {family} ×{scale} estimator first: '
                    f'python train.py {train}']
  if family == kernels.MIXED:  # The shipped USRNet serves every family.
    return lines + [f'{sr}   # blind ×{scale} SR with the shipped restorer']
  if (family, scale) in modelio.PRETRAINED_RESTORERS[modelio.DEFAULT_RESTORER]:
    return lines + [f'{sr} --family {family}   # blind ×{scale} SR with the shipped restorer']
  train = '--config configs/usrnet.py --workdir RESTORER_WORKDIR'
  return lines + [f'{sr} --restorer RESTORER_WORKDIR   # train a restorer first: python train.py {train}']


def load_restorer(source: str, step: int | None = None) -> base.Restorer:
  """Any restorer from a bundle or training workdir, by the kind recorded in it."""
  kind = modelio.read_kind(source)
  if kind not in RESTORERS:
    raise ValueError(f'{source} holds a {kind!r} model, not a restorer ({", ".join(sorted(RESTORERS))}); '
                     'pass a restorer trained with configs/usrnet.py or configs/sftmd.py, or its bundle.')
  return RESTORERS[kind].load(source, step)


def export_bundle(workdir: str, out: str, *, step: int | None = None,
                  dtype: str = modelio.DEFAULT_DTYPE, trained_on: str = '', raw_weights: bool = False) -> str:
  """Writes the estimator, restorer or family-classifier checkpoint in `workdir` (latest step by default)
  as a model bundle `out` (`modelio.write_bundle`); returns its path. `raw_weights`: an estimator's raw generator
  weights instead of their moving average (`estimator.load`)."""
  checkpoint_dir = checkpoints.checkpoints_dir(workdir)
  meta = checkpoints.read_meta(checkpoint_dir, step)
  kind = meta.get('kind')
  if kind in _NOT_ESTIMATORS:
    if raw_weights:
      raise ValueError(f'{workdir} holds a {kind!r} checkpoint: raw_weights applies to estimators trained '
                       'with train.ema_decay > 0; leave it out.')
    model = _NOT_ESTIMATORS[kind].load(workdir, step)
    state = model.state
  else:  # estimator.load names the kind if it is neither.
    model = estimator.load(workdir, step, average=not raw_weights)
    kind, state = estimator.CHECKPOINT_KIND, model.state['gen']
  meta = dict(meta, checkpoint=os.path.relpath(checkpoint_dir), trained_on=trained_on)
  return modelio.write_bundle(out, kind=kind, step=model.step, meta=meta, params=state.params,
                              batch_stats=state.batch_stats, pca=state.pca, dtype=dtype)
