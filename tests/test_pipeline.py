"""Tests for the blind SR pipeline (s2k_jax/pipeline.py): shapes, grouping, tiling, checks, files."""
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import data as skdata
from skimage import transform

from configs import gaussian as gaussian_config
from configs import sftmd as sftmd_config
from s2k_jax import degradation
from s2k_jax import estimator
from s2k_jax import kernels
from s2k_jax import modelio
from s2k_jax import pipeline
from s2k_jax import tasks
from s2k_jax.restorers import base
from s2k_jax.restorers import sftmd as sftmd_restorer
from s2k_jax import spectrum
from s2k_jax import cli


@pytest.fixture(scope='module')
def est(smoke_estimator_workdir):
  return estimator.load(str(smoke_estimator_workdir))


@pytest.fixture(scope='module')
def rest(smoke_restorer_workdir):
  return tasks.load_restorer(str(smoke_restorer_workdir))


@pytest.fixture(scope='module')
def plain_rest(rest):
  """`rest` without its bicubic anchor: the tiling arithmetic below is on the network's 15-pixel reach."""
  config = rest.config.copy_and_resolve_references()
  config.restorer.anchor = 'none'
  return sftmd_restorer.from_state(config, rest.state, rest.step, rest.directory)


@pytest.fixture(scope='module')
def photo():
  """chelsea at 0.3×: a natural 90×135 LR image."""
  return transform.rescale(skdata.chelsea(), 0.3, channel_axis=-1, anti_aliasing=True).astype(np.float32)


def untrained_restorer(arg: str, **restorer_overrides) -> base.Restorer:
  config = sftmd_config.get_config(arg)
  config.restorer.update(restorer_overrides)
  state = jax.jit(functools.partial(sftmd_restorer.create_train_state, config))(
      sftmd_restorer.fit_basis(config), jax.random.key(1))
  return sftmd_restorer.from_state(config, state, directory=f'<untrained {arg}>')


def with_scale(est_: estimator.Estimator, scale: int) -> estimator.Estimator:
  config = est_.config.copy_and_resolve_references()
  config.degradation.scale = scale
  return dataclasses.replace(est_, config=config)


# ---------------------------------------------------------------------------------------------------
# Tiles and the receptive field.


@pytest.mark.parametrize('length,tile,overlap', [(90, 40, 15), (1000, 512, 105), (37, 40, 5), (41, 40, 0),
                                                 (100, 31, 15), (513, 512, 128)])
def test_tile_spans_partition_the_axis_with_margins(length, tile, overlap):
  spans = pipeline.tile_spans(length, tile, overlap)
  kept = np.concatenate([np.arange(k0, k1) for _, _, k0, k1 in spans])
  np.testing.assert_array_equal(kept, np.arange(length))  # Every pixel once, in order.
  for start, stop, k0, k1 in spans:
    assert stop - start == min(tile, length) and 0 <= start and stop <= length
    assert k0 == 0 or k0 - start >= overlap
    assert k1 == length or stop - k1 >= overlap


def _impulse_extent(r: base.Restorer, scale: int) -> float:
  """LR pixels beyond an LR impulse's own pixel that the restorer's output changes at all."""
  c = r.receptive_field + 4  # The impulse's LR pixel, with room for its whole reach on both sides.
  lr = np.random.default_rng(0).random((1, 2 * c + 1, 2 * c + 1, 3), np.float32) * 0.8
  kernel = np.asarray(kernels.gaussian_kernel(15, 2.0, 1.5, 0.3))[None]
  base_sr = np.asarray(r.restore(lr, kernel, downsample='direct'))
  lr[0, c, c] += 0.2
  changed = np.abs(np.asarray(r.restore(lr, kernel, downsample='direct')) - base_sr).max(axis=(0, 3))
  rows = np.nonzero(changed.max(axis=1) > 0)[0]
  # LR pixel c covers HR rows [c·s, (c + 1)·s).
  return max(c * scale - rows.min(), rows.max() - ((c + 1) * scale - 1)) / scale


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_receptive_field_radius_matches_an_impulse_response(scale):
  """The network's radius is tight; the anchor's adds its low-pass reach. (The anchored output's far
  changes, network tails through a 49-tap average, fall below float32 resolution: an upper bound only.)"""
  r = untrained_restorer(f'gaussian_x{scale},smoke', num_blocks=2, anchor='none')
  radius = r.receptive_field  # the network's, and the reach of moving its output to another LR grid
  grid_reach = math.ceil(sftmd_restorer.GRID_REACH / scale)
  assert radius - grid_reach - 1 < _impulse_extent(r, scale) <= radius - grid_reach, radius
  anchored = untrained_restorer(f'gaussian_x{scale},smoke', num_blocks=2)
  assert anchored.receptive_field == radius + sftmd_restorer.ANCHOR_REACH
  assert sftmd_restorer.ANCHOR_REACH - 2 < _impulse_extent(anchored, scale) <= anchored.receptive_field


