"""Tests for the input pipeline: s2k_jax/images.py, s2k_jax/data.py and s2k_jax/tfds_builder.py."""
import logging
import os
import struct
import sys
import zlib

import grain
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np
import orbax.checkpoint as ocp
from PIL import Image
import pytest
import scipy.ndimage
import scipy.stats
import skimage.data
import tifffile

from configs import gaussian
from s2k_jax import data
from s2k_jax import images
from s2k_jax import estimator
from s2k_jax import sharding


def smoke_config(**data_overrides):
  config = gaussian.get_config('smoke')
  config.data.num_workers = 0
  config.data.read_threads = 2
  for name, value in data_overrides.items():
    config.data[name] = value
  return config


def write_png16(path, array):
  """A 16-bit PNG written by hand (Pillow cannot write 16-bit colour PNGs): IHDR, one IDAT, IEND."""
  height, width, channels = array.shape
  colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
  raw = b''.join(b'\x00' + array[y].astype('>u2').tobytes() for y in range(height))

  def chunk(tag, body):
    return struct.pack('>I', len(body)) + tag + body + struct.pack('>I', zlib.crc32(tag + body))

  ihdr = struct.pack('>IIBBBBB', width, height, 16, colour_type, 0, 0, 0)
  with open(path, 'wb') as f:
    f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(raw))
            + chunk(b'IEND', b''))


def coordinate_image(height, width, image_id):
  """R = row, G = column, B = image id: every pixel says where it came from."""
  rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
  return np.stack([rows, cols, np.full_like(rows, image_id)], -1).astype(np.uint8)


@pytest.fixture
def coordinate_folder(tmp_path):
  folder = tmp_path / 'coords'
  (folder / 'sub').mkdir(parents=True)
  for i in range(6):
    target = folder / 'sub' if i % 2 else folder
    Image.fromarray(coordinate_image(40 + 4 * i, 56, 10 * (i + 1))).save(target / f'img{i}.png')
  return folder


def symmetries(x):
  """The 8 symmetries of the square applied to an (H, W, C) array, as random_crop orders them."""
  return [np.rot90(x, k)[:, ::-1] if m else np.rot90(x, k) for k in range(4) for m in range(2)]


# ---------------------------------------------------------------------------------------------------
# Listing and reading files.


def test_list_images_is_recursive_sorted_and_filters(tmp_path):
  (tmp_path / 'b').mkdir()
  (tmp_path / '.hidden').mkdir()
  for name in ['b/2.PNG', 'a.jpg', 'c.webp', 'b/1.tif', 'notes.txt', '._a.png', '.hidden/x.png']:
    (tmp_path / name).write_bytes(b'x')
  got = [os.path.relpath(p, tmp_path) for p in images.list_images(tmp_path)]
  assert got == ['a.jpg', 'b/1.tif', 'b/2.PNG', 'c.webp']


def test_list_images_rejects_missing_empty_and_file_paths(tmp_path):
  with pytest.raises(ValueError, match='no such directory'):
    images.list_images(tmp_path / 'missing')
  (tmp_path / 'empty').mkdir()
  (tmp_path / 'empty' / 'readme.txt').write_text('not an image')
  with pytest.raises(ValueError, match='no image files'):
    images.list_images(tmp_path / 'empty')
  with pytest.raises(ValueError, match='not a directory'):
    images.list_images(tmp_path / 'empty' / 'readme.txt')
  with pytest.raises(ValueError, match='No image directory'):
    images.list_images('')


@pytest.mark.parametrize('fmt,ext,kwargs', [('PNG', 'png', {}), ('BMP', 'bmp', {}), ('TIFF', 'tif', {}),
                                            ('WEBP', 'webp', {'lossless': True})])
def test_lossless_rgb_formats_load_exactly(tmp_path, fmt, ext, kwargs):
  rgb = np.random.default_rng(0).integers(0, 256, (13, 17, 3), dtype=np.uint8)
  path = tmp_path / f'x.{ext}'
  Image.fromarray(rgb).save(path, format=fmt, **kwargs)
  out = images.load_image(path)
  assert out.dtype == np.float32 and out.shape == (13, 17, 3)
  np.testing.assert_array_equal(out, rgb.astype(np.float32) / 255)


