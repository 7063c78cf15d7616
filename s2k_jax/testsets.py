r"""Saved benchmark test sets: HR images degraded once with random kernels (paper §4, like DIV2KRK).

The paper tests on "random blurred DIV2K validation set" and 100 Flickr2K images for each kernel
family and scale (§4, Table 1). A test set is generated once and then only loaded, so every method
and every run sees the same LR images and true kernels:

  python -m s2k_jax.make_testset --config=configs/gaussian.py --config.degradation.scale=4 \
      --config.data.source=folder --config.data.eval_dir=DIV2K_valid_HR --out=testsets/div2k_gaussian_x4

Layout of --out: hr/NNNN_name.png (8-bit RGB), lr/NNNN_name.png (8-bit RGB, LR rounded to uint8),
kernels/NNNN_name.npy (float32 (k, k), sum 1) and manifest.json (arguments, degradation config,
per-image source, shapes, noise σ and SHA-256 of every file). Image i gets the key
fold_in(key(seed), i), split into a kernel key and a noise key, so an image's degradation does not
depend on how many images come before it. Generation runs on the CPU backend, so regenerating with
the same arguments gives byte-identical files (verified by the manifest hashes).

HR images are either whole (cropped at the bottom/right to a multiple of the scale, the usual
"modcrop", so LR × s = HR exactly) or the centred --hr_crop square.
"""
import dataclasses
import functools
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from typing import Any

import jax
import ml_collections
import numpy as np
from PIL import Image

import s2k_jax
from s2k_jax import data
from s2k_jax import degradation
from s2k_jax import images
from s2k_jax import kernels as kernels_lib

FORMAT = 's2k-testset/1'
MANIFEST = 'manifest.json'


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
  """Drops the last rows/columns so both sides are multiples of the scale."""
  height, width = image.shape[:2]
  return image[:height - height % scale, :width - width % scale]


def _png_bytes(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='PNG')  # Pillow writes no timestamp: same pixels, same bytes.
  return buffer.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  np.save(buffer, array, allow_pickle=False)
  return buffer.getvalue()


def _stem(source_name: str, kind: str) -> str:
  """A short file-system-safe name: the file's stem (tfds: the stored filename, if any)."""
  if kind == 'tfds':
    match = re.search(r' \((.*)\)$', source_name)
    source_name = match.group(1) if match else 'image'
  stem = os.path.splitext(os.path.basename(source_name))[0]
  return re.sub(r'[^A-Za-z0-9._-]+', '_', stem)[:64] or 'image'


def _source_description(config: ml_collections.ConfigDict, split: str) -> dict[str, str]:
  d = config.data
  if d.source == 'folder':
    location = d.train_dir if split == 'train' else d.eval_dir
  elif d.source == 'tfds':
    location = f'{d.tfds_name} in {d.tfds_data_dir or "default data_dir"}'
  else:
    location = 'skimage.data'
  return dict(kind=d.source, location=location, split=split)


def _source_name(name: str, config: ml_collections.ConfigDict, split: str) -> str:
  """A record's name without machine-specific prefixes (the skimage install path)."""
  if config.data.source == 'bundled':
    return os.path.basename(name)
  if config.data.source == 'folder':
    return os.path.relpath(name, config.data.train_dir if split == 'train' else config.data.eval_dir)
  return name


def _hr_image(image: np.ndarray, name: str, hr_crop: int, scale: int) -> np.ndarray:
  if hr_crop <= 0:
    return modcrop(image, scale)
  try:
    return data.centre_crop(image, hr_crop)
  except ValueError as e:
    raise images.ImageError(f'{name}: {e} Use a smaller --hr_crop or --hr_crop=0 (whole images).') from e


def _degrade_one(hr: np.ndarray, kernel: Any, noise_key: jax.Array,
                 config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray, float]:
  """uint8 HR (H, W, 3), its (1, k, k) blur kernel → (uint8 LR, float32 blur kernel (k, k), noise σ)."""
  out = degradation.degrade_with_kernels(images.to_float(hr)[None], kernel, noise_key, config.degradation)
  lr = np.asarray(out['lr'][0], np.float32)
  lr_uint8 = np.round(np.clip(lr, 0.0, 1.0) * 255.0).astype(np.uint8)
  return lr_uint8, np.asarray(out['kernel'][0], np.float32), float(out['noise_sigma'][0])


