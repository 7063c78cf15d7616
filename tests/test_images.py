"""Tests for s2k_jax/images.py: rejected files are named as the user gave them."""
import io

import numpy as np
from PIL import Image
import pytest
import tifffile

from s2k_jax import images


def _png() -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, 'PNG')
  return buffer.getvalue()


def _tiff16() -> bytes:
  buffer = io.BytesIO()
  tifffile.imwrite(buffer, np.random.default_rng(0).integers(0, 65536, (32, 32, 3), dtype=np.uint16))
  return buffer.getvalue()


BROKEN = {
    'garbage': b'not an image at all',
    'png_signature_only': b'\x89PNG\r\n\x1a\n' + b'\0' * 40,
    'truncated_png': _png()[:200],
    'truncated_tiff16': _tiff16()[:300],
}


@pytest.mark.parametrize('case', BROKEN)
def test_decode_errors_name_the_file_not_a_python_object(case):
  """Pillow calls the in-memory copy `<_io.BytesIO object at 0x…>`; the user knows it by its name."""
  with pytest.raises(images.ImageError) as error:
    images.decode_image(BROKEN[case], f'holiday/{case}.png')
  message = str(error.value)
  assert message.startswith(f'holiday/{case}.png: ')
  assert 'BytesIO' not in message and ' object at 0x' not in message


def test_a_file_that_is_not_an_image_is_named_and_the_formats_listed(tmp_path):
  notes = tmp_path / 'notes.png'
  notes.write_text('not an image')
  with pytest.raises(images.ImageError) as error:
    images.load_image(notes)
  assert str(error.value) == (f'{notes}: not a readable image file (no image format recognised: not an '
                              'image, or damaged from its first bytes); give a PNG, JPEG, TIFF, BMP or WebP '
                              'file.')


def load_with_opacity(path):
  """A file's RGB in [0, 1] and its opacity (`images.decode_with_opacity`)."""
  rgb, opacity = images.decode_with_opacity(images.read_file(path), str(path))
  return images.to_float(rgb), opacity


def test_transparency_is_read_as_opacity_beside_the_rgb(tmp_path):
  """Alpha channels (8-bit RGBA and LA, 16-bit RGBA TIFF), palette transparency and a colour key become
  opacity in [0, 1] beside the unchanged RGB; images without transparency, or all opaque, give None."""
  rng = np.random.default_rng(3)
  rgba = rng.integers(0, 256, (8, 9, 4), dtype=np.uint8)
  Image.fromarray(rgba).save(tmp_path / 'a.png')
  rgb, opacity = load_with_opacity(tmp_path / 'a.png')
  np.testing.assert_array_equal(rgb, rgba[..., :3] / np.float32(255))
  np.testing.assert_array_equal(opacity, rgba[..., 3] / np.float32(255))
  la = rgba[..., [0, 3]]
  Image.fromarray(la, mode='LA').save(tmp_path / 'la.png')
  np.testing.assert_array_equal(load_with_opacity(tmp_path / 'la.png')[1], la[..., 1] / np.float32(255))
  rgba16 = rng.integers(0, 65536, (6, 7, 4), dtype=np.uint16)
  tifffile.imwrite(tmp_path / 'a16.tif', rgba16, extrasamples=['unassalpha'])
  rgb, opacity = load_with_opacity(tmp_path / 'a16.tif')
  np.testing.assert_array_equal(rgb, rgba16[..., :3] / np.float32(65535))
  np.testing.assert_array_equal(opacity, rgba16[..., 3] / np.float32(65535))
  index = rng.integers(0, 4, (8, 9), dtype=np.uint8)
  palette = Image.fromarray(index, mode='P')
  palette.putpalette(rng.integers(0, 256, 12).tolist())
  palette.save(tmp_path / 'p.png', transparency=2)
  np.testing.assert_array_equal(load_with_opacity(tmp_path / 'p.png')[1], (index != 2).astype(np.float32))
  key = rgba[..., :3].copy()
  key[:2] = (10, 20, 30)
  Image.fromarray(key).save(tmp_path / 'key.png', transparency=(10, 20, 30))
  expected = np.ones((8, 9), np.float32)
  expected[:2] = 0
  np.testing.assert_array_equal(load_with_opacity(tmp_path / 'key.png')[1], expected)
  gray16 = rng.integers(0, 65536, (8, 9), dtype=np.uint16)
  gray16[3] = 4321
  Image.fromarray(gray16).save(tmp_path / 'key16.png', transparency=4321)
  expected = np.ones((8, 9), np.float32)
  expected[3] = 0
  np.testing.assert_array_equal(load_with_opacity(tmp_path / 'key16.png')[1], expected)
  opaque = rgba.copy()
  opaque[..., 3] = 255
  Image.fromarray(opaque).save(tmp_path / 'opaque.png')
  Image.fromarray(rgba[..., :3]).save(tmp_path / 'rgb.jpg')
  for name in ('opaque.png', 'rgb.jpg'):
    assert load_with_opacity(tmp_path / name)[1] is None