def test_jpeg_loads_close_to_the_original(tmp_path):
  rgb = skimage.data.astronaut()[::4, ::4]
  Image.fromarray(rgb).save(tmp_path / 'x.jpg', quality=95, subsampling=0)  # 4:4:4
  out = images.load_image(tmp_path / 'x.jpg')
  assert out.shape == rgb.shape
  assert np.mean(np.abs(out * 255 - rgb)) < 3.0


def test_gray_and_bilevel_become_rgb(tmp_path):
  gray = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
  Image.fromarray(gray).save(tmp_path / 'g.png')
  Image.fromarray(gray > 100).save(tmp_path / 'b.png')
  out = images.load_image(tmp_path / 'g.png')
  np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, -1) / np.float32(255))
  np.testing.assert_array_equal(images.load_image(tmp_path / 'b.png')[..., 1],
                                (gray > 100).astype(np.float32))


def test_alpha_is_dropped_and_palette_resolved(tmp_path):
  rng = np.random.default_rng(1)
  rgba = rng.integers(0, 256, (8, 9, 4), dtype=np.uint8)
  Image.fromarray(rgba).save(tmp_path / 'a.png')
  np.testing.assert_array_equal(images.read_image(tmp_path / 'a.png'), rgba[..., :3])
  palette = rng.integers(0, 256, (16, 3), dtype=np.uint8)
  index = rng.integers(0, 16, (8, 9), dtype=np.uint8)
  p_image = Image.fromarray(index, mode='P')
  p_image.putpalette(palette.ravel().tolist())
  p_image.save(tmp_path / 'p.png')
  np.testing.assert_array_equal(images.read_image(tmp_path / 'p.png'), palette[index])


def test_16bit_gray_png_and_rgb_tiff_keep_their_precision(tmp_path):
  rng = np.random.default_rng(2)
  gray = rng.integers(0, 65536, (7, 5), dtype=np.uint16)
  write_png16(tmp_path / 'g16.png', gray[..., None])
  np.testing.assert_array_equal(images.load_image(tmp_path / 'g16.png'),
                                np.repeat(gray[..., None], 3, -1).astype(np.float32) / 65535)
  rgb = rng.integers(0, 65536, (7, 5, 3), dtype=np.uint16)
  tifffile.imwrite(tmp_path / 'c16.tif', rgb)
  np.testing.assert_array_equal(images.load_image(tmp_path / 'c16.tif'), rgb.astype(np.float32) / 65535)


def test_16bit_colour_png_is_rejected_with_the_reason(tmp_path):
  write_png16(tmp_path / 'c16.png', np.full((4, 4, 3), 1000, np.uint16))
  with pytest.raises(images.ImageError, match=r'c16\.png: 16-bit colour PNG'):
    images.load_image(tmp_path / 'c16.png')


def test_to_uint8_rounds_to_the_nearest_level():
  x = np.array([0, 128, 129, 257 * 100 + 128, 257 * 100 + 129, 65535], np.uint16)
  np.testing.assert_array_equal(images.to_uint8(x), np.round(x / 257.0).astype(np.uint8))


@pytest.mark.parametrize('case', ['garbage', 'text', 'truncated', 'empty'])
def test_corrupt_files_are_rejected_with_their_name(tmp_path, case):
  Image.fromarray(skimage.data.camera()).save(tmp_path / 'good.png')
  good = (tmp_path / 'good.png').read_bytes()
  content = {'garbage': np.random.default_rng(3).bytes(500), 'text': b'hello, not an image\n',
             'truncated': good[:len(good) // 2], 'empty': b''}[case]
  path = tmp_path / f'bad_{case}.png'
  path.write_bytes(content)
  with pytest.raises(images.ImageError, match=f'bad_{case}.png'):
    images.load_image(path)


@pytest.mark.filterwarnings('ignore::PIL.Image.DecompressionBombWarning')
def test_decompression_bomb_guard(tmp_path, monkeypatch):
  Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / 'big.png')
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 500)
  with pytest.raises(images.ImageError, match=r'big\.png: 30×20 = 600 pixels exceeds .*MAX_IMAGE_PIXELS'):
    images.load_image(tmp_path / 'big.png')
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 250)  # Beyond twice the limit Pillow itself refuses.
  with pytest.raises(images.ImageError, match='decompression bomb'):
    images.load_image(tmp_path / 'big.png')