def _write_entry(directory: str, i: int, hr: np.ndarray, hr_png: bytes, name: str,
                 config: ml_collections.ConfigDict, split: str, kernel_for, base_key: jax.Array) -> dict[str, Any]:
  """Degrades `hr` (PNG-encoded as `hr_png`) with entry i's key and `kernel_for(i, kernel key)`,
  writes its three files, returns its manifest entry."""
  kernel_key, noise_key = jax.random.split(jax.random.fold_in(base_key, i))
  lr, kernel, sigma = _degrade_one(hr, kernel_for(i, kernel_key), noise_key, config)
  source_name = _source_name(name, config, split)
  stem = f'{i:04d}_{_stem(source_name, config.data.source)}'
  files = {'hr': (f'hr/{stem}.png', hr_png), 'lr': (f'lr/{stem}.png', _png_bytes(lr)),
           'kernel': (f'kernels/{stem}.npy', _npy_bytes(kernel))}
  for relative, payload_bytes in files.values():
    with open(os.path.join(directory, relative), 'wb') as f:
      f.write(payload_bytes)
  return dict(name=stem, source=source_name, hr_shape=list(hr.shape), lr_shape=list(lr.shape),
              noise_sigma=sigma, **{k: v[0] for k, v in files.items()},
              sha256={k: hashlib.sha256(v[1]).hexdigest() for k, v in files.items()})


# What a test set reads of an experiment config: the degradation and where the images come from.
# Everything else (the training pipeline's crops, flips, scan and workers; model, train, spectrum and
# restorer sections; config.seed) has no effect on it.
READ_FIELDS = ('degradation.', 'data.source', *(f'data.{name}' for name in (*data.FOLDER_DEFAULTS,
                                                                          *data.TFDS_DEFAULTS)))
_FLAG_INSTEAD = {'seed': '--seed', 'data.hr_crop': '--hr_crop'}


def check_overrides(overrides: Any) -> None:
  """Raises ValueError for command-line config overrides (dotted names) a test set would not read."""
  unread = [name for name in overrides if not any(
      name == field or (field.endswith('.') and name.startswith(field)) for field in READ_FIELDS)]
  if unread:
    hints = [f'--config.{n}: use {_FLAG_INSTEAD[n]} instead' for n in unread if n in _FLAG_INSTEAD]
    raise ValueError(f'--config.{", --config.".join(unread)} has no effect on a test set: it reads only the '
                     'degradation section and the image source (data.source and its folder/tfds fields)'
                     + (f' ({"; ".join(hints)})' if hints else '') + '. Leave the other fields out.')


def generate(config: ml_collections.ConfigDict, out_dir: str, *, seed: int = 0, split: str = 'eval',
             hr_crop: int = 0, limit: int = 0, copies: int = 1,
             overwrite: bool = False) -> dict[str, Any]:
  """Writes a test set of the split's images (the first `limit`, 0 = all) to out_dir; returns the manifest.

  Each image appears `copies` times, each copy with its own kernel (and noise): more kernels per image
  when the split has few images (the bundled eval split has two).

  Kernel family, scale, downsampling and noise come from config.degradation, images from config.data.
  hr_crop = 0 keeps whole images (modcropped); otherwise centred hr_crop squares (a multiple of the scale).
  """
  if copies < 1:
    raise ValueError(f'copies={copies} must be >= 1.')
  sample = jax.jit(functools.partial(kernels_lib.sample_kernels, batch=1, config=config.degradation))
  records = data.image_records(config, split)
  return _generate(config, out_dir, records, lambda i, key: sample(key), seed=seed, split=split,
                   hr_crop=hr_crop, limit=limit, copies=copies, overwrite=overwrite,
                   source=_source_description(config, split))


