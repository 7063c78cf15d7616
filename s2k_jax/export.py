r"""Compact model bundles: what inference needs of a trained model, in one safe `.npz` file.

A training checkpoint (orbax, `loop.save_checkpoint`) holds everything needed to resume: both GAN
networks, Adam moments, the data iterator. Inference needs much less: the S2K generator (§3.3) with its
BatchNorm statistics, or the SFTMD (§3.4) with its PCA kernel-code basis, plus the config that fixes
sizes and conventions. A bundle is exactly that:

  python -m s2k_jax.export --workdir runs/gaussian_cpu --out gaussian_estimator.npz
  python -m s2k_jax.export --workdir runs/sftmd_gaussian_x4_cpu --out sftmd_gaussian_x4.npz

Format (`FORMAT`): a NumPy `.npz` (zip) read with `allow_pickle=False`, so loading never runs code:
  `meta`              uint8 bytes of a JSON object: format, kind, step, config, kernel_map convention,
                      parameter dtype, source checkpoint, free-text `trained_on`;
  `params/<a>/<b>/…`  the network's parameters (float16 by default: half the size, outputs equal to
                      float32 ones within the tolerance measured in tests/test_export.py);
  `batch_stats/…`     BatchNorm running statistics (estimator; always float32);
  `pca/…`             the restorer's kernel-code basis (always float32).

`estimator.load_estimator` / `restorer.load_restorer` accept a bundle wherever they accept a training
workdir; `pretrained_path` finds the bundles that ship inside the package (`s2k_jax/weights/`).
"""
from collections.abc import Mapping, Sequence
import json
import os
import zipfile
from typing import Any, Callable

from absl import app
from absl import flags
from flax import struct
import jax
import ml_collections
import numpy as np

from s2k_jax import loop

FORMAT = 's2k-jax-bundle/1'
SUFFIX = '.npz'
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'weights')
# Parameters are stored in this dtype unless asked otherwise; statistics and bases stay float32.
DEFAULT_DTYPE = 'float16'
_FLOAT_DTYPES = ('float16', 'float32')
# The trees a bundle may hold (InferenceState's fields), with the names errors use for them.
_TREES = {'params': 'parameters', 'batch_stats': 'BatchNorm statistics', 'pca': 'PCA basis'}


class BundleError(ValueError):
  """A file that is not a usable model bundle; the message names the file and what to do."""


@struct.dataclass
class InferenceState:
  """The part of a train state that inference reads (same attribute names as flax's TrainState)."""
  apply_fn: Callable = struct.field(pytree_node=False)
  params: Any
  batch_stats: Any = None   # Estimator: BatchNorm running statistics.
  pca: Any = None           # Restorer: the kernel-code basis (`pca.fit_pca`).


def inference_state(state: Any) -> InferenceState:
  """The part of a training state (the generator's TrainState, a RestorerState) that inference reads."""
  return InferenceState(apply_fn=state.apply_fn, params=state.params,
                        batch_stats=getattr(state, 'batch_stats', None), pca=getattr(state, 'pca', None))


def is_bundle(path: str | os.PathLike) -> bool:
  """True for an existing file (a bundle, or something that should be one); False for directories."""
  return os.path.isfile(path)


# ---------------------------------------------------------------------------------------------------
# Trees ↔ flat arrays.


def _flatten(tree: Mapping[str, Any], prefix: str) -> dict[str, np.ndarray]:
  flat = {}
  for key, value in tree.items():
    name = f'{prefix}/{key}'
    if isinstance(value, Mapping):
      flat.update(_flatten(value, name))
    else:
      flat[name] = np.asarray(jax.device_get(value))
  return flat


def _unflatten(flat: Mapping[str, np.ndarray], prefix: str) -> dict[str, Any] | None:
  tree: dict[str, Any] = {}
  for name, value in flat.items():
    head, *path = name.split('/')
    if head != prefix:
      continue
    node = tree
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = value
  return tree or None


# ---------------------------------------------------------------------------------------------------
# Writing and reading.


