"""Tests for saved benchmark test sets (s2k_jax/testsets.py)."""
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import scipy.ndimage
import skimage.data

from configs import gaussian
from s2k_jax import images
from s2k_jax import testsets

ROOT = pathlib.Path(__file__).resolve().parents[1]


def smoke_config():
  config = gaussian.get_config('smoke')
  config.data.read_threads = 2
  return config


def tree_bytes(directory):
  return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(pathlib.Path(directory).rglob('*'))
          if p.is_file()}


@pytest.fixture(scope='module')
def generated(tmp_path_factory):
  out = tmp_path_factory.mktemp('sets') / 'gaussian_x4'
  manifest = testsets.generate(smoke_config(), str(out), seed=7)
  return out, manifest


def test_regenerating_gives_identical_files(generated, tmp_path):
  out, _ = generated
  testsets.generate(smoke_config(), str(tmp_path / 'again'), seed=7)
  assert tree_bytes(out) == tree_bytes(tmp_path / 'again')


def test_layout_and_manifest(generated):
  out, manifest = generated
  assert sorted(os.listdir(out)) == ['hr', 'kernels', 'lr', 'manifest.json']
  assert manifest == json.loads((out / 'manifest.json').read_text())
  assert (manifest['seed'], manifest['scale'], manifest['family'], manifest['split']) == (
      7, 4, 'gaussian', 'eval')
  assert [e['source'] for e in manifest['images']] == ['chelsea.png', 'coffee.png']
  assert [e['name'] for e in manifest['images']] == ['0000_chelsea', '0001_coffee']
  for entry in manifest['images']:
    for kind in ('hr', 'lr', 'kernel'):
      assert hashlib.sha256((out / entry[kind]).read_bytes()).hexdigest() == entry['sha256'][kind]


def test_loaded_set_matches_independent_references(generated):
  out, _ = generated
  loaded = testsets.load(str(out), verify=True)
  assert loaded.names == ('0000_chelsea', '0001_coffee') and loaded.scale == 4
  # Whole images, cropped at the bottom/right to multiples of 4 ("modcrop").
  np.testing.assert_array_equal(loaded.hr[0], skimage.data.chelsea()[:300, :448])
  np.testing.assert_array_equal(loaded.hr[1], skimage.data.coffee())
  assert loaded.kernels.shape == (2, 15, 15) and loaded.kernels.dtype == np.float32
  np.testing.assert_allclose(loaded.kernels.sum(axis=(1, 2)), 1.0, atol=1e-5)
  np.testing.assert_array_equal(loaded.noise_sigma, 0.0)
  for hr, lr, kernel in zip(loaded.hr, loaded.lr, loaded.kernels):
    # Eq. 1 with scipy: reflect-padded correlation, then every 4th pixel; rounded to 8 bits.
    x = hr.astype(np.float64) / 255
    blurred = np.stack([scipy.ndimage.correlate(x[..., c], kernel.astype(np.float64), mode='mirror')
                        for c in range(3)], -1)
    expected = np.round(blurred[::4, ::4] * 255)
    assert lr.shape == expected.shape and lr.dtype == np.uint8
    assert np.max(np.abs(lr - expected)) <= 1  # Rounding of values within float32 error of a half level.
  assert not np.allclose(loaded.kernels[0], loaded.kernels[1])


def test_image_keys_do_not_depend_on_the_other_images(generated, tmp_path):
  out, _ = generated
  testsets.generate(smoke_config(), str(tmp_path / 'first'), seed=7, limit=1)
  first_kernel = 'kernels/0000_chelsea.npy'
  assert tree_bytes(tmp_path / 'first')[first_kernel] == tree_bytes(out)[first_kernel]
  testsets.generate(smoke_config(), str(tmp_path / 'other_seed'), seed=8, limit=1)
  other = np.load(tmp_path / 'other_seed' / 'kernels' / '0000_chelsea.npy')
  assert not np.allclose(other, np.load(out / 'kernels' / '0000_chelsea.npy'))


