"""Tests for the `s2k-sr` console script (s2k_jax/cli.py): a photo end to end, and every bad input."""
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
from skimage import data as skdata
from skimage import transform
import tifffile

from s2k_jax import cli
from s2k_jax import modelio

SCRIPT = os.path.join(os.path.dirname(sys.executable), 's2k-sr')


@pytest.fixture(scope='module')
def photo_png(tmp_path_factory):
  """chelsea at ¼ size (75×113), saved as an 8-bit PNG."""
  image = transform.rescale(skdata.chelsea(), 0.25, channel_axis=-1, anti_aliasing=True)
  path = tmp_path_factory.mktemp('photos') / 'chelsea.png'
  Image.fromarray((image * 255 + 0.5).astype(np.uint8)).save(path)
  return path


def models(est_dir, rest_dir):
  return ['--estimator', str(est_dir), '--restorer', str(rest_dir)]


def test_console_script_end_to_end(photo_png, tmp_path, smoke_estimator_workdir, smoke_restorer_workdir):
  gray16 = tmp_path / 'moon16.png'  # 16-bit grayscale: read at full precision, written as 16-bit RGB.
  moon = transform.resize(skdata.moon(), (40, 48), anti_aliasing=True)
  Image.fromarray((moon * 65535 + 0.5).astype(np.uint16)).save(gray16)
  rgb = np.asarray(Image.open(photo_png))  # The photo again, with a soft-edged disc of opacity: kept.
  rows, cols = np.mgrid[:75, :113]
  disc = np.clip(255 * (2.0 - np.hypot(rows - 37.5, cols - 56.5) / 12), 0, 255).astype(np.uint8)
  Image.fromarray(np.dstack([rgb, disc])).save(tmp_path / 'cutout.png')
  out = tmp_path / 'out'
  run = subprocess.run([SCRIPT, str(photo_png), str(gray16), str(tmp_path / 'cutout.png'), '--scale', '4',
                        '--out', str(out), *models(smoke_estimator_workdir, smoke_restorer_workdir)],
                       capture_output=True, text=True, timeout=300, check=False)
  assert run.returncode == 0, run.stderr
  with Image.open(out / 'chelsea_x4.png') as sr:
    assert (sr.mode, sr.size) == ('RGB', (452, 300))
  moon = tifffile.imread(out / 'moon16_x4.tif')  # 16 bits in, 16 bits out: levels between the 8-bit ones.
  assert moon.dtype == np.uint16 and moon.shape == (160, 192, 3) and (moon % 257 != 0).mean() > 0.9
  # RGBA out: the colours are the photo's without alpha; the alpha is its bicubic enlargement (PIL's, an
  # independent Keys a = −0.5 on pixel centres; compared away from the borders, which the two extend
  # differently).
  with Image.open(out / 'cutout_x4.png') as sr:
    assert (sr.mode, sr.size) == ('RGBA', (452, 300))
    cutout = np.asarray(sr)
  np.testing.assert_array_equal(cutout[..., :3], np.asarray(Image.open(out / 'chelsea_x4.png')))
  reference = np.asarray(Image.fromarray(disc).resize((452, 300), Image.Resampling.BICUBIC))
  np.testing.assert_allclose(cutout[8:-8, 8:-8, 3], reference[8:-8, 8:-8], atol=1)
  assert cutout[..., 3].min() == 0 and cutout[..., 3].max() == 255  # clear, opaque and the edge between
  kernel = np.load(out / 'chelsea_kernel.npy')
  assert kernel.shape == (15, 15) and kernel.dtype == np.float32 and kernel.min() >= 0
  np.testing.assert_allclose(kernel.sum(), 1.0, atol=1e-5)
  # The figure is the kernel over its maximum, each tap a 18×18 block (15·18 = 270 ≥ 256).
  figure = np.asarray(Image.open(out / 'chelsea_kernel.png'))
  assert figure.shape == (270, 270)
  np.testing.assert_allclose(figure[::18, ::18], kernel / kernel.max() * 255, atol=0.51)
  assert np.all(figure == np.kron(figure[::18, ::18], np.ones((18, 18), np.uint8)))
  assert np.asarray(Image.open(out / 'chelsea_spectrum.png')).shape == (256, 256)  # 32² spectrum, ×8.
  # The summary's σ's are the square roots of the eigenvalues of the kernel's covariance.
  rows, cols = np.indices(kernel.shape)
  cov = np.cov(np.stack([rows.ravel(), cols.ravel()]), aweights=kernel.ravel().astype(np.float64), bias=True)
  major, minor = np.sqrt(np.linalg.eigvalsh(cov))[::-1]
  line = next(x for x in run.stdout.splitlines() if x.startswith('chelsea.png'))
  assert line.startswith(f'chelsea.png: LR 75×113 → SR 300×452 (gaussian kernels, ×4, SFTMD), kernel 15×15 '
                         f'σ {major:.2f}/{minor:.2f} HR px')
  # Where every file went, then one closing line with the totals.
  assert line.endswith(f'→ {out / "chelsea_x4.png"} (+ chelsea_kernel.png, chelsea_kernel.npy, '
                       'chelsea_spectrum.png)')
  assert 'moon16.png: LR 40×48 → SR 160×192' in run.stdout
  assert 'transparency kept' not in line
  cutout_line = next(x for x in run.stdout.splitlines() if x.startswith('cutout.png'))
  assert ', transparency kept (alpha upscaled by bicubic), ' in cutout_line
  assert run.stdout.splitlines()[-1].startswith('s2k-sr: 3 of 3 images super-resolved in ')
  assert run.stdout.splitlines()[-1].endswith(f' s → {out}')


