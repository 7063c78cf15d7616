r"""Model I/O: what inference reads of a trained model, from a training checkpoint or a model bundle.

The one low-level home of model files (imports no model module, so reading a file never needs one):
  * `InferenceState`: the part of a train state inference reads (parameters, BatchNorm statistics of
    the S2K generator §3.3, the restorer's PCA basis §3.4);
  * training checkpoints (orbax, written by `loop.run` in the layout of `checkpoints`):
    `restore_for_inference`, and `saved_config`, the one upgrade step of a saved config;
  * model bundles: one safe `.npz` per model (`write_bundle` / `read_bundle`, written by
    `python -m s2k_jax.export`);
  * `load_for_inference`: a bundle or a checkpoint → InferenceState, for the model modules' `load`;
  * the models that ship inside the package (`s2k_jax/weights/`, `pretrained_estimator` /
    `pretrained_restorer`).

Bundle format (`FORMAT`): a NumPy `.npz` (zip) read with `allow_pickle=False`, so loading never runs code:
  `meta`              uint8 bytes of a JSON object: format, kind, step, config, kernel_map convention,
                      parameter dtype, source checkpoint, free-text `trained_on`;
  `params/<a>/<b>/…`  the network's parameters (float16 by default: half the size, outputs equal to
                      float32 ones within the tolerance measured in tests/test_modelio.py);
  `batch_stats/…`     BatchNorm running statistics (estimator; always float32);
  `pca/…`             the restorer's kernel-code basis (always float32).
"""
from collections.abc import Mapping, Sequence
import json
import os
import zipfile
from typing import Any, Callable

from flax import struct
import jax
import ml_collections
import numpy as np

from s2k_jax import catalogue
from s2k_jax import checkpoints
from s2k_jax import commands
from s2k_jax import degradation
from s2k_jax import sharding

FORMAT = 's2k-jax-bundle/1'
SUFFIX = '.npz'
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'weights')
# Parameters are stored in this dtype unless asked otherwise; statistics and bases stay float32.
DEFAULT_DTYPE = 'float16'
FLOAT_DTYPES = ('float16', 'float32')
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
  if dtype not in FLOAT_DTYPES:
    raise ValueError(f'bundle dtype must be one of {FLOAT_DTYPES}, got {dtype!r}.')
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


def _unreadable(path: str, error: Exception) -> str:
  return (f'{path}: not a readable s2k-jax model bundle ({type(error).__name__}: {error}). Pass a '
          f'{SUFFIX} file written by `python -m s2k_jax.export`, or a training workdir; if the file was '
          'downloaded or copied, it may be truncated: copy it again.')