def test_copies_give_each_image_its_own_kernels(generated, tmp_path):
  out, _ = generated
  manifest = testsets.generate(smoke_config(), str(tmp_path / 'copies'), seed=7, copies=3)
  assert manifest['copies'] == 3
  assert [e['name'] for e in manifest['images']] == [
      '0000_chelsea', '0001_chelsea', '0002_chelsea', '0003_coffee', '0004_coffee', '0005_coffee']
  loaded = testsets.load(str(tmp_path / 'copies'), verify=True)
  np.testing.assert_array_equal(loaded.hr[0], loaded.hr[2])
  assert len({loaded.kernels[i].tobytes() for i in range(6)}) == 6
  # Entry i keeps the key of entry i: with copies=1 the first entry is the set above.
  assert (tree_bytes(tmp_path / 'copies')['kernels/0000_chelsea.npy'] ==
          tree_bytes(out)['kernels/0000_chelsea.npy'])
  with pytest.raises(ValueError, match='copies=0 must be >= 1'):
    testsets.generate(smoke_config(), str(tmp_path / 'none'), copies=0)


def test_crops_noise_and_folder_source(tmp_path):
  folder = tmp_path / 'valid'
  folder.mkdir()
  Image.fromarray(skimage.data.astronaut()).save(folder / '0801.png')
  config = smoke_config()
  config.data.source, config.data.eval_dir = 'folder', str(folder)
  config.degradation.noise_max = 0.05
  manifest = testsets.generate(config, str(tmp_path / 'set'), hr_crop=200)
  loaded = testsets.load(str(tmp_path / 'set'))
  np.testing.assert_array_equal(loaded.hr[0], skimage.data.astronaut()[156:356, 156:356])
  assert loaded.lr[0].shape == (50, 50, 3)
  assert manifest['images'][0]['source'] == '0801.png' and 0 < loaded.noise_sigma[0] <= 0.05


def test_bad_arguments_and_tampering_are_reported(generated, tmp_path):
  out, _ = generated
  with pytest.raises(ValueError, match='not empty; pass --overwrite'):
    testsets.generate(smoke_config(), str(out), seed=7)
  with pytest.raises(ValueError, match='multiple of the scale 4'):
    testsets.generate(smoke_config(), str(tmp_path / 'x'), hr_crop=30)
  with pytest.raises(images.ImageError, match=r'chelsea\.png: image 300×451 is smaller than the 400×400'):
    testsets.generate(smoke_config(), str(tmp_path / 'y'), hr_crop=400)
  assert not (tmp_path / 'y').exists()
  (tmp_path / 'notes').mkdir()
  (tmp_path / 'notes' / 'a.txt').write_text('mine')
  with pytest.raises(ValueError, match='not a test set'):
    testsets.generate(smoke_config(), str(tmp_path / 'notes'), overwrite=True)
  with pytest.raises(ValueError, match='no manifest.json'):
    testsets.load(str(tmp_path / 'notes'))
  copy = tmp_path / 'copy'
  copy.mkdir()
  for name, blob in tree_bytes(out).items():
    (copy / name).parent.mkdir(exist_ok=True)
    (copy / name).write_bytes(blob)
  kernel_file = copy / 'kernels' / '0001_coffee.npy'
  kernel_file.write_bytes(kernel_file.read_bytes()[:-1] + b'\x00')
  with pytest.raises(ValueError, match=r'0001_coffee\.npy: contents differ'):
    testsets.load(str(copy), verify=True)


def test_command_line(tmp_path):
  """The absl tool as a newcomer runs it (no JAX_PLATFORMS set): its one result line and nothing else —
  no backend probing (libtpu), orbax or grain log lines at the default verbosity."""
  out = tmp_path / 'cli'
  env = {k: v for k, v in os.environ.items() if k != 'JAX_PLATFORMS'}
  result = subprocess.run(
      [sys.executable, '-m', 's2k_jax.make_testset', '--config=configs/disk.py:smoke',
       '--config.degradation.scale=2', f'--out={out}', '--limit=1', '--hr_crop=64'],
      cwd=ROOT, capture_output=True, text=True, timeout=120, env={**env, 'XLA_FLAGS': ''})
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stderr == ''
  assert result.stdout.splitlines() == [f'1 images, disk kernels, ×2 → {out}']
  manifest = json.loads((out / 'manifest.json').read_text())
  assert (manifest['family'], manifest['scale'], manifest['hr_crop']) == ('disk', 2, 64)
  assert np.load(out / 'kernels' / '0000_chelsea.npy').shape == (15, 15)
  assert np.asarray(Image.open(out / 'lr' / '0000_chelsea.png')).shape == (32, 32, 3)


