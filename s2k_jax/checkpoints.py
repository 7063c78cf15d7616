"""The checkpoint layout, in one place: one orbax step directory holding the train state, the grain
iterator state and a JSON record (config, kind, conventions). Training writes and resumes it; inference
reads the record and the state (`modelio`).
"""
import os
from typing import Any, Mapping

from absl import logging
import grain
import jax
import orbax.checkpoint as ocp

# A training workdir's checkpoints folder, and the items of each of its step directories.
SUBDIR = 'checkpoints'
STATE, DATA_ITER, META = 'state', 'data_iter', 'meta'

# Orbax's replica-parallel save (on by default off GPUs) splits every replicated array into one slice per
# replica, and each slice is a jitted `slice_in_dim` compiled afresh for its shape and offset: the first
# save of 150 small arrays replicated over 8 CPU devices took 11.9 s (0.4 s without; a :smoke estimator's
# state is ~1100 slices). Slices under 1 MiB are not worth a program each: the first replica writes such
# an array whole, as on one device; larger ones (big models on pods) are still written in parallel.
MIN_REPLICA_SLICE_BYTES = 1 << 20


def _register_array_handler() -> None:
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)  # The override is meant: no WARNING about it on every run's stderr.
  try:
    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(min_slice_bytes_for_replica_parallel=MIN_REPLICA_SLICE_BYTES),
        override=True)
  finally:
    logging.set_verbosity(verbosity)


_register_array_handler()


def checkpoint_manager(workdir: str, max_to_keep: int) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  local = '://' not in workdir  # a bucket path (gs://…) stays as it is
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir) if local else workdir, SUBDIR), options=options,
      item_names=(STATE, DATA_ITER, META))


def save_checkpoint(mngr: ocp.CheckpointManager, step: int, state: Any, data_iter,
                    meta: Mapping[str, Any]) -> None:
  items = {STATE: ocp.args.StandardSave(state), META: ocp.args.JsonSave(dict(meta))}
  if data_iter is not None:
    items[DATA_ITER] = grain.checkpoint.CheckpointSave(data_iter)
  mngr.save(step, args=ocp.args.Composite(**items), force=True)


def restore_checkpoint(mngr: ocp.CheckpointManager, step: int, abstract_state: Any, data_iter):
  """Restores state (onto the shardings of `abstract_state`) and, in place, the data iterator."""
  items = {STATE: ocp.args.StandardRestore(abstract_state)}
  if data_iter is not None:
    items[DATA_ITER] = grain.checkpoint.CheckpointRestore(data_iter)
  try:
    restored = mngr.restore(step, args=ocp.args.Composite(**items))
  except ValueError as e:
    if 'tree structures do not match' not in str(e):
      raise
    parts = [line.strip().rstrip(':') for line in str(e).splitlines()[1:]
             if line.strip() and not line.startswith(' ') and not line.startswith('If this')]
    raise ValueError(f'{mngr.directory}: the checkpoint at step {step} holds another train state than this '
                     f'config builds (differing: {", ".join(parts) or "its layout"}; e.g. another model size, '
                     'or train.ema_decay switched on or off): resume with the config it was trained with '
                     '(saved in its meta), or train in a fresh --workdir.') from None
  return restored[STATE]


def has_data_state(mngr: ocp.CheckpointManager, step: int) -> bool:
  """Whether the checkpoint at `step` holds this process's data-iterator state: grain writes one file
  per process, named by its index and the process count (so not when another count saved it)."""
  name = f'process_{jax.process_index()}-of-{jax.process_count()}.json'
  return (mngr.directory / str(step) / DATA_ITER / name).exists()  # an etils path: local or a bucket


def read_meta(checkpoint_dir: str, step: int | None = None) -> dict:
  """Reads the JSON metadata (config, kind, conventions) of a checkpoint directory without jax state."""
  mngr = ocp.CheckpointManager(checkpoint_dir, options=ocp.CheckpointManagerOptions(create=False),
                               item_names=(META,))
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f'no checkpoint found in {checkpoint_dir}: train a model there first.')
  return mngr.restore(step, args=ocp.args.Composite(**{META: ocp.args.JsonRestore()}))[META]


def checkpoints_dir(workdir_or_checkpoints: str) -> str:
  """A training workdir or its `checkpoints/` directory → the absolute checkpoints directory."""
  path = os.path.abspath(workdir_or_checkpoints)
  if os.path.isdir(os.path.join(path, SUBDIR)):
    path = os.path.join(path, SUBDIR)
  if not os.path.isdir(path):
    raise FileNotFoundError(f'{workdir_or_checkpoints}: no such checkpoint directory.')
  return path
