"""Training-loop plumbing shared by every model of the project (estimator §3.3, restorer §3.4).

The S2K estimator and the SFTMD restorer train with the same driver features: a data-parallel mesh,
one orbax `CheckpointManager` holding the train state, the grain iterator state and a JSON record of
the config; a preemption guard; a non-finite-loss stop; metrics to JSONL and TensorBoard; a progress
bar. They live here once; `s2k_jax/train.py` composes them into the linear training driver.
"""
import json
import logging as std_logging
import os
import signal
import threading
from typing import Any, Mapping

from absl import flags
from absl import logging
import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def quiet_library_logs() -> None:
  """Entry points: orbax and grain log every save and read at INFO from their threads, drowning the
  progress bar; raise the threshold to WARNING unless the user chose one (--verbosity / -v)."""
  if not flags.FLAGS['verbosity'].present:
    std_logging.getLogger().setLevel(std_logging.WARNING)


class NonFiniteLossError(RuntimeError):
  """Raised when a training loss becomes NaN or infinite."""


# ---------------------------------------------------------------------------------------------------
# Devices and sharding.


def maybe_initialize_distributed(enabled: bool) -> None:
  """Multi-host start-up (TPU pods, multi-node GPU): one call per host before any other jax call."""
  if enabled and jax.process_count() == 1 and not jax.distributed.is_initialized():
    jax.distributed.initialize()


def make_mesh() -> Mesh:
  """A 1-D data-parallel mesh over every device of every host ('data' axis)."""
  return Mesh(np.asarray(jax.devices()), ('data',))


def check_batch_divisible(global_batch: int, mesh: Mesh) -> None:
  n = mesh.devices.size
  if global_batch % n:
    raise ValueError(
        f'train.batch_size={global_batch} is not divisible by the {n} devices of the mesh; '
        f'set --config.train.batch_size to a multiple of {n}.')


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P('data'))


# ---------------------------------------------------------------------------------------------------
# Checkpoints: train state + data iterator + JSON metadata in one orbax step directory.


def checkpoint_manager(workdir: str, max_to_keep: int) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'), options=options,
      item_names=('state', 'data_iter', 'meta'))


def save_checkpoint(mngr: ocp.CheckpointManager, step: int, state: Any, data_iter,
                    meta: Mapping[str, Any]) -> None:
  items = dict(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta)))
  if data_iter is not None:
    items['data_iter'] = grain.checkpoint.CheckpointSave(data_iter)
  mngr.save(step, args=ocp.args.Composite(**items), force=True)


def restore_checkpoint(mngr: ocp.CheckpointManager, step: int, abstract_state: Any, data_iter):
  """Restores state (onto the shardings of `abstract_state`) and, in place, the data iterator."""
  items = dict(state=ocp.args.StandardRestore(abstract_state))
  if data_iter is not None:
    items['data_iter'] = grain.checkpoint.CheckpointRestore(data_iter)
  restored = mngr.restore(step, args=ocp.args.Composite(**items))
  return restored['state']


def read_meta(checkpoint_dir: str, step: int | None = None) -> dict:
  """Reads the JSON metadata (config, kind, conventions) of a checkpoint directory without jax state."""
  mngr = ocp.CheckpointManager(checkpoint_dir, options=ocp.CheckpointManagerOptions(read_only=True),
                               item_names=('meta',))
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f'no checkpoint found in {checkpoint_dir}: train a model there first.')
  return mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']


def abstract_like(state: Any, sharding: NamedSharding) -> Any:
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state)


# ---------------------------------------------------------------------------------------------------
# Preemption and non-finite losses.


class PreemptionGuard:
  """Turns SIGTERM (TPU/GPU preemption, `kill`) into a flag the loop polls, so it can save and exit."""

  def __init__(self, signals=(signal.SIGTERM,)):
    self.requested = False
    self._previous = {}
    if threading.current_thread() is threading.main_thread():
      for sig in signals:
        self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    del frame
    logging.warning('Received signal %d: saving a checkpoint and stopping.', signum)
    self.requested = True

  def should_stop(self, step: int, mngr: ocp.CheckpointManager) -> bool:
    # On multi-host jobs JAX's preemption notifier agrees on one step across hosts.
    return self.requested or (jax.process_count() > 1 and mngr.reached_preemption(step))

  def close(self):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def check_finite(metrics: Mapping[str, Any], step: int, mngr: ocp.CheckpointManager) -> None:
  """Raises NonFiniteLossError naming the step and the last good checkpoint if any loss is not finite."""
  bad = {k: float(v) for k, v in metrics.items() if not np.isfinite(np.asarray(v)).all()}
  if bad:
    last = mngr.latest_step()
    where = (f'the last good checkpoint is step {last} in {mngr.directory}; restarting resumes from it'
             if last is not None else 'no checkpoint was saved yet')
    raise NonFiniteLossError(
        f'non-finite loss at step {step}: {bad}; {where}. Lower train.learning_rate or check the data.')


# ---------------------------------------------------------------------------------------------------
# Metrics.


class MetricWriter:
  """Scalars to `<workdir>/metrics.jsonl` and TensorBoard (`<workdir>/tensorboard`), host 0 only."""

  def __init__(self, workdir: str):
    self.enabled = jax.process_index() == 0
    self._tb = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a', encoding='utf-8')
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def write(self, step: int, scalars: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    values = {k: float(v) for k, v in scalars.items()}
    self._jsonl.write(json.dumps(dict(step=int(step), **values)) + '\n')
    self._jsonl.flush()
    for k, v in values.items():
      self._tb.add_scalar(k, v, int(step))

  def write_image(self, step: int, name: str, image: np.ndarray) -> None:
    if self.enabled:
      self._tb.add_image(name, image, int(step), dataformats='HWC')

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._tb.close()