def test_usrnet_restorer_and_the_noise_level(photo_png, tmp_path, capsys, smoke_estimator_workdir,
                                             smoke_usrnet_workdir):
  """The multi-scale USRNet runs at the estimator's scale; the noise σ is estimated per photo and
  printed (clipped to the trained range), or taken as given; out-of-range values exit 2."""
  args = [str(photo_png), '--out', str(tmp_path / 'out'), *models(smoke_estimator_workdir, smoke_usrnet_workdir)]
  assert cli.main(args) == 0
  line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith('chelsea.png'))
  assert 'LR 75×113 → SR 300×452 (gaussian kernels, ×4, USRNet)' in line
  assert ', noise σ ' in line and '% (estimated' in line
  assert cli.main(args + ['--noise-sigma', '0.01']) == 0
  assert 'noise σ 1.00% (given)' in capsys.readouterr().out
  assert cli.main(args + ['--noise-sigma', '0.3']) == 2
  assert 'must be in [0, 0.2]' in capsys.readouterr().err


def test_quiet_prints_only_errors(photo_png, tmp_path, capsys, smoke_estimator_workdir, smoke_restorer_workdir):
  """--quiet: nothing on stdout; each failed image and the failure count still on stderr."""
  tiny = tmp_path / 'tiny.png'
  Image.fromarray(np.full((10, 12, 3), 128, np.uint8)).save(tiny)
  status = cli.main([str(photo_png), str(tiny), '--out', str(tmp_path / 'out'), '--quiet',
                     *models(smoke_estimator_workdir, smoke_restorer_workdir)])
  assert status == 1
  captured = capsys.readouterr()
  assert captured.out == ''
  assert f'FAILED {tiny}: 10×12 pixels is too small' in captured.err
  assert 's2k-sr: 1 of 2 images failed' in captured.err
  assert 'chelsea' not in captured.err


def test_bad_files_are_reported_and_the_rest_still_written(photo_png, tmp_path, capsys,
                                                           smoke_estimator_workdir, smoke_restorer_workdir):
  corrupt = tmp_path / 'corrupt.png'
  corrupt.write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 40)
  tiny = tmp_path / 'tiny.png'
  Image.fromarray(np.full((10, 12, 3), 128, np.uint8)).save(tiny)
  missing = tmp_path / 'missing.jpg'
  out = tmp_path / 'out'
  status = cli.main([str(corrupt), str(photo_png), str(tiny), str(missing), '--out', str(out), '--quiet',
                     *models(smoke_estimator_workdir, smoke_restorer_workdir)])
  assert status == 1
  assert sorted(p.name for p in out.iterdir()) == [
      'chelsea_kernel.npy', 'chelsea_kernel.png', 'chelsea_spectrum.png', 'chelsea_x4.png']
  err = capsys.readouterr().err
  assert f's2k-sr: 3 of 4 images failed: {corrupt}, {tiny}, {missing}' in err