def test_tiff_extra_samples_are_alpha_only_when_the_file_says_so(tmp_path):
  """16-bit TIFF (tifffile): an unspecified extra sample is not transparency; associated (premultiplied)
  alpha gives straight colours, colour · white / alpha rounded; 8-bit gray + associated alpha (Pillow's
  'La') is read, not refused as corrupt; 16-bit CMYK is refused with the reason."""
  rng = np.random.default_rng(4)
  rgbx = rng.integers(0, 65536, (5, 6, 4), dtype=np.uint16)
  tifffile.imwrite(tmp_path / 'x.tif', rgbx, extrasamples=['unspecified'])
  rgb, opacity = load_with_opacity(tmp_path / 'x.tif')
  np.testing.assert_array_equal(rgb, rgbx[..., :3] / np.float32(65535))
  assert opacity is None
  alpha = rng.integers(1, 65536, (5, 6, 1), dtype=np.uint16)
  straight = rng.integers(0, 65536, (5, 6, 3)).astype(np.float64)
  premultiplied = np.round(straight * alpha / 65535).astype(np.uint16)
  tifffile.imwrite(tmp_path / 'assoc.tif', np.concatenate([premultiplied, alpha], -1), extrasamples=['assocalpha'])
  rgb, opacity = images.decode_with_opacity(images.read_file(tmp_path / 'assoc.tif'), 'assoc.tif')
  expected = np.minimum(np.round(premultiplied * 65535.0 / alpha), 65535)
  np.testing.assert_array_equal(rgb, expected.astype(np.uint16))
  np.testing.assert_array_equal(opacity, alpha[..., 0] / np.float32(65535))
  gray_alpha = rng.integers(1, 256, (5, 6, 2), dtype=np.uint8)
  gray_alpha[..., 0] = np.minimum(gray_alpha[..., 0], gray_alpha[..., 1])
  tifffile.imwrite(tmp_path / 'la.tif', gray_alpha, photometric='minisblack', extrasamples=['assocalpha'])
  rgb, opacity = load_with_opacity(tmp_path / 'la.tif')
  straight_gray = gray_alpha[..., 0] * 255.0 / gray_alpha[..., 1]
  np.testing.assert_allclose(rgb[..., 0] * 255, straight_gray, atol=1)
  np.testing.assert_array_equal(opacity, gray_alpha[..., 1] / np.float32(255))
  tifffile.imwrite(tmp_path / 'cmyk.tif', rng.integers(0, 65536, (5, 6, 4), dtype=np.uint16), photometric='separated')
  with pytest.raises(images.ImageError, match='cmyk.tif: 16-bit CMYK TIFF'):
    images.read_image(tmp_path / 'cmyk.tif')


def test_16bit_results_read_back_exactly(tmp_path):
  """`visualize.save_tiff16` (s2k-sr's output for 16-bit inputs) → this reader: the same levels, the 4th
  sample read back as opacity."""
  from s2k_jax import visualize  # pylint: disable=g-import-not-at-top
  levels = np.random.default_rng(7).integers(0, 65536, (6, 5, 4), dtype=np.uint16)
  visualize.save_tiff16(str(tmp_path / 'rgba.tif'), levels / 65535.0)
  rgb, opacity = images.decode_with_opacity(images.read_file(tmp_path / 'rgba.tif'), 'rgba.tif')
  np.testing.assert_array_equal(rgb, levels[..., :3])
  np.testing.assert_array_equal(opacity, levels[..., 3] / np.float32(65535))
  visualize.save_tiff16(str(tmp_path / 'rgb.tif'), levels[..., :3] / 65535.0)
  np.testing.assert_array_equal(images.read_image(tmp_path / 'rgb.tif'), levels[..., :3])
