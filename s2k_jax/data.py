"""Training data for S2K (paper §4, Experiment Setup): HR crops on the host, LR synthesis on the device.

The paper trains on DIV2K degraded with random kernels (Eq. 1) and feeds the generator the LR
amplitude spectrum (§3.3). Here that is split in two:

* Host (grain): image source → per-process shard → seed/shuffle/repeat → decode and check → random
  HR crop with a random symmetry of the square → batch → worker processes. Batches are
  `{'hr': uint8 (B_local, C, C, 3)}`; every random choice comes from grain's per-element seed, so
  the same seed gives the same batches with 0 or N workers, and the iterator state can be
  checkpointed (`grain.checkpoint.CheckpointSave`).
* Device: each model module's `make_batch_fn` (kernels, degradation and, for the estimator, the
  amplitude spectrum and kernel map) in one jitted function, on batches the driver shards over the
  ('data',) mesh (`sharding.shard_batch`).

Sources (config.data.source):
* 'bundled': the natural photos shipped inside scikit-image (no download), split by
  `BUNDLED_TRAIN` / `BUNDLED_EVAL`;
* 'folder': every image under data.train_dir / data.eval_dir (e.g. DIV2K_train_HR, DIV2K_valid_HR);
* 'tfds': a tensorflow-datasets array_record dataset read by random access without TensorFlow:
  's2k_images' (built by `python -m s2k_jax.build_tfds`, raw pixels, fastest) or the stock
  'div2k/…' when prepared with `--file_format=array_record`.

Every image is checked once at start-up (see `s2k_jax.images`); a bad one stops the run with its name.
"""
from collections.abc import Callable, Sequence
import dataclasses
import functools
import os
from typing import Any

from absl import flags
from absl import logging
import grain
import jax
import ml_collections
import numpy as np

from s2k_jax import images
from s2k_jax import kernels

SOURCES = ('bundled', 'folder', 'tfds')
SPLITS = ('train', 'eval')
SCAN_MODES = ('full', 'header')
# Defaults of the fields only one source reads (configs/common.py:get_data_config takes them from here):
# a field that differs from its default while another source is chosen is an error (`check_fields`).
FOLDER_DEFAULTS = dict(train_dir='', eval_dir='')
TFDS_DEFAULTS = dict(tfds_name='s2k_images', tfds_data_dir='', tfds_train_split='train',
                     tfds_eval_split='validation', tfds_image_key='')
_SOURCE_FIELDS = {'folder': FOLDER_DEFAULTS, 'tfds': TFDS_DEFAULTS}

# scikit-image's bundled photos (files in `skimage.data.data_dir`, no network). Eval: two colour
# photos unlike anything in train; train: the other colour photos and the 512² grayscale textures
# and scenes (converted to RGB). The smallest sides (300 eval, 427 train) bound data.hr_crop.
BUNDLED_EVAL = ('chelsea.png', 'coffee.png')
BUNDLED_TRAIN = (
    'astronaut.png', 'rocket.jpg', 'hubble_deep_field.jpg', 'ihc.png', 'retina.jpg',
    'motorcycle_left.png', 'camera.png', 'moon.png', 'brick.png', 'grass.png', 'gravel.png')
TFDS_EXTRA_HINT = ("pip install 's2k-jax[tfds]' (tensorflow-datasets and array-record; "
                   'TensorFlow is not needed)')


# ---------------------------------------------------------------------------------------------------
# Sources: a sequence of records plus a picklable reader record -> (name, payload).


@dataclasses.dataclass(frozen=True)
class FileReader:
  """Reads image files; records are paths."""

  def __call__(self, path: str) -> tuple[str, bytes]:
    return path, images.read_file(path)


@dataclasses.dataclass(frozen=True)
class TfdsReader:
  """Reads one field of a tfds data source; records are indices."""
  source: Any
  key: str
  label: str

  def __call__(self, index: int) -> tuple[str, Any]:
    element = self.source[index]
    filename = element.get('filename')
    if isinstance(filename, bytes):
      filename = filename.decode('utf-8', 'replace')
    return f'{self.label}[{index}]' + (f' ({filename})' if filename else ''), element[self.key]


@dataclasses.dataclass(frozen=True)
class ImageRecords:
  """The images of one split: `reader(records[i])` gives (name, payload) for `images.decode_payload`."""
  records: Sequence[Any]
  reader: Callable[[Any], tuple[str, Any]]
  description: str

  def __len__(self) -> int:
    return len(self.records)

  def subset(self, indices: Sequence[int]) -> 'ImageRecords':
    return dataclasses.replace(self, records=[self.records[i] for i in indices])