def test_float_and_multiframe_images_are_rejected(tmp_path):
  Image.fromarray(np.ones((4, 4), np.float32)).save(tmp_path / 'f.tif')
  with pytest.raises(images.ImageError, match=r'f\.tif: unsupported pixel format'):
    images.load_image(tmp_path / 'f.tif')
  frames = [Image.fromarray(np.full((4, 4, 3), v, np.uint8)) for v in (0, 255)]
  frames[0].save(tmp_path / 'anim.webp', save_all=True, append_images=frames[1:], lossless=True)
  with pytest.raises(images.ImageError, match=r'anim\.webp: holds 2 frames'):
    images.load_image(tmp_path / 'anim.webp')


# ---------------------------------------------------------------------------------------------------
# Start-up scan.


def test_scan_lists_every_bad_file_at_start_up(tmp_path, coordinate_folder):
  (coordinate_folder / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n broken')
  (coordinate_folder / 'sub' / 'notes.jpg').write_text('text')
  config = smoke_config(source='folder', train_dir=str(coordinate_folder), hr_crop=16)
  with pytest.raises(images.ImageError, match=r'2 unusable image\(s\)') as error:
    data.create_train_iterator(config)
  assert 'broken.png' in str(error.value) and 'notes.jpg' in str(error.value)


def test_truncated_file_is_found_by_full_scan_only(coordinate_folder):
  path = coordinate_folder / 'img0.png'
  path.write_bytes(path.read_bytes()[:-40])  # Header intact, pixel data cut.
  records = data.image_records(smoke_config(source='folder', train_dir=str(coordinate_folder)), 'train')
  assert images.scan(records.records, records.reader, min_size=16, decode=False).errors == []
  errors = images.scan(records.records, records.reader, min_size=16, decode=True).errors
  assert len(errors) == 1 and 'img0.png' in errors[0] and 'truncated' in errors[0]


def test_small_images_fail_or_are_left_out_with_a_log(coordinate_folder, caplog):
  config = smoke_config(source='folder', train_dir=str(coordinate_folder), hr_crop=48)  # img0..img1 < 48.
  with pytest.raises(images.ImageError, match=r'2 image\(s\) .* smaller than data.hr_crop=48') as error:
    data.create_train_iterator(config)
  assert 'img0.png: 40×56' in str(error.value) and 'img1.png: 44×56' in str(error.value)
  config.data.skip_small_images = True
  config.train.batch_size = 4
  with caplog.at_level(logging.WARNING):
    batch = next(data.create_train_iterator(config))
  assert 'img0.png' in caplog.text
  assert set(np.unique(batch['hr'][..., 2])) <= {30, 40, 50, 60}  # Ids of the images ≥ 48 rows.


def test_grayscale_images_are_left_out_for_restorers_with_a_log(tmp_path, caplog):
  """data.grayscale='skip' (the restorer configs): R = G = B photos are left out and named; colour
  photos stay; 'keep' keeps them; the check needs decoded scans."""
  folder = tmp_path / 'mixed'
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(2):
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f'colour{i}.png')
  Image.fromarray(np.full((40, 40), 77, np.uint8)).save(folder / 'gray_l.png')          # mode L
  Image.fromarray(np.full((40, 40, 3), 99, np.uint8)).save(folder / 'gray_rgb.png')   # RGB, equal channels
  config = smoke_config(source='folder', train_dir=str(folder), hr_crop=32, grayscale='skip')
  config.train.batch_size = 8
  with caplog.at_level(logging.WARNING):
    batch = next(data.create_train_iterator(config))
  assert 'Leaving out 2 grayscale image(s)' in caplog.text
  assert 'gray_l.png' in caplog.text and 'gray_rgb.png' in caplog.text and 'colour0' not in caplog.text
  assert all(not np.array_equal(x[..., 0], x[..., 1]) for x in batch['hr'])
  config.data.grayscale = 'keep'
  records = data.check_records(data.image_records(config, 'train'), config)
  assert len(records) == 4
  config.data.grayscale, config.data.scan = 'skip', 'header'
  with pytest.raises(ValueError, match="needs data.scan='full'"):
    data.create_train_iterator(config)
  config.data.scan, config.data.train_dir = 'full', str(tmp_path / 'grays')
  (tmp_path / 'grays').mkdir()
  Image.fromarray(np.full((40, 40), 77, np.uint8)).save(tmp_path / 'grays' / 'g.png')
  with pytest.raises(images.ImageError, match='every usable image .* is grayscale'):
    data.create_train_iterator(config)
  config.data.grayscale = 'sometimes'
  with pytest.raises(ValueError, match='data.grayscale must be one of'):
    data.create_train_iterator(config)