def test_tiled_equals_untiled_when_the_overlap_covers_the_receptive_field(est, plain_rest, photo, monkeypatch):
  rest = plain_rest
  # 1 block: 3 + 6 + 3 + 1 + ½ + 1 = 14.5 → 15, and 1 for moving the output onto a resized photo's grid.
  assert rest.receptive_field == 16
  untiled, k_untiled = pipeline.super_resolve(photo[None], est, rest, tile=0)
  assert pipeline.default_overlap(rest, 60) == 15
  tiled, k_tiled = pipeline.super_resolve(photo[None], est, rest, tile=60)  # 2 × 4 tiles.
  np.testing.assert_array_equal(k_tiled, k_untiled)  # One kernel per image, from the whole image.
  assert np.abs(tiled - untiled).max() <= 1e-6
  # Abutting tiles (2 × 3 of 45², no overlap) leave seams; the test would see a bad layout.
  seams, _ = pipeline.super_resolve(photo[None], est, rest, tile=45, overlap=0)
  assert np.abs(seams - untiled).max() > 1e-4
  # Above AUTO_TILE² pixels tiling is automatic.
  calls = []
  original = base.Restorer.restore
  monkeypatch.setattr(base.Restorer, 'restore',
                      lambda self, lr, *a, **k: calls.append(lr.shape) or original(self, lr, *a, **k))
  monkeypatch.setattr(pipeline, 'AUTO_TILE', 60)
  auto, _ = pipeline.super_resolve(photo[None], est, rest)
  assert calls == [(1, 60, 60, 3)] * 8
  np.testing.assert_array_equal(auto, tiled)


def test_anchored_tiles_are_seamless_too(est, rest):
  """The anchor's low-pass reaches 26 LR pixels further: with that overlap tiles still equal the whole."""
  assert rest.receptive_field == 16 + sftmd_restorer.ANCHOR_REACH
  lr = transform.rescale(skdata.chelsea(), 0.6, channel_axis=-1, anti_aliasing=True).astype(np.float32)[None]
  untiled, _ = pipeline.super_resolve(lr, est, rest, tile=0)
  tiled, _ = pipeline.super_resolve(lr, est, rest, tile=100, overlap=rest.receptive_field)  # 2 × 3 tiles
  assert np.abs(tiled - untiled).max() <= 1e-6