def bundled_files(split: str) -> list[str]:
  """Paths of the bundled scikit-image photos of a split ('train' or 'eval')."""
  import skimage.data  # pylint: disable=g-import-not-at-top
  names = BUNDLED_TRAIN if split == 'train' else BUNDLED_EVAL
  paths = [os.path.join(skimage.data.data_dir, n) for n in names]
  missing = [p for p in paths if not os.path.isfile(p)]
  if missing:
    raise ValueError(f'scikit-image\'s bundled images are missing: {missing}. Reinstall scikit-image '
                     '(pip install --force-reinstall scikit-image) or use data.source=folder.')
  return paths


def import_tfds():
  """tensorflow_datasets, or a ValueError that says which extra to install."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ValueError(f'data.source=tfds needs tensorflow-datasets: {TFDS_EXTRA_HINT}.') from e
  # Registers the s2k_images builder with tfds.
  from s2k_jax import tfds_builder  # pylint: disable=g-import-not-at-top,unused-import
  return tfds


def _tfds_records(data: ml_collections.ConfigDict, split: str) -> ImageRecords:
  tfds = import_tfds()
  tfds_split = data.tfds_train_split if split == 'train' else data.tfds_eval_split
  data_dir = data.tfds_data_dir or None
  where = f'in {data_dir}' if data_dir else 'in the default tfds data_dir (~/tensorflow_datasets)'
  try:
    builder = tfds.builder(data.tfds_name, data_dir=data_dir)
  except Exception as e:  # tfds raises its own DatasetNotFoundError and ValueErrors for bad names.
    raise ValueError(f'tfds dataset {data.tfds_name!r} not found {where}: {e}') from e
  if not builder.is_prepared():
    build_hint = ('build it from image folders with `python -m s2k_jax.build_tfds --train_dir=... '
                  '--eval_dir=... --data_dir=...`')
    if data.tfds_name.split('/')[0] == 's2k_images':
      raise ValueError(f'tfds dataset {data.tfds_name!r} is not prepared {where}: {build_hint}.')
    raise ValueError(
        f'tfds dataset {data.tfds_name!r} is not prepared {where}. Prepare it (needs TensorFlow) with '
        f'`tfds build {data.tfds_name} --file_format=array_record --data_dir=...`, or {build_hint} '
        'and set data.tfds_name=s2k_images.')
  features = builder.info.features
  key = data.tfds_image_key or ('image' if 'image' in features else 'hr')
  if key not in features:
    raise ValueError(f'tfds dataset {data.tfds_name!r} has no feature {key!r} (it has {list(features)}); '
                     'set data.tfds_image_key.')
  # Image features are decoded by s2k_jax.images (same checks as files); Tensor features arrive as pixels.
  decoders = {key: tfds.decode.SkipDecoding()} if isinstance(features[key], tfds.features.Image) else None
  try:
    source = builder.as_data_source(tfds_split, decoders=decoders)
  except Exception as e:  # Wrong split name, or files that are not array_record.
    raise ValueError(f'cannot read split {tfds_split!r} of tfds dataset {data.tfds_name!r} {where} by random '
                     f'access ({type(e).__name__}: {e}). It must exist and be array_record '
                     '(prepare with --file_format=array_record).') from e
  label = f'{data.tfds_name}:{tfds_split}'
  return ImageRecords(list(range(len(source))), TfdsReader(source, key, label), f'tfds {label}')


def check_fields(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError for a data field the chosen source would ignore (set, but not read).

  data.train_dir / eval_dir are read only by data.source=folder and data.tfds_* only by
  data.source=tfds; setting one does not choose the source (docs/conventions.md, "Input pipeline").
  """
  data = config.data
  if data.source not in SOURCES:
    raise ValueError(f'data.source must be one of {SOURCES}, got {data.source!r}.')
  for source, defaults in _SOURCE_FIELDS.items():
    if source == data.source:
      continue
    changed = [f for f, default in defaults.items() if data.get(f, default) != default]
    if changed:
      fields = ', '.join(f'data.{f}={data[f]!r}' for f in changed)
      raise ValueError(f'{fields} is read only by data.source={source}, but data.source={data.source}: '
                       f'add --config.data.source={source} to use it, or leave it unset.')