def test_restorer_configs_leave_out_grayscale_photos():
  from configs import sftmd, usrnet  # pylint: disable=g-import-not-at-top
  assert sftmd.get_config('gaussian_x4').data.grayscale == 'skip'
  assert usrnet.get_config('mixed').data.grayscale == 'skip'
  assert gaussian.get_config('cpu').data.grayscale == 'keep'  # the estimator reads luminance spectra


def test_config_errors_are_clear(tmp_path):
  with pytest.raises(ValueError, match='needs data.train_dir'):
    data.create_train_iterator(smoke_config(source='folder'))
  with pytest.raises(ValueError, match='no such directory'):
    data.create_train_iterator(smoke_config(source='folder', train_dir=str(tmp_path / 'nope')))
  with pytest.raises(ValueError, match='multiple of degradation.scale=4'):
    data.create_train_iterator(smoke_config(hr_crop=30))
  with pytest.raises(ValueError, match='data.source must be one of'):
    data.create_train_iterator(smoke_config(source='s3'))
  config = smoke_config()
  config.train.batch_size = 6
  with pytest.raises(ValueError, match='multiple of the 4 processes'):
    data.create_train_iterator(config, process_index=0, process_count=4)


# ---------------------------------------------------------------------------------------------------
# Host pipeline.


def take(iterator, n):
  return [next(iterator)['hr'] for _ in range(n)]


def test_crops_are_windows_under_the_eight_symmetries(coordinate_folder):
  config = smoke_config(source='folder', train_dir=str(coordinate_folder), hr_crop=16)
  sources = {10 * (i + 1): coordinate_image(40 + 4 * i, 56, 10 * (i + 1)) for i in range(6)}
  seen = set()
  for batch in take(data.create_train_iterator(config), 12):
    assert batch.shape == (8, 16, 16, 3) and batch.dtype == np.uint8
    for crop in batch:
      source = sources[int(crop[0, 0, 2])]
      matches = []
      for index, candidate in enumerate(symmetries(crop)):
        # Undo symmetry `index`: the candidates are all symmetries; the one that is an upright window
        # of the source starts at its own (row, col) coordinates.
        top, left = int(candidate[0, 0, 0]), int(candidate[0, 0, 1])
        if np.array_equal(candidate, source[top:top + 16, left:left + 16]):
          matches.append(index)
      assert len(matches) == 1
      seen.add(matches[0])
  assert seen == set(range(8))


def test_no_augmentation_gives_upright_windows(coordinate_folder):
  config = smoke_config(source='folder', train_dir=str(coordinate_folder), hr_crop=16, flip=False,
                        rot90=False)
  for crop in take(data.create_train_iterator(config), 2)[1]:
    top, left = int(crop[0, 0, 0]), int(crop[0, 0, 1])
    source = coordinate_image(40 + 4 * (int(crop[0, 0, 2]) // 10 - 1), 56, crop[0, 0, 2])
    np.testing.assert_array_equal(crop, source[top:top + 16, left:left + 16])


def test_each_epoch_visits_every_image_once(coordinate_folder):
  config = smoke_config(source='folder', train_dir=str(coordinate_folder), hr_crop=16)
  config.train.batch_size = 3
  ids = np.concatenate([b[:, 0, 0, 2] for b in take(data.create_train_iterator(config), 4)])
  assert sorted(ids[:6]) == sorted(ids[6:]) == [10, 20, 30, 40, 50, 60]
  assert not np.array_equal(ids[:6], ids[6:])  # Reshuffled each epoch.


def test_same_seed_same_batches_and_other_seed_differs():
  config = smoke_config()
  a, b = take(data.create_train_iterator(config), 3), take(data.create_train_iterator(config), 3)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  config.seed = 1
  assert not np.array_equal(take(data.create_train_iterator(config), 1)[0], a[0])


def test_state_restore_gives_the_exact_next_batches():
  config = smoke_config()
  it = data.create_train_iterator(config)
  take(it, 3)
  state = it.get_state()
  expected = take(it, 2)
  fresh = data.create_train_iterator(config)
  fresh.set_state(state)
  for x, y in zip(expected, take(fresh, 2)):
    np.testing.assert_array_equal(x, y)


def test_orbax_checkpoint_of_the_iterator_resumes_exactly(tmp_path):
  config = smoke_config()
  it = data.create_train_iterator(config)
  take(it, 2)
  manager = ocp.CheckpointManager(tmp_path, options=ocp.CheckpointManagerOptions(create=True),
                                  item_names=('data_iter',))
  manager.save(2, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointSave(it)))
  manager.wait_until_finished()
  expected = take(it, 1)[0]
  fresh = data.create_train_iterator(config)
  manager.restore(2, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointRestore(fresh)))
  np.testing.assert_array_equal(take(fresh, 1)[0], expected)
  manager.close()