def test_default_overlap_is_capped_at_a_quarter_tile(est, plain_rest, photo, monkeypatch):
  """Below tile = 4 × radius the default overlap is tile // 4, and the seams stay negligible.

  References: the untiled SR of the same image, and the same tiles abutting (overlap 0). With the cap a
  tile narrower than twice the receptive-field radius still works; its seams, from the receptive field's
  outermost pixels only, stay at least 100× below abutting tiles' (measured 540× at tile 28, 5000× at 40).
  """
  rest = plain_rest
  lr = photo[None]
  radius = rest.receptive_field
  assert radius == 16
  assert [pipeline.default_overlap(rest, tile) for tile in (28, 40, 59, 64, 100)] == [7, 10, 14, 16, 16]
  untiled, _ = pipeline.super_resolve(lr, est, rest, tile=0)
  used = []
  original = pipeline.restore_tiled
  monkeypatch.setattr(pipeline, 'restore_tiled', lambda r, x, k, tile, overlap, *a: used.append(
      (tile, overlap)) or original(r, x, k, tile, overlap, *a))
  for tile, capped_overlap in ((40, 10), (28, 7)):
    used.clear()
    capped, _ = pipeline.super_resolve(lr, est, rest, tile=tile)
    assert used == [(tile, capped_overlap)]  # the overlap the tiles were cut with
    abutting, _ = pipeline.super_resolve(lr, est, rest, tile=tile, overlap=0)
    seam, abutting_seam = np.abs(capped - untiled).max(), np.abs(abutting - untiled).max()
    assert abutting_seam > 1e-3 and seam < 0.01 * abutting_seam, (tile, seam, abutting_seam)
  # The uncapped radius does not fit in a 28-pixel tile.
  with pytest.raises(ValueError, match=r'tile \(28\) must exceed twice the overlap \(16\)'):
    pipeline.super_resolve(lr, est, rest, tile=28, overlap=radius)


# ---------------------------------------------------------------------------------------------------
# Arrays.


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_shapes_for_odd_sizes_and_every_scale(est, photo, scale):
  r = untrained_restorer(f'gaussian_x{scale},smoke')
  sr, k = pipeline.super_resolve(photo[None, 3:40, 7:60], with_scale(est, scale), r)
  assert sr.shape == (1, 37 * scale, 53 * scale, 3) and sr.dtype == np.float32
  assert 0 <= sr.min() and sr.max() <= 1
  assert k.shape == (1, 15, 15) and k.min() >= 0
  np.testing.assert_allclose(k.sum(), 1.0, atol=1e-5)
  # Canonical form: the centre of mass is on the centre pixel.
  pos = np.arange(15) - 7
  np.testing.assert_allclose([np.sum(k[0] * pos[:, None]), np.sum(k[0] * pos[None, :])], 0.0, atol=1e-3)


def test_pipeline_is_training_mode_estimate_then_canonical_kernel_then_restore(est, rest, photo):
  lr = photo[None, :41, :67]
  sr, k = pipeline.super_resolve(lr, est, rest)
  raw = estimator.estimate_kernels(est, lr, mode=est.config.spectrum.mode)['kernel']
  expected_k = np.asarray(spectrum.canonical_kernel(raw))
  np.testing.assert_allclose(k, expected_k, atol=1e-7)
  np.testing.assert_allclose(sr, np.asarray(rest.restore(lr, expected_k, downsample='direct', grid='centre')), atol=1e-6)


def test_lists_are_grouped_by_size_and_keep_their_order(est, rest, photo, monkeypatch):
  images = [photo[:40, :48], photo[50:83, 60:95], photo[45:85, 80:128]]
  batches = []
  original = pipeline.super_resolve_batch
  monkeypatch.setattr(pipeline, 'super_resolve_batch',
                      lambda lr, *a, **k: batches.append(lr.shape) or original(lr, *a, **k))
  sr, k = pipeline.super_resolve(images, est, rest)
  assert batches == [(2, 40, 48, 3), (1, 33, 35, 3)]
  assert [x.shape for x in sr] == [(160, 192, 3), (132, 140, 3), (160, 192, 3)]
  for image, out in zip(images, sr):
    alone, _ = pipeline.super_resolve(image[None], est, rest)
    np.testing.assert_allclose(out, alone[0], atol=1e-6)