def image_records(config: ml_collections.ConfigDict, split: str) -> ImageRecords:
  """All images of a split ('train' or 'eval') of config.data.source, in a fixed order."""
  data = config.data
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}.')
  check_fields(config)
  if data.source == 'bundled':
    return ImageRecords(bundled_files(split), FileReader(), f'bundled scikit-image {split} photos')
  if data.source == 'folder':
    directory = data.train_dir if split == 'train' else data.eval_dir
    field = 'train_dir' if split == 'train' else 'eval_dir'
    if not directory:
      raise ValueError(f'data.source=folder needs data.{field}: pass --config.data.{field}=/path/to/images.')
    return ImageRecords(images.list_images(directory), FileReader(), f'folder {directory}')
  if data.source == 'tfds':
    return _tfds_records(data, split)
  raise ValueError(f'data.source must be one of {SOURCES}, got {data.source!r}.')


# ---------------------------------------------------------------------------------------------------
# Start-up checks.


GRAYSCALE_MODES = ('keep', 'skip')


def hr_crop_size(config: ml_collections.ConfigDict) -> int:
  """data.hr_crop, checked: a positive multiple of the scale (of every scale of a multi-scale
  restorer, restorer.scales) so HR and LR pixels align exactly."""
  crop = int(config.data.hr_crop)
  if 'scale' in config.degradation:
    scales, name = (int(config.degradation.scale),), 'degradation.scale'
  else:
    scales, name = tuple(int(s) for s in config.restorer.scales), 'every scale in restorer.scales'
  if crop <= 0 or any(crop % s for s in scales):
    raise ValueError(f'data.hr_crop={crop} must be a positive multiple of {name}={scales if len(scales) > 1 else scales[0]} '
                     f'(e.g. {256 * max(scales)} = 256·scale for the paper\'s 256² LR spectra).')
  return crop


def _leave_out_grayscale(records: ImageRecords, report: images.ScanReport,
                         config: ml_collections.ConfigDict) -> list[int]:
  """Indices of the usable images, without grayscale ones when data.grayscale='skip' (logged)."""
  usable = report.usable()
  if config.data.grayscale not in GRAYSCALE_MODES:
    raise ValueError(f'data.grayscale must be one of {GRAYSCALE_MODES}, got {config.data.grayscale!r}.')
  if config.data.grayscale == 'keep':
    return usable
  if config.data.scan != 'full':
    raise ValueError("data.grayscale='skip' needs data.scan='full' (telling gray from colour means decoding "
                     "each image); set --config.data.scan=full or --config.data.grayscale=keep.")
  gray = [i for i in usable if report.gray[i]]
  if gray:
    logging.warning("Leaving out %d grayscale image(s) of %s (data.grayscale='skip': a restorer trained on "
                    'gray photos learns to desaturate colour ones):\n%s', len(gray), records.description,
                    images.format_problems(str(records.records[i]) for i in gray))
  return [i for i in usable if i not in gray]


def check_records(records: ImageRecords, config: ml_collections.ConfigDict) -> ImageRecords:
  """Scans every image once; raises for bad ones, drops too-small ones only if allowed (and logs them)."""
  data = config.data
  if data.scan not in SCAN_MODES:
    raise ValueError(f'data.scan must be one of {SCAN_MODES}, got {data.scan!r}.')
  crop = hr_crop_size(config)
  report = images.scan(records.records, records.reader, min_size=crop, decode=data.scan == 'full',
                       num_threads=data.read_threads)
  if report.errors:
    raise images.ImageError(f'{len(report.errors)} unusable image(s) in {records.description}; fix or remove '
                            f'them:\n{images.format_problems(report.errors)}')
  if report.too_small:
    problems = images.format_problems(report.too_small)
    if not data.skip_small_images:
      hint = (' The bundled photos suit the :cpu and :smoke presets; at paper scale train on DIV2K '
              '(--config.data.source=folder --config.data.train_dir=... --config.data.eval_dir=...).'
              if data.source == 'bundled' else '')
      raise images.ImageError(
          f'{len(report.too_small)} image(s) in {records.description} are smaller than data.hr_crop={crop}:\n'
          f'{problems}\nUse a smaller --config.data.hr_crop, remove them, or set '
          f'--config.data.skip_small_images=True to leave them out.{hint}')
    logging.warning('Leaving out %d image(s) of %s smaller than data.hr_crop=%d:\n%s',
                    len(report.too_small), records.description, crop, problems)
  if not report.usable():
    raise images.ImageError(f'no image of {records.description} is at least {crop}×{crop}.')
  usable = _leave_out_grayscale(records, report, config)
  if not usable:
    raise images.ImageError(f"every usable image of {records.description} is grayscale and "
                            "data.grayscale='skip'; add colour photos or set --config.data.grayscale=keep.")
  return records.subset(usable)