def test_processes_read_their_rows_of_the_one_stream(coordinate_folder):
  """N processes train on the batches one process would: process p's batch t is rows [pB/N, (p+1)B/N)
  of the single-process batch t (crops and all), so no element is read by two processes."""
  config = smoke_config(source='folder', train_dir=str(coordinate_folder), hr_crop=16)
  one = take(data.create_train_iterator(config, process_index=0, process_count=1), 3)
  for count in (2, 4):
    shares = [take(data.create_train_iterator(config, process_index=p, process_count=count), 3)
              for p in range(count)]
    for t in range(3):
      assert shares[0][t].shape == (8 // count, 16, 16, 3)
      np.testing.assert_array_equal(np.concatenate([share[t] for share in shares]), one[t])


def test_seek_puts_an_iterator_at_a_step_whatever_the_process_count(coordinate_folder):
  config = smoke_config(source='folder', train_dir=str(coordinate_folder), hr_crop=16)
  one = take(data.create_train_iterator(config, process_index=0, process_count=1), 4)
  moved = data.create_train_iterator(config, process_index=1, process_count=2)
  data.seek(moved, 3, config)
  np.testing.assert_array_equal(next(moved)['hr'], one[3][4:])
  config.data.num_workers = 2
  with pytest.raises(ValueError, match='data.num_workers=2 it cannot be moved.*num_workers=0'):
    data.seek(moved, 3, config)


def test_bundled_split_and_eval_batch_are_spread_crops():
  assert len(data.bundled_files('train')) == 11 and len(data.bundled_files('eval')) == 2
  assert set(data.BUNDLED_TRAIN).isdisjoint(data.BUNDLED_EVAL)
  config = smoke_config()
  batch = data.create_eval_batch(config, 3)['hr']
  assert batch.shape == (3, 128, 128, 3) and batch.dtype == np.uint8
  chelsea, coffee = skimage.data.chelsea(), skimage.data.coffee()  # 300×451, 400×600.
  np.testing.assert_array_equal(batch[0], chelsea[86:214, 161:289])
  np.testing.assert_array_equal(batch[1], coffee[136:264, 236:364])
  np.testing.assert_array_equal(batch[2], chelsea[:128, :128])  # Chelsea's 2nd crop: the top-left corner.
  np.testing.assert_array_equal(data.create_eval_batch(config, 3)['hr'], batch)
  eight = data.create_eval_batch(config, 8)['hr']
  np.testing.assert_array_equal(eight[:3], batch)  # A smaller batch is a prefix of a larger one.
  assert len({row.tobytes() for row in eight}) == 8  # 8 different crops of the 2 photos.


def test_grayscale_bundled_images_arrive_as_equal_channels():
  path = data.bundled_files('train')[data.BUNDLED_TRAIN.index('camera.png')]
  out = data.CropTransform(data.FileReader(), 128, False, False)(path, np.random.default_rng(0))['hr']
  assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])


# ---------------------------------------------------------------------------------------------------
# Device batch and sharding.


@pytest.fixture(scope='module')
def device_batch():
  config = smoke_config()
  hr = next(data.create_train_iterator(config))['hr']
  return config, hr, jax.jit(estimator.make_batch_fn(config))(hr, jax.random.key(0))