def test_bad_files_are_explained_one_line_each(tmp_path, capsys, smoke_estimator_workdir,
                                               smoke_restorer_workdir):
  tiny = tmp_path / 'tiny.png'
  Image.fromarray(np.full((10, 12, 3), 128, np.uint8)).save(tiny)
  text = tmp_path / 'notes.png'
  text.write_text('not an image')
  status = cli.main([str(tiny), str(text), '--out', str(tmp_path / 'out'),
                     *models(smoke_estimator_workdir, smoke_restorer_workdir)])
  assert status == 1
  err = capsys.readouterr().err
  assert f'FAILED {tiny}: 10×12 pixels is too small for kernel estimation' in err
  assert 'needs at least 16 pixels on each side' in err
  assert f'FAILED {text}: not a readable image file' in err


def test_a_restorer_given_as_estimator_exits_2(photo_png, tmp_path, capsys, smoke_restorer_workdir):
  out = tmp_path / 'out'
  status = cli.main([str(photo_png), '--out', str(out), *models(smoke_restorer_workdir, smoke_restorer_workdir)])
  assert status == 2
  err = capsys.readouterr().err
  assert f"estimator: {smoke_restorer_workdir} holds a 'sftmd_restorer' checkpoint, not a 's2k_estimator'" in err
  assert not out.exists()  # Nothing was processed.


def test_a_scale_the_restorer_was_not_trained_for_exits_2(photo_png, tmp_path, capsys,
                                                          smoke_estimator_workdir, smoke_restorer_workdir):
  status = cli.main([str(photo_png), '--scale', '2', '--out', str(tmp_path / 'out'),
                     *models(smoke_estimator_workdir, smoke_restorer_workdir)])
  assert status == 2
  assert 'restores ×4, not ×2: ask for one of those (--scale)' in capsys.readouterr().err


def test_missing_checkpoints_and_bad_arguments_exit_2(photo_png, tmp_path, capsys, monkeypatch):
  status = cli.main([str(photo_png), '--out', str(tmp_path), *models(tmp_path / 'nope', tmp_path / 'nope')])
  assert status == 2
  assert f'estimator: {tmp_path / "nope"}: no such checkpoint directory' in capsys.readouterr().err
  status = cli.main([str(photo_png), '--tile', '20', '--overlap', '10', '--out', str(tmp_path),
                     *models(tmp_path, tmp_path)])
  assert status == 2
  assert 'tile (20) must exceed twice the overlap (10)' in capsys.readouterr().err
  with pytest.raises(SystemExit) as exit_info:
    cli.main([str(photo_png), '--out', str(tmp_path), '--family', 'box'])
  assert exit_info.value.code == 2
  assert "invalid choice: 'box'" in capsys.readouterr().err
  with pytest.raises(SystemExit) as exit_info:
    cli.main([str(photo_png), '--out', str(tmp_path), '--grid', 'corner'])
  assert exit_info.value.code == 2
  assert "argument --grid: invalid choice: 'corner' (choose from 'centre', 'direct')" in capsys.readouterr().err
  with pytest.raises(ValueError, match=r"grid must be one of \('centre', 'direct'\).*got 'corner'"):
    cli.super_resolve_files([str(photo_png)], str(tmp_path), tmp_path / 'nope', tmp_path / 'nope', grid='corner')
  # Shipped models: only the sizes that ship (one taken out of the table here); a file that is not a
  # bundle is named.
  monkeypatch.delitem(modelio.PRETRAINED_ESTIMATORS, ('gaussian', 3))
  assert cli.main([str(photo_png), '--out', str(tmp_path), '--scale', '3']) == 2
  assert 'the shipped gaussian estimators read ×2, ×4 LR images, not ×3; train one' in capsys.readouterr().err
  assert cli.main([str(photo_png), '--out', str(tmp_path), '--scale', '3', '--restorer', 'sftmd',
                   '--estimator', str(tmp_path / 'none')]) == 2
  assert 'no shipped sftmd restorer for gaussian kernels at ×3' in capsys.readouterr().err
  not_a_bundle = tmp_path / 'model.npz'
  not_a_bundle.write_text('hello')
  assert cli.main([str(photo_png), '--out', str(tmp_path), '--estimator', str(not_a_bundle)]) == 2
  assert f'estimator: {not_a_bundle}: not a readable s2k-jax model bundle' in capsys.readouterr().err