def _generate(config: ml_collections.ConfigDict, out_dir: str, records: data.ImageRecords, kernel_for, *,
              seed: int, split: str, hr_crop: int, limit: int, copies: int, overwrite: bool,
              source: dict[str, str], extra: dict[str, Any] | None = None, min_side: int = 0) -> dict[str, Any]:
  """Entry i (image i // copies) gets the blur kernel `kernel_for(i, kernel key)` (1, k, k); images
  with a side below `min_side` are refused by name."""
  scale = int(config.degradation.scale)
  degradation.check_scale(scale)
  if hr_crop < 0 or hr_crop % scale:
    raise ValueError(
        f'hr_crop={hr_crop} must be 0 (whole images) or a positive multiple of the scale {scale}.')
  if os.path.exists(out_dir) and os.listdir(out_dir):
    if not overwrite:
      raise ValueError(f'{out_dir} exists and is not empty; pass --overwrite to replace it.')
    if not os.path.isfile(os.path.join(out_dir, MANIFEST)):
      raise ValueError(f'{out_dir} is not a test set (no {MANIFEST}); refusing to overwrite it.')
  if limit > 0:
    records = records.subset(range(min(limit, len(records))))
  base_key = jax.random.key(seed)

  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix='.testset-', dir=parent)
  entries = []
  try:
    for sub in ('hr', 'lr', 'kernels'):
      os.makedirs(os.path.join(tmp, sub))
    # CPU: the same arguments must give the same files on any machine that has a GPU or not.
    with jax.default_device(jax.local_devices(backend='cpu')[0]):
      for j, record in enumerate(records.records):
        name, payload = records.reader(record)
        hr = _hr_image(images.to_uint8(images.decode_payload(payload, name)), name, hr_crop, scale)
        if min(hr.shape[:2]) < min_side:
          raise images.ImageError(
              f'{name}: {hr.shape[0]}×{hr.shape[1]} pixels is smaller than scale × kernel ({scale} × '
              f'{config.degradation.kernel_size} = {min_side} pixels a side), too small for the protocol; '
              'leave it out of the folder.')
        hr_png = _png_bytes(hr)  # Once per image: its copies share the HR file's bytes.
        for i in range(j * copies, (j + 1) * copies):
          entries.append(_write_entry(tmp, i, hr, hr_png, name, config, split, kernel_for, base_key))
    manifest = dict(
        format=FORMAT, seed=seed, split=split, hr_crop=hr_crop, limit=limit, copies=copies,
        source=source, scale=scale, family=config.degradation.family,
        degradation=json.loads(json.dumps(config.degradation.to_dict())),
        software=dict(s2k_jax=s2k_jax.__version__, jax=jax.__version__, numpy=np.__version__, backend='cpu'),
        key_rule=('entry i (image i // copies): jax.random.split(fold_in(key(seed), i)) -> '
                  '(kernel key, noise key)'),
        images=entries, **(extra or {}))
    with open(os.path.join(tmp, MANIFEST), 'w') as f:
      json.dump(manifest, f, indent=2, sort_keys=True)
      f.write('\n')
    if os.path.exists(out_dir):
      shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return manifest


# ---------------------------------------------------------------------------------------------------
# Benchmark protocols on a folder of HR images (Set5, Set14, BSD100, Urban100, DIV2K valid, ...).

PROTOCOLS = ('gaussian8', 's2k')
# IKC (Gu et al., CVPR 2019, §4.1) "Gaussian8": 8 isotropic Gaussians on a 21×21 canvas, σ evenly spaced
# over these ranges per scale; HR blurred, then MATLAB bicubic ÷s; every image with every kernel.
GAUSSIAN8_SIGMAS = {2: (0.80, 1.60), 3: (1.35, 2.40), 4: (1.80, 3.20)}
GAUSSIAN8_SIZE = 21
S2K_FAMILIES = ('gaussian', 'motion', 'disk')


def gaussian8_sigmas(scale: int) -> np.ndarray:
  degradation.check_scale(scale)
  return np.linspace(*GAUSSIAN8_SIGMAS[scale], 8)


def gaussian8_kernels(scale: int) -> np.ndarray:
  """(8, 21, 21) float32 isotropic Gaussian blur kernels of Gaussian8 at `scale`, each summing to 1."""
  return np.stack([kernels_lib.gaussian_kernel(GAUSSIAN8_SIZE, s, s, 0.0) for s in gaussian8_sigmas(scale)]
                  ).astype(np.float32)


def protocol_config(protocol: str, scale: int, hr_dir: str, family: str | None = None) -> ml_collections.ConfigDict:
  """The degradation and image source a protocol fixes (a config with `degradation` and `data`)."""
  degradation.check_scale(scale)
  if protocol not in PROTOCOLS:
    raise ValueError(f'unknown protocol {protocol!r}; choose one of {PROTOCOLS} (gaussian8: IKC\'s 8 '
                     'isotropic Gaussians then bicubic; s2k: the paper\'s one random kernel per image, direct).')
  if protocol == 'gaussian8':
    if family not in (None, 'gaussian'):
      raise ValueError(f'the gaussian8 protocol has Gaussian kernels only; leave the family out (got {family!r}).')
    deg = degradation.default_config('gaussian')
    deg.kernel_size = GAUSSIAN8_SIZE
    deg.sigma_range = GAUSSIAN8_SIGMAS[scale]
    deg.downsample = 'bicubic'
  else:
    if family not in S2K_FAMILIES:
      raise ValueError(f'the s2k protocol needs --family, one of {S2K_FAMILIES}; got {family!r}.')
    deg = degradation.default_config(family)
    if family == 'motion':
      deg.motion_bank_size = 0  # fresh trajectories: kernels no estimator trained on
  deg.scale = int(scale)
  return ml_collections.ConfigDict(dict(degradation=deg, data=dict(source='folder', eval_dir=hr_dir)))