def write_bundle(path: str | os.PathLike, *, kind: str, step: int, meta: Mapping[str, Any],
                 params: Mapping[str, Any], batch_stats: Mapping[str, Any] | None = None,
                 pca: Mapping[str, Any] | None = None, dtype: str = DEFAULT_DTYPE) -> str:
  """Writes a bundle atomically (temporary file, then rename); returns its path."""
  if dtype not in _FLOAT_DTYPES:
    raise ValueError(f'bundle dtype must be one of {_FLOAT_DTYPES}, got {dtype!r}.')
  path = os.fspath(path)
  if not path.endswith(SUFFIX):
    raise ValueError(f'{path}: a bundle file name must end in {SUFFIX}.')
  arrays = {k: v.astype(dtype) if np.issubdtype(v.dtype, np.floating) else v
            for k, v in _flatten(params, 'params').items()}
  for prefix, tree in (('batch_stats', batch_stats), ('pca', pca)):
    if tree:
      arrays.update({k: v.astype(np.float32) for k, v in _flatten(tree, prefix).items()})
  header = dict(meta, format=FORMAT, kind=kind, step=int(step), dtype=dtype)
  arrays['meta'] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), np.uint8)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + '.tmp'
  with open(tmp, 'wb') as f:
    np.savez_compressed(f, **arrays)
  os.replace(tmp, path)
  return path


def read_bundle(path: str | os.PathLike, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
  """Reads a bundle of the given kind → (meta, dict(params, batch_stats, pca)); float32 arrays.

  Raises BundleError naming the file for anything that is not a bundle of this kind and format.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such model bundle.')
  try:
    with np.load(path, allow_pickle=False) as npz:
      flat = {name: npz[name] for name in npz.files}
  except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
    raise BundleError(f'{path}: not a readable s2k-jax model bundle ({type(e).__name__}: {e}). Pass a '
                      f'{SUFFIX} file written by `python -m s2k_jax.export`, or a training workdir; '
                      'if the file was downloaded or copied, it may be truncated: copy it again.') from e
  if 'meta' not in flat:
    raise BundleError(f'{path}: a .npz file but not an s2k-jax model bundle (no meta entry); write one '
                      'with `python -m s2k_jax.export`.')
  try:
    meta = json.loads(flat.pop('meta').tobytes().decode())
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise BundleError(f'{path}: the bundle metadata is corrupt ({e}); export the model again.') from e
  if meta.get('format') != FORMAT:
    raise BundleError(f'{path}: bundle format {meta.get("format")!r}, this s2k-jax reads {FORMAT!r}; '
                      'export the model again with this version.')
  if meta.get('kind') != kind:
    raise BundleError(f'{path} holds a {meta.get("kind")!r} model, not a {kind!r} one; pass the '
                      'matching bundle.')
  flat = {k: v.astype(np.float32) if np.issubdtype(v.dtype, np.floating) else v for k, v in flat.items()}
  trees = {prefix: _unflatten(flat, prefix) for prefix in _TREES}
  if trees['params'] is None:
    raise BundleError(f'{path}: the bundle holds no parameters; export the model again.')
  return meta, trees


def _check_tree_shapes(path: str, name: str, got: Any, expected: Any) -> None:
  """Compares a bundle's tree with the shapes its config implies; BundleError naming the file if off."""
  got_shapes = jax.tree.map(np.shape, got)
  want_shapes = jax.tree.map(lambda x: tuple(x.shape), expected)
  if got_shapes != want_shapes:
    raise BundleError(f'{path}: the {name} do not match the network its config describes (corrupt or '
                      'hand-edited bundle); export the model again.')


def load_for_inference(source: str, kind: str,
                       make_create_state: Callable[[ml_collections.ConfigDict], Callable],
                       step: int | None = None, select: Callable[[Any], Any] = lambda state: state):
  """A model bundle or a training checkpoint → (config, InferenceState, step, path, meta).

  Checkpoints go through `loop.restore_for_inference`. A bundle's shapes are checked against the state
  its saved config builds (`select` picks the part a bundle holds, e.g. the generator of the GAN
  state), then it is placed like a restored checkpoint: replicated over every device.
  """
  if not is_bundle(source):
    config, state, step, path, meta = loop.restore_for_inference(source, kind, make_create_state, step)
    return config, inference_state(select(state)), step, path, meta
  if step is not None:
    raise ValueError(f'{source} is a model bundle (one fixed step); --step applies to training workdirs.')
  meta, trees = read_bundle(source, kind)
  config = ml_collections.ConfigDict(meta['config'])
  expected = inference_state(select(jax.eval_shape(make_create_state(config), jax.random.key(0))))
  for name, label in _TREES.items():
    _check_tree_shapes(source, label, trees[name] or {}, getattr(expected, name) or {})
  state = expected.replace(**{name: tree for name, tree in trees.items() if tree is not None})
  return (config, jax.device_put(state, loop.replicated(loop.make_mesh())), int(meta['step']),
          os.path.abspath(source), meta)


# ---------------------------------------------------------------------------------------------------
# Bundles that ship with the package.

# Name → file in s2k_jax/weights/. What they were trained on: s2k_jax/weights/README.md.
PRETRAINED_ESTIMATORS = {f: f'{f}_estimator.npz' for f in ('gaussian', 'motion', 'disk')}
PRETRAINED_RESTORERS = {('gaussian', 4): 'sftmd_gaussian_x4.npz', ('motion', 4): 'sftmd_motion_x4.npz'}


def pretrained_path(filename: str) -> str:
  path = os.path.join(WEIGHTS_DIR, filename)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'the shipped model {filename} is missing from {WEIGHTS_DIR}: reinstall '
                            's2k-jax, or pass your own with --estimator/--restorer.')
  return path