def test_help_prints_only_the_help():
  """`s2k-sr --help` as a newcomer runs it (no JAX_PLATFORMS): usage on stdout, nothing on stderr."""
  env = {k: v for k, v in os.environ.items() if k not in ('JAX_PLATFORMS', 'XLA_FLAGS')}
  run = subprocess.run([SCRIPT, '--help'], capture_output=True, text=True, timeout=120, env=env, check=False)
  assert run.returncode == 0
  assert run.stdout.startswith('usage: s2k-sr')
  assert run.stderr == ''


def test_a_photo_much_noisier_than_the_estimator_saw_gets_a_warning(smoke_estimator_workdir):
  """Clean-trained estimators fall below the mean kernel from σ ≈ 2% (docs/results.md §5): say so."""
  from s2k_jax import estimator as estimator_lib  # pylint: disable=g-import-not-at-top
  est = estimator_lib.load(str(smoke_estimator_workdir))
  assert float(est.config.degradation.noise_max) == 0.0
  assert cli.estimator_noise_warning(0.015, est) is None
  warning = cli.estimator_noise_warning(0.03, est)
  assert warning.startswith('noise σ 3.0% is far above the σ ≤ 0.0% the estimator was trained on')
  est.config.degradation.noise_max = 0.03  # An estimator trained with noise: no warning at its level.
  assert cli.estimator_noise_warning(0.03, est) is None


def test_a_given_noise_sigma_above_the_restorers_trained_range_gets_a_warning():
  """The shipped USRNet was trained on σ ≤ 5%; --noise-sigma accepts up to 20%: say what that means."""
  from s2k_jax import tasks  # pylint: disable=g-import-not-at-top
  rest = tasks.load_restorer(modelio.pretrained_restorer('gaussian', 4, 'usrnet'))
  trained = float(rest.config.degradation.noise_max)
  assert trained == 0.05
  assert cli.restorer_noise_warning(trained, rest) is None
  assert cli.restorer_noise_warning(0.15, rest) == (
      'the given noise σ 15.0% is above the σ ≤ 5.0% the restorer (USRNet) was trained on: it never saw such '
      'noise, so expect leftover noise or smeared detail; give --noise-sigma 0.05 or less, or a restorer '
      'trained with a larger --config.degradation.noise_max')
  help_text = ' '.join(cli.build_parser().format_help().split())
  assert "trained only up to its config's degradation.noise_max" in help_text
  assert 'a larger σ gets a warning' in help_text


def test_the_per_image_line_names_what_kernels_the_estimator_knows():
  assert cli.kernel_kinds('motion') == 'motion kernels'
  assert cli.kernel_kinds('mixed') == 'any kernel family'  # configs/mixed.py


@pytest.mark.parametrize('grid', ['centre', 'direct'])
def test_opacity_is_enlarged_on_the_lr_grid(grid):
  """Keys cubic passes through its samples: on the direct grid LR pixel i lands on HR pixel s·i, on the
  centre grid the enlargement equals PIL's bicubic (away from the borders, extended differently)."""
  opacity = np.random.default_rng(6).random((12, 10)).astype(np.float32)
  up = cli.upscale_opacity(opacity, 3, grid)
  assert up.shape == (36, 30) and 0 <= up.min() and up.max() <= 1
  if grid == 'direct':
    np.testing.assert_allclose(up[::3, ::3], opacity, atol=1e-6)
  else:
    reference = np.asarray(Image.fromarray(opacity, 'F').resize((30, 36), Image.Resampling.BICUBIC))
    np.testing.assert_allclose(up[6:-6, 6:-6], np.clip(reference, 0, 1)[6:-6, 6:-6], atol=1e-5)