def test_uint8_input_is_scaled_and_bad_float_input_is_refused(est, rest, photo):
  as_uint8 = (photo[:32, :32] * 255 + 0.5).astype(np.uint8)
  sr8, _ = pipeline.super_resolve(as_uint8[None], est, rest)
  srf, _ = pipeline.super_resolve((as_uint8 / np.float32(255))[None], est, rest)
  np.testing.assert_allclose(sr8, srf, atol=1e-6)
  with pytest.raises(ValueError, match=r'in \[0, 1\].*divide by the white level'):
    pipeline.super_resolve([as_uint8.astype(np.float32)], est, rest)
  with pytest.raises(ValueError, match=r"spectrum_mode must be one of \('crop', 'welch'\)"):
    pipeline.super_resolve([as_uint8], est, rest, spectrum_mode='fft')
  with pytest.raises(ValueError, match=r'a \(B, h, w, 3\) batch or a list'):
    pipeline.super_resolve(as_uint8, est, rest)


def test_images_below_the_minimum_side_are_refused_by_name(est, rest, photo):
  assert pipeline.min_lr_side(est) == 16  # max(16, 32 // 4) for the smoke estimator's 32² spectrum.
  sr, _ = pipeline.super_resolve([photo[:16, :20]], est, rest)
  assert sr[0].shape == (64, 80, 3)
  with pytest.raises(pipeline.ImageTooSmallError, match=r'tiny\.png: 15×20 pixels is too small.*at least 16'):
    pipeline.super_resolve([photo[:40, :40], photo[:15, :20]], est, rest, names=['ok.png', 'tiny.png'])


def with_spectrum_size(est_: estimator.Estimator, size: int) -> estimator.Estimator:
  config = est_.config.copy_and_resolve_references()
  config.spectrum.size = size
  return dataclasses.replace(est_, config=config)


def test_minimum_side_is_a_quarter_of_the_spectrum_size_above_the_floor(est, rest, photo):
  """Reference: the documented rule max(16, S // 4) (docs/conventions.md, Minimum LR side).

  The smoke estimator's S = 32 only reaches the floor of 16; at S = 128 the S/4 term binds: 32 pixels
  on each side are accepted and 31 on either side refused. Its U-Net is fully convolutional, so it
  reads 128² spectra too.
  """
  sides = {size: pipeline.min_lr_side(with_spectrum_size(est, size)) for size in (32, 64, 66, 68, 128, 256)}
  assert sides == {32: 16, 64: 16, 66: 16, 68: 17, 128: 32, 256: 64}
  presets = {arg: pipeline.min_lr_side(dataclasses.replace(est, config=gaussian_config.get_config(arg)))
             for arg in ('smoke', 'cpu', None)}
  assert presets == {'smoke': 16, 'cpu': 16, None: 64}  # "16 for the CPU presets, 64 at paper scale"
  big = with_spectrum_size(est, 128)
  sr, k = pipeline.super_resolve([photo[:32, :45], photo[50:82, 60:92]], big, rest)
  assert [x.shape for x in sr] == [(128, 180, 3), (128, 128, 3)] and k[0].shape == (15, 15)
  for height, width in ((31, 45), (45, 31)):
    with pytest.raises(pipeline.ImageTooSmallError,
                       match=rf'small\.png: {height}×{width} pixels is too small.*spectrum size 128.*at least 32'):
      pipeline.super_resolve([photo[:32, :45], photo[:height, :width]], big, rest, names=['ok.png', 'small.png'])


# ---------------------------------------------------------------------------------------------------
# Model compatibility.


def test_a_scale_the_restorer_was_not_trained_for_is_refused(est, rest):
  with pytest.raises(pipeline.IncompatibleModelsError, match=r'restores ×4, not ×2: ask for one of those \(--scale\)'):
    pipeline.check_compatible(est, rest, scale=2)
  pipeline.check_compatible(est, rest, scale=4)
  x2 = untrained_restorer('gaussian_x2,smoke', kernel_size=11)
  # What it declares comes from its config (the next test relies on these fields alone).
  config = x2.config
  assert x2.kernel_size == config.restorer.kernel_size == 11
  assert (x2.families, x2.scales) == ((config.degradation.family,), (config.degradation.scale,)) == (('gaussian',), (2,))
  with pytest.raises(pipeline.IncompatibleModelsError, match=r'trained on ×4 LR images but the restorer restores ×2'):
    pipeline.check_compatible(est, x2)