def test_device_batch_shapes_dtypes_and_ranges(device_batch):
  config, hr, batch = device_batch
  b, c, s, k, size = 8, 128, 4, 15, config.spectrum.size
  shapes = dict(hr=(b, c, c, 3), lr=(b, c // s, c // s, 3), kernel=(b, k, k), kernel_map=(b, size, size, 1),
                spectrum=(b, size, size, 1), inputs=(b, size, size, 1), noise_sigma=(b,))
  assert {name: x.shape for name, x in batch.items()} == shapes
  assert all(x.dtype == np.float32 for x in batch.values())
  np.testing.assert_allclose(batch['hr'], hr.astype(np.float32) / 255, rtol=1e-6)
  np.testing.assert_allclose(np.sum(batch['kernel'], axis=(1, 2)), 1.0, atol=1e-5)
  for name in ('kernel_map', 'spectrum'):
    assert np.min(batch[name]) >= -1.0 and np.max(batch[name]) <= 1.0
  np.testing.assert_allclose(np.max(batch['kernel_map'], axis=(1, 2, 3)), 1.0, atol=1e-6)
  np.testing.assert_array_equal(batch['inputs'], batch['spectrum'])
  assert float(np.min(batch['lr'])) >= 0.0 and float(np.max(batch['lr'])) <= 1.0


def test_device_lr_is_the_blurred_subsampled_hr(device_batch):
  _, hr, batch = device_batch  # noise_max = 0 and 'direct' downsampling in the smoke config.
  for i in range(2):
    image, kernel = hr[i].astype(np.float64) / 255, np.asarray(batch['kernel'][i], np.float64)
    blurred = np.stack([scipy.ndimage.correlate(image[..., ch], kernel, mode='mirror')
                        for ch in range(3)], -1)
    # 2× the FFT blur's bound against scipy (docs/conventions.md: ≤ 6e-7).
    np.testing.assert_allclose(batch['lr'][i], blurred[::4, ::4], atol=1.2e-6)


def test_spatial_input_variant():
  config = smoke_config()
  config.model.input = 'spatial'
  hr = data.create_eval_batch(config, 2)['hr']
  batch = jax.jit(estimator.make_batch_fn(config))(hr, jax.random.key(0))
  assert batch['inputs'].shape == (2, 32, 32, 1)
  assert not np.array_equal(batch['inputs'], batch['spectrum'])
  # Luma Y = 16/255 + (65.481 R + 128.553 G + 24.966 B)/255 → [-1, 1]; the LR is 32² = the input size.
  y = 16 / 255 + np.asarray(batch['lr']) @ np.array([65.481, 128.553, 24.966]) / 255
  np.testing.assert_allclose(batch['inputs'][..., 0], 2 * (y - 16 / 255) / (219 / 255) - 1, atol=1e-5)
  config.model.input = 'fourier'
  with pytest.raises(ValueError, match='model.input'):
    estimator.make_batch_fn(config)


def test_shard_batch_over_eight_devices_matches_one_device(device_batch):
  assert jax.device_count() == 8, 'tests/conftest.py forces 8 CPU devices'
  config, hr, single = device_batch
  mesh = Mesh(np.asarray(jax.devices()), ('data',))
  sharded = sharding.shard_batch({'hr': hr}, mesh)['hr']
  assert sharded.shape == (8, 128, 128, 3) and sharded.sharding == NamedSharding(mesh, P('data'))
  for shard in sharded.addressable_shards:
    np.testing.assert_array_equal(shard.data, hr[shard.index])
  out = jax.jit(estimator.make_batch_fn(config), out_shardings=NamedSharding(mesh, P('data')))(
      sharded, jax.random.key(0))
  assert out['spectrum'].sharding.spec == P('data')
  for name in out:
    # The log spectrum amplifies float32 round-off of differently partitioned FFTs near its floor;
    # everything else matches to docs/conventions.md's 2.4e-7 (2× margin).
    np.testing.assert_allclose(out[name], single[name], atol=1e-3 if name in ('spectrum', 'inputs') else 5e-7)
  with pytest.raises(ValueError, match='cannot be split over 8 local devices'):
    sharding.shard_batch({'hr': hr[:6]}, mesh)


# ---------------------------------------------------------------------------------------------------
# tfds: builder, stock div2k layout, workers.


def test_missing_tfds_names_the_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, 'tensorflow_datasets', None)  # Makes `import` raise ImportError.
  with pytest.raises(ValueError, match=r"pip install 's2k-jax\[tfds\]'"):
    data.create_train_iterator(smoke_config(source='tfds'))


