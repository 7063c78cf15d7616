"""s2k_jax/checkpoints.py: the step directory's items, and saving a replicated train state without one
compiled program per replica slice (MIN_REPLICA_SLICE_BYTES)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2k_jax import checkpoints
from s2k_jax import sharding

COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'


@pytest.fixture
def compiles():
  """The number of XLA compilations since the test began (jax.monitoring's compile-duration events)."""
  seen = []

  def listener(event, duration, **kwargs):
    del duration, kwargs
    if event == COMPILE_EVENT:
      seen.append(event)

  jax.monitoring.register_event_duration_secs_listener(listener)
  yield seen
  jax.monitoring.unregister_event_duration_listener(listener)


def test_a_replicated_state_saves_and_restores_without_a_program_per_replica(tmp_path, compiles):
  """40 small arrays replicated over the 8 test devices: orbax's default would compile a `slice_in_dim`
  per array and replica (320 programs, seconds each save on CPU); below MIN_REPLICA_SLICE_BYTES the first
  replica writes each whole. The restored state is the saved one, on the same sharding."""
  mesh = sharding.make_mesh()
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  state = {f'w{i}': jax.device_put(jnp.arange(16 * (i + 1), dtype=jnp.float32).reshape(16, i + 1) + 0.5,
                                   replicated) for i in range(40)}
  assert all(x.nbytes < checkpoints.MIN_REPLICA_SLICE_BYTES for x in state.values())
  mngr = checkpoints.checkpoint_manager(str(tmp_path), max_to_keep=1)
  before = len(compiles)
  checkpoints.save_checkpoint(mngr, 1, state, None, {'kind': 'test'})
  mngr.wait_until_finished()
  assert len(compiles) - before < 10, f'{len(compiles) - before} programs compiled to save 40 arrays'
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
  restored = checkpoints.restore_checkpoint(mngr, 1, abstract, None)
  for key, value in state.items():
    assert restored[key].sharding == replicated
    np.testing.assert_array_equal(np.asarray(restored[key]), np.asarray(value), err_msg=key)
  assert checkpoints.read_meta(str(tmp_path / checkpoints.SUBDIR)) == {'kind': 'test'}