def test_a_multi_scale_restorer_runs_at_the_estimators_scale(est):
  """USRNet serves ×2/×3/×4 and every family; asking for a scale the estimator does not read is refused."""
  from configs import usrnet as usrnet_config  # pylint: disable=g-import-not-at-top
  from s2k_jax.restorers import usrnet as usrnet_restorer  # pylint: disable=g-import-not-at-top
  config = usrnet_config.get_config('mixed,smoke')
  state = jax.jit(functools.partial(usrnet_restorer.create_train_state, config))(jax.random.key(0))
  rest = usrnet_restorer.from_state(config, state)
  pipeline.check_compatible(est, rest)
  pipeline.check_compatible(est, rest, scale=4)
  with pytest.raises(pipeline.IncompatibleModelsError, match=r'reads ×4 LR spectra, not ×2') as refused:
    pipeline.check_compatible(est, rest, scale=2)
  assert '{' not in str(refused.value)  # every placeholder filled in (an f-string, not a template)
  with pytest.raises(pipeline.IncompatibleModelsError, match=r'restores ×2, ×3, ×4, not ×5.*for ×5') as refused:
    pipeline.check_compatible(est, rest, scale=5)
  assert '{' not in str(refused.value)
  lr = np.random.default_rng(0).random((1, 20, 24, 3)).astype(np.float32)
  assert pipeline.super_resolve_batch(lr, est, rest, tile=0)['sr'].shape == (1, 80, 96, 3)


def test_a_mixed_family_estimator_needs_a_restorer_of_every_family(est):
  """An estimator of 'mixed' kernels (configs/mixed.py) may return a kernel of any family: USRNet trained
  on all three serves it, a Gaussian SFTMD is refused, naming the families it lacks."""
  from configs import usrnet as usrnet_config  # pylint: disable=g-import-not-at-top
  from s2k_jax.restorers import usrnet as usrnet_restorer  # pylint: disable=g-import-not-at-top
  config = est.config.copy_and_resolve_references()
  config.degradation.family = kernels.MIXED
  mixed = dataclasses.replace(est, config=config)
  usrnet_cfg = usrnet_config.get_config('mixed,smoke')
  state = jax.jit(functools.partial(usrnet_restorer.create_train_state, usrnet_cfg))(jax.random.key(0))
  pipeline.check_compatible(mixed, usrnet_restorer.from_state(usrnet_cfg, state), scale=4)
  with pytest.raises(pipeline.IncompatibleModelsError, match='knows mixed kernels but the restorer was trained '
                     'on gaussian kernels only; use a restorer trained on motion, disk kernels'):
    pipeline.check_compatible(mixed, untrained_restorer('gaussian_x4,smoke'))


def test_kernels_of_an_estimator_trained_on_random_resizers_are_blurs_before_bicubic(est):
  assert pipeline.kernel_downsample(est) == est.config.degradation.downsample == 'direct'
  for trained, read_as in (('random_resizer', 'bicubic'), ('area', 'area'), ('bicubic', 'bicubic')):
    config = est.config.copy_and_resolve_references()
    config.degradation.downsample = trained
    assert pipeline.kernel_downsample(dataclasses.replace(est, config=config)) == read_as


def test_other_families_and_smaller_kernel_canvases_are_refused(est, rest):
  """The rules read what a restorer declares (`base.Restorer`'s fields, set from its config: the test
  above), so `rest` with one field changed stands for each other restorer."""
  with pytest.raises(pipeline.IncompatibleModelsError, match='knows gaussian kernels but the restorer was '
                     'trained on disk kernels only'):
    pipeline.check_compatible(est, dataclasses.replace(rest, families=('disk',)))
  with pytest.raises(pipeline.IncompatibleModelsError, match=r'15×15 kernels.*covers only 11×11'):
    pipeline.check_compatible(est, dataclasses.replace(rest, kernel_size=11))
  # A larger canvas is fine: the kernel is zero-padded, which changes nothing.
  pipeline.check_compatible(est, dataclasses.replace(rest, kernel_size=19))
  with pytest.raises(ValueError, match='trained without noise'):
    pipeline.check_noise_sigma(rest, 0.05)