# ---------------------------------------------------------------------------------------------------
# Host pipeline.


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator, *, flip: bool = True,
                rot90: bool = True) -> np.ndarray:
  """A uniformly placed size×size crop, then one of the 8 symmetries of the square (or fewer).

  Draws, in this order: top, left, quarter turns k ∈ {0..3} (if rot90), mirror ∈ {0, 1} (if flip).
  """
  height, width = image.shape[:2]
  if height < size or width < size:
    raise ValueError(f'image {height}×{width} is smaller than the {size}×{size} crop.')
  top = int(rng.integers(0, height - size + 1))
  left = int(rng.integers(0, width - size + 1))
  crop = image[top:top + size, left:left + size]
  if rot90:
    crop = np.rot90(crop, int(rng.integers(0, 4)))
  if flip and rng.integers(0, 2):
    crop = crop[:, ::-1]
  return np.ascontiguousarray(crop)


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
  height, width = image.shape[:2]
  if height < size or width < size:
    raise ValueError(f'image {height}×{width} is smaller than the {size}×{size} crop.')
  top, left = (height - size) // 2, (width - size) // 2
  return np.ascontiguousarray(image[top:top + size, left:left + size])


@dataclasses.dataclass(frozen=True)
class CropTransform:
  """grain random map: record → {'hr': uint8 (C, C, 3)}; module-level and picklable for workers."""
  reader: Callable[[Any], tuple[str, Any]]
  size: int
  flip: bool
  rot90: bool

  def __call__(self, record: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
    name, payload = self.reader(record)
    image = images.to_uint8(images.decode_payload(payload, name))
    try:
      hr = random_crop(image, self.size, rng, flip=self.flip, rot90=self.rot90)
    except ValueError as e:
      raise images.ImageError(f'{name}: {e}') from e
    return {'hr': hr}


def _ensure_absl_flags_parsed() -> None:
  # grain's worker processes read absl flags; outside `app.run` (pytest, notebooks) nothing parsed them.
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def _stream_seed(seed: int) -> int:
  # The shuffle and crop seed of the one training stream (the value single-process runs always had).
  return int(np.random.SeedSequence([seed, 0]).generate_state(1)[0])


def local_batch_size(global_batch: int, process_count: int) -> int:
  if global_batch <= 0 or global_batch % process_count:
    raise ValueError(f'train.batch_size={global_batch} must be a positive multiple of the {process_count} '
                     'processes (hosts), each of which loads an equal share.')
  return global_batch // process_count


def train_dataset(config: ml_collections.ConfigDict, *, process_index: int | None = None,
                  process_count: int | None = None) -> grain.IterDataset:
  """The host pipeline as a grain IterDataset of {'hr': uint8 (B_local, C, C, 3)} batches.

  One stream of crops, whatever the number of processes: every image shuffled each epoch and cropped
  with its element's own seed (grain per-element seeds, from config.seed). Global batch t is stream
  elements [tB, (t + 1)B); process p of N reads and crops only its rows [tB + pB/N, tB + (p + 1)B/N),
  and the global batch is their concatenation in process order (sharding.shard_batch). So N processes
  train on exactly the batches one process would, each element is read by one process, and batch t of
  the stream is element t of every process's iterator: the data position is the step.
  """
  data = config.data
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  batch = local_batch_size(int(config.train.batch_size), process_count)
  records = check_records(image_records(config, 'train'), config)
  ds = grain.MapDataset.source(records.records)
  ds = ds.seed(_stream_seed(int(config.seed))).shuffle().repeat()
  ds = ds.random_map(CropTransform(records.reader, hr_crop_size(config), bool(data.flip), bool(data.rot90)))
  # Lazy: only the selected slices of B/N elements are ever read.
  ds = ds.batch(batch, drop_remainder=True)[process_index::process_count]
  # Elements are whole batches, each made by one thread: the read-ahead buffer (in batches) must be
  # at least the thread count for all threads to work.
  threads = max(1, int(data.read_threads))
  read = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(threads, int(data.prefetch)))
  it_ds = ds.to_iter_dataset(read)
  if data.num_workers > 0:
    _ensure_absl_flags_parsed()
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=int(data.num_workers), per_worker_buffer_size=max(1, int(data.prefetch))))
  return it_ds


