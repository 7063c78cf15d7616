"""Data parallelism (paper §4 trains on one GPU; here any number of devices): the 1-D ('data',) mesh over
every device of every host, its shardings, host batches → global arrays. Used by training, evaluation
and inference alike.
"""
import functools
from typing import Any, Mapping

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np


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


def shard_batch(host_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Host-local arrays → global jax.Arrays sharded P('data') over the mesh.

  Each process passes its own B_local rows; the global batch is their concatenation in process
  order (`jax.make_array_from_process_local_data`). B_local must split evenly over the local devices.
  """
  sharding = data_sharded(mesh)
  local_devices = len(mesh.local_devices)

  def put(x):
    x = np.asarray(x)
    if x.shape[0] % local_devices:
      raise ValueError(f'host batch of {x.shape[0]} rows cannot be split over {local_devices} local devices; '
                       'make the per-host batch a multiple of the local device count.')
    return jax.make_array_from_process_local_data(sharding, x)

  return jax.tree.map(put, dict(host_batch))


def shard_replicated_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """The same whole batch on every process (e.g. the fixed eval batch) → global jax.Arrays sharded
  P('data'): each device takes its own rows (`shard_batch` would concatenate every process's copy)."""
  sharding = data_sharded(mesh)

  def put(x):
    x = np.asarray(x)
    if x.shape[0] % mesh.devices.size:
      raise ValueError(f'a batch of {x.shape[0]} rows cannot be split over the {mesh.devices.size} devices of '
                       'the mesh; make it a multiple of the device count (e.g. train.eval_batch_size).')
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree.map(put, dict(batch))


def gather(tree: Any, mesh: Mesh) -> Any:
  """Arrays sharded over the mesh → arrays every process can read whole (a process can fetch only
  arrays it holds entirely): with several processes, replicated on every device; else as they are."""
  if all(x.is_fully_addressable for x in jax.tree.leaves(tree)):
    return tree
  return _replicate(mesh)(tree)


@functools.cache
def _replicate(mesh: Mesh):
  return jax.jit(lambda tree: tree, out_shardings=replicated(mesh))


def abstract_like(state: Any, sharding: NamedSharding) -> Any:
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state)