@pytest.mark.parametrize('override, message', [
    ('data.hr_crop', r'--config.data.hr_crop has no effect on a test set.*use --hr_crop instead'),
    ('seed', r'--config.seed has no effect.*use --seed instead'),
    ('data.grayscale', r'--config.data.grayscale has no effect on a test set'),
    ('model.generator', r'--config.model.generator has no effect'),
])
def test_a_config_field_a_test_set_does_not_read_is_refused(override, message):
  with pytest.raises(ValueError, match=message):
    testsets.check_overrides({override: 1, 'degradation.scale': 2})
  testsets.check_overrides({'degradation.noise_max': 0.01, 'data.source': 'folder', 'data.eval_dir': '/x',
                            'data.tfds_name': 'div2k'})  # What it reads: no error.


def test_command_line_refuses_an_unread_field(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 's2k_jax.make_testset', '--config=configs/disk.py:smoke',
       '--config.data.flip=False', f'--out={tmp_path / "x"}', '--limit=1'],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 1
  assert '--config.data.flip has no effect on a test set' in result.stderr
  assert not (tmp_path / 'x').exists()


# --- benchmark protocols ------------------------------------------------------------------------------


def test_gaussian8_kernels_are_ikcs_eight_isotropic_gaussians():
  """σ = linspace over IKC's ranges, 21×21, sum 1, each against exp(−r²/2σ²) computed here in float64."""
  expected_sigmas = {2: (0.8, 1.6), 3: (1.35, 2.4), 4: (1.8, 3.2)}
  r = np.arange(21) - 10
  for scale, (low, high) in expected_sigmas.items():
    sigmas = testsets.gaussian8_sigmas(scale)
    np.testing.assert_allclose(sigmas, low + (high - low) * np.arange(8) / 7, rtol=1e-12)
    kernels = testsets.gaussian8_kernels(scale)
    assert kernels.shape == (8, 21, 21) and kernels.dtype == np.float32
    for k, sigma in zip(kernels, sigmas):
      ref = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma ** 2))
      np.testing.assert_allclose(k, ref / ref.sum(), atol=1e-7)


def _hr_folder(path, sizes=((96, 112), (100, 84))):
  path.mkdir(parents=True, exist_ok=True)
  photo = skimage.data.astronaut()
  for i, (h, w) in enumerate(sizes):
    Image.fromarray(photo[40 * i:40 * i + h, 60:60 + w]).save(path / f'img_{i}.png')
  return path


def test_gaussian8_set_is_every_image_with_every_kernel_blurred_then_bicubic(tmp_path):
  hr_dir = _hr_folder(tmp_path / 'hr')
  manifest = testsets.generate_protocol('gaussian8', str(hr_dir), str(tmp_path / 'g8'), scale=4)
  assert manifest['protocol'] == 'gaussian8' and manifest['degradation']['downsample'] == 'bicubic'
  ts = testsets.load(str(tmp_path / 'g8'), verify=True)
  assert len(ts) == 16 and ts.hr[0].shape == (96, 112, 3) and ts.hr[8].shape == (100, 84, 3)
  np.testing.assert_array_equal(ts.kernels[:8], testsets.gaussian8_kernels(4))
  np.testing.assert_array_equal(ts.kernels[8:], testsets.gaussian8_kernels(4))
  # Entry 3: image 0 with σ = 1.8 + 3·0.2, by scipy's blur (mirror) and Pillow's bicubic, interior.
  hr = ts.hr[3].astype(np.float64) / 255
  blurred = np.stack([scipy.ndimage.correlate(hr[..., c], ts.kernels[3].astype(np.float64), mode='mirror')
                      for c in range(3)], axis=-1)
  pil = np.stack([np.asarray(Image.fromarray(blurred[..., c].astype(np.float32)).resize((28, 24), Image.Resampling.BICUBIC))
                  for c in range(3)], axis=-1)
  lr = ts.lr[3].astype(np.float64) / 255
  np.testing.assert_allclose(lr[3:-3, 3:-3], np.clip(pil, 0, 1)[3:-3, 3:-3], atol=0.5 / 255 + 1e-6)