@pytest.fixture(scope='module')
def tfds_folders(tmp_path_factory):
  """Bundled photos as image folders: train 3 colour + 1 gray, eval 1."""
  root = tmp_path_factory.mktemp('tfds_src')
  (root / 'train' / 'gray').mkdir(parents=True)
  (root / 'eval').mkdir()
  Image.fromarray(skimage.data.astronaut()).save(root / 'train' / 'astronaut.png')
  Image.fromarray(skimage.data.rocket()).save(root / 'train' / 'rocket.png')
  Image.fromarray(skimage.data.immunohistochemistry()).save(root / 'train' / 'ihc.png')
  Image.fromarray(skimage.data.camera()).save(root / 'train' / 'gray' / 'camera.png')
  Image.fromarray(skimage.data.chelsea()).save(root / 'eval' / 'chelsea.png')
  return root


@pytest.fixture(scope='module')
def s2k_tfds(tfds_folders, tmp_path_factory):
  pytest.importorskip('tensorflow_datasets')
  pytest.importorskip('array_record')
  from s2k_jax import tfds_builder
  data_dir = tmp_path_factory.mktemp('tfds_data')
  tfds_builder.build(str(tfds_folders / 'train'), str(data_dir), str(tfds_folders / 'eval'))
  return data_dir


def test_tfds_builder_stores_the_images_exactly(s2k_tfds):
  config = smoke_config(source='tfds', tfds_data_dir=str(s2k_tfds))
  records = data.image_records(config, 'train')
  got = {}
  for r in records.records:
    name, pixels = records.reader(r)
    got[name.split('(')[-1].rstrip(')')] = pixels
  camera = skimage.data.camera()
  expected = {'astronaut.png': skimage.data.astronaut(), 'rocket.png': skimage.data.rocket(),
              'ihc.png': skimage.data.immunohistochemistry(),
              os.path.join('gray', 'camera.png'): np.repeat(camera[..., None], 3, -1)}
  assert sorted(got) == sorted(expected)
  for name, pixels in got.items():
    assert isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, expected[name])
  eval_batch = data.create_eval_batch(config, 1)['hr'][0]
  np.testing.assert_array_equal(eval_batch, skimage.data.chelsea()[86:214, 161:289])


def test_tfds_source_matches_folder_source_and_workers(s2k_tfds, tfds_folders):
  """Same images in the same order → same batches from tfds, from the folder, and with 2 workers."""
  tfds_config = smoke_config(source='tfds', tfds_data_dir=str(s2k_tfds))
  folder_config = smoke_config(source='folder', train_dir=str(tfds_folders / 'train'))
  from_folder = take(data.create_train_iterator(folder_config), 2)
  from_tfds = take(data.create_train_iterator(tfds_config), 2)
  tfds_config.data.num_workers = 2
  tfds_config.data.prefetch = 1
  it = data.create_train_iterator(tfds_config)
  try:
    from_workers = take(it, 2)
    state = it.get_state()
    expected_next = take(it, 1)[0]
  finally:
    it.close()
  for a, b, c in zip(from_folder, from_tfds, from_workers):
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
  resumed = data.create_train_iterator(tfds_config)
  try:
    resumed.set_state(state)
    np.testing.assert_array_equal(take(resumed, 1)[0], expected_next)
  finally:
    resumed.close()


def test_tfds_not_prepared_is_a_clear_error(tmp_path):
  pytest.importorskip('tensorflow_datasets')
  with pytest.raises(ValueError, match=r"'s2k_images' is not prepared in .*python -m s2k_jax.build_tfds"):
    data.create_train_iterator(smoke_config(source='tfds', tfds_data_dir=str(tmp_path)))
  with pytest.raises(ValueError, match=r"'div2k/bicubic_x3' is not prepared .*tfds build div2k/bicubic_x3 "
                                       r"--file_format=array_record"):
    data.create_eval_batch(smoke_config(source='tfds', tfds_name='div2k/bicubic_x3',
                                        tfds_data_dir=str(tmp_path)), 1)