def pretrained_estimator(family: str) -> str:
  if family not in PRETRAINED_ESTIMATORS:
    raise ValueError(f'no shipped estimator for the {family!r} family; shipped: '
                     f'{", ".join(sorted(PRETRAINED_ESTIMATORS))}.')
  return pretrained_path(PRETRAINED_ESTIMATORS[family])


def pretrained_restorer(family: str, scale: int) -> str:
  if (family, scale) not in PRETRAINED_RESTORERS:
    shipped = ', '.join(f'{f} ×{s}' for f, s in sorted(PRETRAINED_RESTORERS))
    raise ValueError(f'no shipped restorer for {family} kernels at ×{scale}; shipped: {shipped}. Train one '
                     f'with `python train.py --config configs/sftmd.py:{family}_x{scale}` and pass it with '
                     '--restorer.')
  return pretrained_path(PRETRAINED_RESTORERS[(family, scale)])


# ---------------------------------------------------------------------------------------------------
# Command line: checkpoint → bundle.

FLAGS = flags.FLAGS


def export(workdir: str, out: str, *, step: int | None = None, dtype: str = DEFAULT_DTYPE,
           trained_on: str = '') -> str:
  """Exports the estimator or restorer checkpoint in `workdir` (latest step by default) to `out`."""
  # Imported here: estimator/restorer import this module for InferenceState.
  from s2k_jax import estimator as estimator_lib  # pylint: disable=g-import-not-at-top
  from s2k_jax import restorer as restorer_lib  # pylint: disable=g-import-not-at-top
  checkpoints = loop.checkpoints_dir(workdir)
  meta = loop.read_meta(checkpoints, step)
  if meta.get('kind') == restorer_lib.CHECKPOINT_KIND:
    model = restorer_lib.load_restorer(workdir, step)
    kind, state = restorer_lib.CHECKPOINT_KIND, model.state
  else:  # load_estimator names the kind if it is neither.
    model = estimator_lib.load_estimator(workdir, step)
    kind, state = estimator_lib.CHECKPOINT_KIND, model.state['gen']
  meta = dict(meta, checkpoint=os.path.relpath(checkpoints), trained_on=trained_on)
  return write_bundle(out, kind=kind, step=model.step, meta=meta, params=state.params,
                      batch_stats=state.batch_stats, pca=state.pca, dtype=dtype)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  loop.quiet_library_logs()
  out = loop.exit_on_user_error(lambda: export(FLAGS.workdir, FLAGS.out, step=FLAGS.step, dtype=FLAGS.dtype,
                                               trained_on=FLAGS.trained_on))
  print(f'Wrote {out} ({os.path.getsize(out) / 2**20:.1f} MiB)')


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'Training workdir (or its checkpoints/) of an estimator or restorer.')
  flags.DEFINE_string('out', None, f'Bundle file to write (ends in {SUFFIX}).')
  flags.DEFINE_integer('step', None, 'Checkpoint step to export (default: the latest).')
  flags.DEFINE_enum('dtype', DEFAULT_DTYPE, list(_FLOAT_DTYPES), 'Storage dtype of the parameters.')
  flags.DEFINE_string('trained_on', '', 'Free text saved in the bundle: data, hardware, steps.')
  flags.mark_flags_as_required(['workdir', 'out'])
  app.run(main)