def read_bundle(path: str | os.PathLike,
                kind: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
  """Reads a bundle (of the given kind, if not None) → (meta, dict(params, batch_stats, pca)); float32.

  Raises BundleError naming the file for anything that is not a bundle of this kind and format.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such model bundle.')
  try:
    with np.load(path, allow_pickle=False) as npz:
      flat = {name: npz[name] for name in npz.files}
  except ValueError as e:
    if 'Object arrays cannot be loaded' not in str(e):  # A zip of arrays, one pickled.
      raise BundleError(_unreadable(path, e)) from e
    raise BundleError(f'{path}: holds pickled Python objects, which s2k-jax never loads (unpickling can run '
                      f'code; {e}). A bundle written by `python -m s2k_jax.export` has only numeric '
                      'arrays: export the model again, and do not load this file with allow_pickle=True.') from e
  except (OSError, zipfile.BadZipFile, EOFError) as e:
    raise BundleError(_unreadable(path, e)) from e
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
  if kind is not None and meta.get('kind') != kind:
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


# ---------------------------------------------------------------------------------------------------
# Training checkpoints, read for inference.


# A saved config's history, in one place: fields added since models were saved, per task, with the value
# that reproduces those models; fields removed since; task names changed since.
_ADDED_FIELDS = {'estimator': {'train.ema_decay': 0.0, 'model.dtype': 'float32'},
                 'usrnet': {'train.hyper_lr_scale': 1.0, 'restorer.dtype': 'float32'},
                 'sftmd': {'restorer.anchor': 'bicubic', 'restorer.dtype': 'float32'}}
_REMOVED_FIELDS = ('train.flip_invariant_l1',)  # now kernels.flip_invariant(family)
_RENAMED_TASKS = {'restorer': 'sftmd'}


def saved_config(meta: dict) -> ml_collections.ConfigDict:
  """The config saved with a checkpoint or bundle, brought up to date (the one upgrade step): the
  model modules read every field directly, as in a config made today."""
  config = ml_collections.ConfigDict(meta['config'])
  task = config.get('task', 'estimator')  # configs from before the field were the estimator's
  config.task = _RENAMED_TASKS.get(task, task)
  for dotted, value in _ADDED_FIELDS.get(config.task, {}).items():
    section, field = dotted.split('.')
    if field not in config[section]:
      config[section][field] = value
  for dotted in _REMOVED_FIELDS:
    section, field = dotted.split('.')
    if section in config and field in config[section]:
      del config[section][field]
  return config


def restore_for_inference(workdir_or_checkpoints: str, kind: str,
                          make_create_state: Callable[[ml_collections.ConfigDict], Callable],
                          step: int | None = None):
  """Loads a model for inference: (config, state, step, checkpoints dir, meta).

  Accepts a training workdir or its `checkpoints/` directory; checks the checkpoint's kind; rebuilds
  the state's shapes from the config saved with it (`make_create_state(config)` → key → state), so
  inference never guesses sizes.
  """
  path = checkpoints.checkpoints_dir(workdir_or_checkpoints)
  meta = checkpoints.read_meta(path, step)
  if meta.get('kind') != kind:
    raise ValueError(f'{workdir_or_checkpoints} holds a {meta.get("kind")!r} checkpoint, not a {kind!r} '
                     'one; pass the workdir of the matching training run.')
  config = saved_config(meta)
  abstract = sharding.abstract_like(jax.eval_shape(make_create_state(config), jax.random.key(0)),
                                    sharding.replicated(sharding.make_mesh()))
  mngr = checkpoints.checkpoint_manager(os.path.dirname(path), 1)
  step = mngr.latest_step() if step is None else step
  state = checkpoints.restore_checkpoint(mngr, step, abstract, data_iter=None)
  mngr.close()
  return config, state, int(step), path, meta


def read_kind(source: str) -> str:
  """The `kind` recorded in a bundle or a checkpoint (which model module loads it)."""
  if is_bundle(source):
    return str(read_bundle(source)[0].get('kind'))
  return str(checkpoints.read_meta(checkpoints.checkpoints_dir(source)).get('kind'))


def load_for_inference(source: str, kind: str,
                       make_create_state: Callable[[ml_collections.ConfigDict], Callable],
                       step: int | None = None, select: Callable[[Any], Any] = lambda state: state):
  """A model bundle or a training checkpoint → (config, InferenceState, step, path, meta).

  Checkpoints go through `restore_for_inference`. A bundle's shapes are checked against the state
  its saved config builds (`select` picks the part a bundle holds, e.g. the generator of the GAN
  state), then it is placed like a restored checkpoint: replicated over every device.
  """
  if not is_bundle(source):
    config, state, step, path, meta = restore_for_inference(source, kind, make_create_state, step)
    return config, inference_state(select(state)), step, path, meta
  if step is not None:
    raise ValueError(f'{source} is a model bundle (one fixed step); --step applies to training workdirs.')
  meta, trees = read_bundle(source, kind)
  config = saved_config(meta)
  expected = inference_state(select(jax.eval_shape(make_create_state(config), jax.random.key(0))))
  for name, label in _TREES.items():
    _check_tree_shapes(source, label, trees[name] or {}, getattr(expected, name) or {})
  state = expected.replace(**{name: tree for name, tree in trees.items() if tree is not None})
  return (config, jax.device_put(state, sharding.replicated(sharding.make_mesh())), int(meta['step']),
          os.path.abspath(source), meta)


def warm_start(part: Any, source: str, kind: str,
               check_meta: Callable[[dict], None] = lambda meta: None) -> Any:
  """A train state (or the part of one a bundle holds, e.g. the generator) with its parameters and
  BatchNorm statistics taken from the bundle `source` (`train.init_from`: fine-tuning). Its optimiser
  state and step stay fresh. A bundle of another kind or network shape is a BundleError naming it; a
  restorer's PCA basis must equal the one this run fitted (the kernel code would mean something else);
  `check_meta(meta)` may refuse the bundle's metadata (e.g. another kernel-map convention).
  """
  meta, trees = read_bundle(source, kind)
  check_meta(meta)
  for name in ('params', 'batch_stats'):
    _check_tree_shapes(source, _TREES[name], trees[name] or {}, getattr(part, name, None) or {})
  basis = getattr(part, 'pca', None)
  if basis is not None and trees['pca'] is not None:
    _check_tree_shapes(source, _TREES['pca'], trees['pca'], basis)
    if not all(np.allclose(np.asarray(basis[k]), trees['pca'][k], atol=1e-5) for k in basis):
      raise BundleError(f'{source}: its PCA basis differs from the one this run fitted (other kernel family, '
                        'canvas or restorer.pca_* fields): fine-tune with the config the bundle was trained '
                        f'with (its degradation and restorer sections: {meta["config"].get("degradation")}).')
  return part.replace(**{name: trees[name] for name in ('params', 'batch_stats') if trees[name] is not None})


# ---------------------------------------------------------------------------------------------------
# Bundles that ship with the package.

# Lookups over the catalogue of shipped models (s2k_jax/catalogue.py, the one place that lists them;
# what they were trained on: s2k_jax/weights/README.md).
# Estimators by (family, scale) for directly decimated LR; every family at ×2, ×3 and ×4.
PRETRAINED_ESTIMATORS = catalogue.estimators('direct')
# For LR on the centre grid (photos, images shrunk by a resizer), where another one measures better:
# estimators trained on LR from a resizer drawn per image (docs/benchmarks_sr.md).
RESIZED_ESTIMATORS = {key: file for key, file in catalogue.estimators('centre').items()
                      if PRETRAINED_ESTIMATORS.get(key) != file}
CLEAN_LR_ESTIMATOR = catalogue.by_name('gaussian_estimator').file  # the paper's setting; docs/results.md §1–3
ESTIMATOR_SCALE = catalogue.ESTIMATOR_SCALE
# Kernel-family classifiers (`s2k-sr --family auto`) by LR grid, then scale.
PRETRAINED_CLASSIFIERS = {grid: catalogue.classifiers(grid) for grid in degradation.LR_GRIDS}
AUTO_FAMILY = 'auto'  # `--family auto`: the family a classifier recognises, per image
# Restorers by network: SFTMD one per (family, scale); USRNet one for every family and scale.
PRETRAINED_RESTORERS = {name: catalogue.restorers(name) for name in catalogue.RESTORERS}
DEFAULT_RESTORER = catalogue.DEFAULT_RESTORER


def pretrained_path(filename: str) -> str:
  path = os.path.join(WEIGHTS_DIR, filename)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'the shipped model {filename} is missing from {WEIGHTS_DIR}: reinstall '
                            's2k-jax, or pass your own with --estimator/--restorer.')
  return path


def estimator_families() -> list[str]:
  return sorted({family for family, _ in PRETRAINED_ESTIMATORS})


def models_per_scale(items: Sequence[str], name: str, scales: Sequence[int],
                     scales_name: str) -> dict[int, str]:
  """'xS=MODEL' items (e.g. ['x2=runs/est2', 'x4=runs/est4']) → {S: MODEL}: a model chosen per scale of
  a run covering `scales`. `name` is the setting the items came from and `scales_name` the one that set
  the scales (e.g. '--scales=2,4'), for the error raised on a malformed or repeated item or a scale the
  run would not use."""
  chosen = {}
  for item in items:
    key, _, model = (part.strip() for part in item.partition('='))
    scale = int(key[1:]) if key.startswith('x') and key[1:].isdigit() else 0
    if not (scale > 0 and model):
      raise ValueError(f'{name} takes xS=MODEL items (e.g. x2=runs/est2, x4=runs/est4), got {item!r}.')
    if scale in chosen:
      raise ValueError(f'{name} names ×{scale} twice.')
    if scale not in scales:
      raise ValueError(f'{name} names ×{scale}, which {scales_name} does not cover; add the scale there or '
                       'drop the item.')
    chosen[scale] = model
  return chosen


def pretrained_estimator(family: str, scale: int = ESTIMATOR_SCALE, grid: str = 'direct') -> str:
  """The shipped estimator for a family and scale, for LR on `grid` (degradation.LR_GRIDS): on the
  'centre' grid the resizer-trained one where it ships (RESIZED_ESTIMATORS), else the one of
  PRETRAINED_ESTIMATORS."""
  degradation.check_grid(grid)
  if grid == 'centre' and (family, scale) in RESIZED_ESTIMATORS:
    return pretrained_path(RESIZED_ESTIMATORS[(family, scale)])
  if family not in estimator_families():
    raise ValueError(f'no shipped estimator for the {family!r} family; shipped: '
                     f'{", ".join(estimator_families())}.')
  if (family, scale) not in PRETRAINED_ESTIMATORS:
    shipped = ', '.join(f'×{s}' for f, s in sorted(PRETRAINED_ESTIMATORS) if f == family)
    # The real-photo recipe (:photo) of every shipped estimator at ×2 and ×3 (docs/results.md §5).
    train = commands.train_command(f'--config configs/{family}.py:photo --config.degradation.scale={scale} '
                                   '--workdir runs/est')
    raise ValueError(f'the shipped {family} estimators read {shipped} LR images, not ×{scale}; train one '
                     f'({train}) and pass it with --estimator.')
  return pretrained_path(PRETRAINED_ESTIMATORS[(family, scale)])


def pretrained_classifier(scale: int = ESTIMATOR_SCALE, grid: str = 'direct') -> str:
  """The shipped kernel-family classifier for LR of `scale` on `grid` (degradation.LR_GRIDS)."""
  degradation.check_grid(grid)
  table = PRETRAINED_CLASSIFIERS[grid]
  if scale not in table:
    shipped = ', '.join(f'×{s}' for s in sorted(table))
    resized = (' --config.degradation.downsample=random_resizer "--config.degradation.sigma_range=(0.2,3.4)" '
               '--config.degradation.sigma_prior=log_uniform') if grid == 'centre' else ''
    train = commands.train_command(f'--config configs/family.py:photo --config.degradation.scale={scale}{resized} '
                                   '--workdir runs/family')
    raise ValueError(f'the shipped family classifier reads {shipped} LR images, not ×{scale}: name the '
                     f'family (--family {" / ".join(estimator_families())}), or train one ({train}) and pass it '
                     'with --classifier.')
  return pretrained_path(table[scale])


def pretrained_restorer(family: str, scale: int, name: str = DEFAULT_RESTORER) -> str:
  """The shipped restorer `name` ('usrnet' or 'sftmd') for a family and scale."""
  if name not in PRETRAINED_RESTORERS:
    raise ValueError(f'no shipped restorer named {name!r}; shipped: {", ".join(sorted(PRETRAINED_RESTORERS))}.')
  table = PRETRAINED_RESTORERS[name]
  if (family, scale) not in table:
    shipped = ', '.join(f'{f} ×{s}' for f, s in sorted(table))
    train = commands.train_command(f'--config configs/{name}.py:{family}_x{scale} --workdir runs/{name}')
    raise ValueError(f'no shipped {name} restorer for {family} kernels at ×{scale}; shipped: {shipped}. Use '
                     f'--restorer usrnet (every family and scale), or train one ({train}) and pass it with '
                     '--restorer.')
  return pretrained_path(table[(family, scale)])
