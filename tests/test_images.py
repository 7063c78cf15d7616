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