def test_stock_div2k_name_reads_hr_images(tmp_path, tfds_folders):
  """The stock `div2k` builder's own features and layout, prepared from local folders without TF."""
  tfds = pytest.importorskip('tensorflow_datasets')
  from tensorflow_datasets.datasets.div2k import div2k_dataset_builder as stock

  class LocalDiv2k(stock.Builder, skip_registration=True):
    name = 'div2k'
    __module__ = stock.Builder.__module__  # tfds locates a builder's files through its module.

    def _split_generators(self, dl_manager):
      return {'train': self._generate_examples(str(tfds_folders / 'train')),
              'validation': self._generate_examples(str(tfds_folders / 'eval'))}

    def _generate_examples(self, folder):  # pylint: disable=arguments-renamed
      for path in images.list_images(folder):
        yield os.path.basename(path), {'hr': path, 'lr': path}

  LocalDiv2k(config='bicubic_x4', data_dir=str(tmp_path), file_format='array_record').download_and_prepare()
  assert (tmp_path / 'div2k' / 'bicubic_x4' / '2.0.0').is_dir()
  config = smoke_config(source='tfds', tfds_name='div2k/bicubic_x4', tfds_data_dir=str(tmp_path))
  records = data.image_records(config, 'eval')
  name, payload = records.reader(records.records[0])
  assert isinstance(payload, bytes)  # Encoded PNG, decoded by s2k_jax.images.
  np.testing.assert_array_equal(images.decode_payload(payload, name), skimage.data.chelsea())
  batch = next(data.create_train_iterator(config))['hr']
  assert batch.shape == (8, 128, 128, 3)
  del tfds


def symmetry_of(crop, source):
  """Index (in `symmetries` order) of the symmetry that makes `crop` a window of `source`, or None."""
  size = crop.shape[0]
  for index, candidate in enumerate(symmetries(crop)):
    top, left = int(candidate[0, 0, 0]), int(candidate[0, 0, 1])
    if np.array_equal(candidate, source[top:top + size, left:left + size]):
      return index
  return None


def test_the_eight_symmetries_are_drawn_uniformly(coordinate_folder):
  """Each crop of the training iterator is one of the square's 8 symmetries with probability 1/8.

  2000 crops from `create_train_iterator` (grain's per-element seeds through `random_crop`) of the
  coordinate images, each symmetry identified by undoing it (`symmetry_of`, exact match of the source
  window), and a chi-square test (scipy.stats.chisquare) of the 8 counts against 250 each. Measured:
  counts 262/234/237/251/260/260/246/250, p = 0.87; quarter turns drawn from {0, 1, 2} only (6 of
  the 8 symmetries) give p = 3e-140, mirroring with probability 0.4 p = 4e-12.
  """
  config = smoke_config(source='folder', train_dir=str(coordinate_folder), hr_crop=16)
  sources = {10 * (i + 1): coordinate_image(40 + 4 * i, 56, 10 * (i + 1)) for i in range(6)}
  counts = np.zeros(8, int)
  for batch in take(data.create_train_iterator(config), 250):
    for crop in batch:
      index = symmetry_of(crop, sources[int(crop[0, 0, 2])])
      assert index is not None
      counts[index] += 1
  assert counts.sum() == 2000
  assert scipy.stats.chisquare(counts).pvalue > 1e-3


@pytest.mark.parametrize('field, value, source', [
    ('train_dir', '/tmp/x', 'folder'), ('eval_dir', '/tmp/x', 'folder'),
    ('tfds_name', 'div2k/bicubic_x4', 'tfds'), ('tfds_data_dir', '/tmp/x', 'tfds'),
    ('tfds_image_key', 'hr', 'tfds')])
def test_a_field_of_another_source_is_an_error_not_ignored(field, value, source):
  other = 'bundled'
  with pytest.raises(ValueError, match=f'add --config.data.source={source}') as info:
    data.create_train_iterator(smoke_config(source=other, **{field: value}))
  assert f'data.{field}={value!r}' in str(info.value)
  with pytest.raises(ValueError, match=f'data.{field}'):
    data.create_eval_batch(smoke_config(source=other, **{field: value}), 1)
  wrong = 'tfds' if source == 'folder' else 'folder'
  with pytest.raises(ValueError, match=f'data.source={wrong}: add --config.data.source={source}'):
    data.check_fields(smoke_config(source=wrong, **{field: value}))
  data.check_fields(smoke_config(source=source, **{field: value}))  # its own source reads it