def test_family_auto_runs_the_estimator_of_the_family_it_recognises(photo_png, tmp_path, capsys,
                                                                      smoke_classifier_workdir, smoke_usrnet_workdir):
  """--family auto: the classifier reads the photo, the shipped estimator of the family it names runs
  (reference: that estimator's canonical estimate of the same LR), and the line says which and how sure."""
  from s2k_jax import estimator as estimator_lib  # pylint: disable=g-import-not-at-top
  from s2k_jax import family as family_lib  # pylint: disable=g-import-not-at-top
  from s2k_jax import images  # pylint: disable=g-import-not-at-top
  from s2k_jax import pipeline  # pylint: disable=g-import-not-at-top
  clf = str(smoke_classifier_workdir)
  auto = ['--family', 'auto', '--classifier', clf]
  args = [str(photo_png), '--out', str(tmp_path / 'out'), '--restorer', str(smoke_usrnet_workdir)]
  assert cli.main(args + auto) == 0
  line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith('chelsea.png'))
  lr = images.load_image(str(photo_png))
  model = family_lib.load(clf)
  probabilities = family_lib.recognise(model, lr[None])[0]
  family, _ = family_lib.recognised(probabilities, model.costs)
  assert f'({family} kernels (recognised: {family_lib.describe(probabilities)}), ×4, USRNet)' in line
  est = estimator_lib.load(modelio.pretrained_estimator(family, 4, 'centre'))
  np.testing.assert_allclose(np.load(tmp_path / 'out' / 'chelsea_kernel.npy'),
                             np.asarray(pipeline.estimate(est, lr[None])[0][0]), atol=1e-6)
  # Settings that cannot work together, each named.
  for extra, message in (
      (auto + ['--estimator', clf], '--family auto runs the shipped estimator of the family it recognises'),
      (['--classifier', clf], '--classifier has no effect with --family gaussian'),
      (auto + ['--restorer', 'sftmd'], 'no shipped sftmd restorer for disk kernels at ×4'),
      (auto + ['--scale', '2'], 'picks among gaussian estimators of ×4 (give --scale 4 for it)')):
    assert cli.main(args + extra) == 2, extra
    assert message in capsys.readouterr().err, extra
  assert cli.main(args + ['--family', 'auto', '--scale', '2']) == 2
  assert 'the shipped family classifier reads ×4 LR images, not ×2: name the family' in capsys.readouterr().err


@pytest.mark.parametrize('grid, classifier', [('centre', 'family_x4_resized_classifier.npz'),
                                              ('direct', 'family_x4_classifier.npz')])
def test_family_auto_takes_the_classifier_and_estimators_of_the_grid(grid, classifier):
  args = cli.build_parser().parse_args(['photo.png', '--out', 'out', '--family', 'auto', '--grid', grid])
  estimators, chosen = cli.shipped_estimators(args)
  assert os.path.basename(chosen) == classifier
  assert estimators == {f: modelio.pretrained_estimator(f, 4, grid) for f in ('gaussian', 'motion', 'disk')}
  assert os.path.basename(estimators['motion']) == ('motion_x4_resized_estimator.npz' if grid == 'centre'
                                                    else 'motion_x4_estimator.npz')


def test_estimators_per_family_from_python_are_checked(photo_png, tmp_path, smoke_classifier_workdir,
                                                       smoke_estimator_workdir, smoke_usrnet_workdir):
  """super_resolve_files with {family: estimator}: every family once, a classifier, each estimator of its
  family; a classifier beside one estimator has no effect and is refused."""
  run = lambda est, clf: cli.super_resolve_files([str(photo_png)], str(tmp_path), est, smoke_usrnet_workdir,
                                                 classifier=clf, progress=False)
  with pytest.raises(ValueError, match='one estimator per kernel family is needed.*got gaussian'):
    run({'gaussian': smoke_estimator_workdir}, smoke_classifier_workdir)
  everyone = {f: smoke_estimator_workdir for f in ('gaussian', 'motion', 'disk')}
  with pytest.raises(ValueError, match='need a family classifier'):
    run(everyone, None)
  with pytest.raises(ValueError, match='the motion estimator in .* reads gaussian kernels at ×4'):
    run(everyone, smoke_classifier_workdir)
  with pytest.raises(ValueError, match='a family classifier has no effect with one estimator'):
    run(smoke_estimator_workdir, smoke_classifier_workdir)