def test_s2k_protocol_draws_one_kernel_per_image_with_direct_decimation(tmp_path):
  hr_dir = _hr_folder(tmp_path / 'hr')
  manifest = testsets.generate_protocol('s2k', str(hr_dir), str(tmp_path / 'motion'), scale=2, family='motion', seed=3)
  ts = testsets.load(str(tmp_path / 'motion'))
  assert len(ts) == 2 and manifest['degradation']['downsample'] == 'direct'
  assert manifest['degradation']['motion_bank_size'] == 0  # fresh trajectories, never a training bank
  assert ts.kernels.shape == (2, 23, 23) and not np.allclose(ts.kernels[0], ts.kernels[1])


def test_protocol_errors_name_the_problem(tmp_path):
  hr_dir = _hr_folder(tmp_path / 'hr')
  with pytest.raises(ValueError, match=r"unknown protocol 'div2krk'; choose one of \('gaussian8', 's2k'\)"):
    testsets.generate_protocol('div2krk', str(hr_dir), str(tmp_path / 'a'), scale=4)
  with pytest.raises(ValueError, match=r"scale must be one of \(2, 3, 4\).*got 8"):
    testsets.generate_protocol('gaussian8', str(hr_dir), str(tmp_path / 'a'), scale=8)
  with pytest.raises(ValueError, match=r"s2k protocol needs --family, one of \('gaussian', 'motion', 'disk'\); got None"):
    testsets.generate_protocol('s2k', str(hr_dir), str(tmp_path / 'a'), scale=4)
  (tmp_path / 'empty').mkdir()
  with pytest.raises(ValueError, match='empty: no image files'):
    testsets.generate_protocol('gaussian8', str(tmp_path / 'empty'), str(tmp_path / 'a'), scale=4)
  (hr_dir / 'notes.png').write_bytes(b'not an image at all')
  with pytest.raises(ValueError, match='notes.png'):
    testsets.generate_protocol('gaussian8', str(hr_dir), str(tmp_path / 'a'), scale=4)
  small = _hr_folder(tmp_path / 'small', sizes=((96, 112), (60, 90)))
  with pytest.raises(ValueError, match=r'img_1.png: 60×88 pixels is smaller than scale × kernel \(4 × 21 = 84'):
    testsets.generate_protocol('gaussian8', str(small), str(tmp_path / 'b'), scale=4)
  assert not (tmp_path / 'a').exists() and not (tmp_path / 'b').exists()  # nothing half-written


def test_make_testset_protocol_command_line(tmp_path):
  hr_dir = _hr_folder(tmp_path / 'hr', sizes=((96, 96),))
  run = lambda *args: subprocess.run([sys.executable, '-m', 's2k_jax.make_testset', *args], cwd=ROOT,
                                     capture_output=True, text=True)
  ok = run('--protocol=gaussian8', '--scale=2', f'--hr_dir={hr_dir}', f'--out={tmp_path / "g8"}')
  assert ok.returncode == 0, ok.stderr
  assert '8 images, gaussian kernels, ×2' in ok.stdout
  bad = run('--protocol=gaussian8', '--scale=2', f'--hr_dir={hr_dir}', '--copies=3', f'--out={tmp_path / "x"}')
  assert bad.returncode != 0 and '--copies has no effect with --protocol' in bad.stderr
  bad = run('--protocol=gaussian8', f'--hr_dir={hr_dir}', f'--out={tmp_path / "x"}')
  assert bad.returncode != 0 and '--protocol needs --hr_dir' in bad.stderr