def generate_protocol(protocol: str, hr_dir: str, out_dir: str, *, scale: int, family: str | None = None,
                      seed: int = 0, limit: int = 0, overwrite: bool = False) -> dict[str, Any]:
  """A benchmark test set of every image in `hr_dir` (modcropped) under a named protocol:

  * 'gaussian8': each image with each of the 8 kernels of `gaussian8_kernels(scale)`, MATLAB bicubic
    downsampling, no noise (8 entries per image); the saved kernels are the blurs (the bicubic filter is
    named by the manifest's downsampler), and the set's mean kernel is the mean of those 8.
  * 's2k': the paper's §4: one seeded random kernel of `family` per image (the family's default ranges;
    motion trajectories fresh, not from the training bank), direct decimation, no noise.
  """
  config = protocol_config(protocol, scale, hr_dir, family)
  records = data.ImageRecords(images.list_images(hr_dir), data.FileReader(), f'folder {hr_dir}')
  source = dict(kind='folder', location=os.path.abspath(hr_dir))
  extra = dict(protocol=protocol)
  min_side = scale * int(config.degradation.kernel_size)
  if protocol == 'gaussian8':
    bank = jax.numpy.asarray(gaussian8_kernels(scale))
    extra['sigmas'] = [float(s) for s in gaussian8_sigmas(scale)]
    return _generate(config, out_dir, records, lambda i, key: bank[i % 8][None], seed=seed, split='eval',
                     hr_crop=0, limit=limit, copies=8, overwrite=overwrite, source=source, extra=extra,
                     min_side=min_side)
  sample = jax.jit(functools.partial(kernels_lib.sample_kernels, batch=1, config=config.degradation))
  return _generate(config, out_dir, records, lambda i, key: sample(key), seed=seed, split='eval', hr_crop=0,
                   limit=limit, copies=1, overwrite=overwrite, source=source, extra=extra, min_side=min_side)


@dataclasses.dataclass(frozen=True)
class TestSet:
  """A loaded test set: per image uint8 HR (H, W, 3), uint8 LR (H/s, W/s, 3), float32 kernel (k, k)."""
  directory: str
  manifest: dict[str, Any]
  names: tuple[str, ...]
  hr: tuple[np.ndarray, ...]
  lr: tuple[np.ndarray, ...]
  kernels: np.ndarray           # (N, k, k) float32.
  noise_sigma: np.ndarray       # (N,) float32.

  @property
  def scale(self) -> int:
    return int(self.manifest['scale'])

  def __len__(self) -> int:
    return len(self.names)


def load(directory: str, *, verify: bool = False) -> TestSet:
  """Reads a saved test set; `verify` also checks every file's SHA-256 against the manifest."""
  path = os.path.join(directory, MANIFEST)
  try:
    with open(path) as f:
      manifest = json.load(f)
  except FileNotFoundError as e:
    raise ValueError(
        f'{directory}: no {MANIFEST}; generate the test set with python -m s2k_jax.make_testset.') from e
  except json.JSONDecodeError as e:
    raise ValueError(f'{path}: not valid JSON ({e}).') from e
  if manifest.get('format') != FORMAT:
    raise ValueError(f'{path}: format {manifest.get("format")!r}, expected {FORMAT!r}.')
  hr, lr, kernels = [], [], []
  for entry in manifest['images']:
    blobs = {k: images.read_file(os.path.join(directory, entry[k])) for k in ('hr', 'lr', 'kernel')}
    if verify:
      for k, blob in blobs.items():
        if hashlib.sha256(blob).hexdigest() != entry['sha256'][k]:
          raise ValueError(
              f'{os.path.join(directory, entry[k])}: contents differ from the manifest\'s SHA-256.')
    hr.append(images.to_uint8(images.decode_image(blobs['hr'], entry['hr'])))
    lr.append(images.to_uint8(images.decode_image(blobs['lr'], entry['lr'])))
    kernels.append(np.load(io.BytesIO(blobs['kernel']), allow_pickle=False))
    if list(hr[-1].shape) != entry['hr_shape'] or list(lr[-1].shape) != entry['lr_shape']:
      raise ValueError(f'{directory}/{entry["hr"]}: image shapes differ from the manifest.')
  return TestSet(directory=directory, manifest=manifest, names=tuple(e['name'] for e in manifest['images']),
                 hr=tuple(hr), lr=tuple(lr), kernels=np.stack(kernels).astype(np.float32),
                 noise_sigma=np.asarray([e['noise_sigma'] for e in manifest['images']], np.float32))