# ---------------------------------------------------------------------------------------------------
# Files.


def test_kernel_sigmas_of_a_gaussian_are_its_sigmas():
  major, minor = cli.kernel_sigmas(np.asarray(kernels.gaussian_kernel(15, 1.0, 1.5, 0.7)))
  np.testing.assert_allclose([major, minor], [1.5, 1.0], rtol=1e-3)


def test_super_resolve_files_reports_bad_files_and_writes_the_rest(est, rest, photo, tmp_path):
  from s2k_jax import visualize  # pylint: disable=g-import-not-at-top
  good = tmp_path / 'good.png'
  visualize.save_png(str(good), (photo[:30, :45] * 255 + 0.5).astype(np.uint8))
  broken = tmp_path / 'broken.jpg'
  broken.write_bytes(b'\xff\xd8\xff\xe0 not a jpeg')
  results = cli.super_resolve_files([broken, good], tmp_path / 'out', est, rest, progress=False)
  assert results[0].error and 'broken.jpg' in results[0].error and not results[0].outputs
  assert results[1].error is None and (results[1].lr_size, results[1].sr_size) == ((30, 45), (120, 180))
  assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == [
      'good_kernel.npy', 'good_kernel.png', 'good_spectrum.png', 'good_x4.png']
  with pytest.raises(ValueError, match='would write the same outputs'):
    cli.super_resolve_files([good, tmp_path / 'x' / 'good.jpg'], tmp_path / 'out', est, rest)


def _best_diagonal_shift(sr: np.ndarray, hr: np.ndarray) -> float:
  """The shift t (HR px, both axes) that best aligns `sr` with `hr`: argmin over t of the interior MSE of
  sr moved by −t, on a 1/8-pixel grid."""
  shifts = np.linspace(-2.5, 2.5, 41)
  errors = [np.mean((np.asarray(degradation.translate(jnp.asarray(sr)[None], -t))[0] - hr)[16:-16, 16:-16] ** 2)
            for t in shifts]
  return float(shifts[int(np.argmin(errors))])


def test_shipped_pipeline_puts_a_resized_photo_back_on_its_grid():
  """A held-out photo shrunk ÷4 by PIL's bicubic resize comes back without a shift (measured 0.0 px); told
  the papers' direct grid instead, it comes back (4 − 1)/2 = 1.5 px off, as before this convention."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  hr_uint8 = skdata.coffee()[100:292, 200:392]
  lr = np.asarray(Image.fromarray(hr_uint8).resize((48, 48), Image.Resampling.BICUBIC))
  est = estimator.load(modelio.pretrained_estimator('gaussian', 4))
  rest = tasks.load_restorer(modelio.pretrained_restorer('gaussian', 4))
  hr = hr_uint8.astype(np.float32) / 255
  centre, _ = pipeline.super_resolve(lr[None], est, rest)
  direct, _ = pipeline.super_resolve(lr[None], est, rest, grid='direct')
  assert abs(_best_diagonal_shift(centre[0], hr)) <= 0.25
  assert abs(_best_diagonal_shift(direct[0], hr) + 1.5) <= 0.25


def test_noise_level_is_clipped_to_the_trained_range(smoke_usrnet_workdir, smoke_restorer_workdir):
  rest = tasks.load_restorer(str(smoke_usrnet_workdir))
  noisy = np.clip(0.5 + 0.1 * np.random.default_rng(0).standard_normal((64, 64, 3)), 0, 1)
  sigma, text = pipeline.noise_level(noisy, rest, None)
  assert sigma == pytest.approx(0.05) and 'clipped to the trained 5.0%' in text
  sigma, text = pipeline.noise_level(noisy, tasks.load_restorer(str(smoke_restorer_workdir)), None)
  assert sigma == 0.0 and 'has no noise input' in text