def create_train_iterator(config: ml_collections.ConfigDict, *, process_index: int | None = None,
                          process_count: int | None = None) -> grain.DatasetIterator:
  """Endless iterator of host-local training batches {'hr': uint8 (B_local, C, C, 3)}.

  B_local = train.batch_size / process_count, C = data.hr_crop. Checkpoint it with
  `grain.checkpoint.CheckpointSave(it)` / `CheckpointRestore(it)`, or `get_state` / `set_state`;
  `seek(it, step)` puts it at global batch `step` whatever the process count that saved it.
  Close it (`it.close()`) when data.num_workers > 0 to stop the worker processes promptly.
  """
  return iter(train_dataset(config, process_index=process_index, process_count=process_count))


def seek(iterator: grain.DatasetIterator, step: int, config: ml_collections.ConfigDict) -> None:
  """Puts a training iterator at global batch `step` (the next batch it yields is batch `step` of the
  stream), for a checkpoint whose iterator state another number of processes wrote. In-process reading
  only (data.num_workers = 0): the worker processes' state has no such position."""
  if int(config.data.num_workers) > 0:
    raise ValueError(f'the checkpoint\'s data position was written by another number of processes, and '
                     f'with data.num_workers={config.data.num_workers} it cannot be moved: resume with the '
                     'process count that wrote it, or with --config.data.num_workers=0 (images read in the '
                     'training processes; keep it for the rest of the run).')
  iterator.set_state({'next_index': int(step)})


# Where the r-th crop of one eval image lies, as (top, left) fractions of the free range: the centre,
# the four corners, the four edge midpoints; later ones follow the 2-D Halton sequence (bases 2, 3).
_SPREAD = ((0.5, 0.5), (0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.0),
           (0.0, 0.5), (1.0, 0.5), (0.5, 0.0), (0.5, 1.0))


def _radical_inverse(i: int, base: int) -> float:
  out, f = 0.0, 1.0 / base
  while i:
    i, digit = divmod(i, base)
    out += digit * f
    f /= base
  return out


def spread_crop(image: np.ndarray, size: int, r: int) -> np.ndarray:
  """The r-th of a fixed sequence of size×size crops spread over the image; r = 0 is `centre_crop`."""
  height, width = image.shape[:2]
  if height < size or width < size:
    raise ValueError(f'image {height}×{width} is smaller than the {size}×{size} crop.')
  fy, fx = _SPREAD[r] if r < len(_SPREAD) else (_radical_inverse(r, 2), _radical_inverse(r, 3))
  top, left = int(fy * (height - size)), int(fx * (width - size))  # floor: r = 0 is centre_crop's
  return np.ascontiguousarray(image[top:top + size, left:left + size])


def create_eval_batch(config: ml_collections.ConfigDict, n: int) -> dict[str, np.ndarray]:
  """A fixed validation batch {'hr': uint8 (n, C, C, 3)} of crops of the eval images in order.

  Element j is crop r = j // N of image j mod N (N usable eval images): the centre crop first, then
  the other crops of `spread_crop` (corners, edge midpoints, …), so an n larger than a small eval split
  shows more of each image rather than repeating it. Every call, host and worker count gives the same
  batch, and the batch of n is the first n elements of any larger one.
  """
  if n <= 0:
    raise ValueError(f'eval batch size must be positive, got {n}.')
  crop = hr_crop_size(config)
  records = check_records(image_records(config, 'eval'), config)
  decoded = {}
  for i in range(min(n, len(records))):
    name, payload = records.reader(records.records[i])
    decoded[i] = images.to_uint8(images.decode_payload(payload, name))
  return {'hr': np.stack([spread_crop(decoded[j % len(records)], crop, j // len(records))
                          for j in range(n)])}


def task_inputs(config: ml_collections.ConfigDict) -> dict[str, Callable[[], Any]]:
  """The host side every training task hands the driver (`loop.Task.train_iterator`, `eval_data`).

  Checks first, before any image is scanned or kernel drawn, that no data or motion-bank field would be
  silently ignored (`check_fields`, `kernels.check_motion_bank_fields`).
  """
  check_fields(config)
  kernels.check_motion_bank_fields(config.degradation)
  return dict(train_iterator=functools.partial(create_train_iterator, config),
              seek=functools.partial(seek, config=config),
              eval_data=functools.partial(create_eval_batch, config, config.train.eval_batch_size))
