"""Image files to RGB arrays: the one reader behind training data, test sets and inference (paper §4).

S2K trains on DIV2K and tests on DIV2K/Flickr2K (§4), which people keep as folders of PNG files; users
bring their own photos in any common format. Every entry point reads them here, so a file is either
turned into (H, W, 3) RGB with a stated rule or rejected with an `ImageError` naming the file and the
reason — never silently altered or skipped:

* grayscale (1-bit, 8-bit, 16-bit) is replicated to three channels;
* alpha (RGBA, LA, palette or colour-key transparency) is not part of the RGB array, as with
  `PIL.Image.convert('RGB')` and OpenCV's `IMREAD_COLOR`: training and evaluation read RGB only;
  `decode_with_opacity` also returns it, for s2k-sr, which keeps it in its output (a TIFF's extra
  sample counts as alpha where its ExtraSamples tag says so; premultiplied colours are divided back);
* 16-bit samples keep their precision (uint16 here, float in `load_image`), read by Pillow (gray PNG)
  or tifffile (TIFF); 16-bit colour PNGs are rejected because Pillow decodes only their top 8 bits;
* 32-bit integer/float samples (no defined white level), 16-bit CMYK TIFF, multi-frame files, files
  above Pillow's decompression-bomb limit, and corrupt or truncated files are rejected.

Pixels are used as stored: EXIF orientation tags are not applied (they only rotate the picture).
"""
from collections.abc import Callable, Iterable, Sequence
import concurrent.futures
import dataclasses
import io
import os
import re
from typing import Any

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = ('.bmp', '.jpeg', '.jpg', '.png', '.tif', '.tiff', '.webp')
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_SIXTEEN_BIT_GRAY_MODES = ('I;16', 'I;16B', 'I;16L', 'I;16N')
# Converted by Pillow without loss of meaning; anything not listed here (or handled above) is rejected.
_CONVERTIBLE_MODES = ('1', 'L', 'LA', 'La', 'P', 'PA', 'RGB', 'RGBA', 'RGBX', 'RGBa', 'CMYK', 'YCbCr')
# At most this many bad files are listed in one error; the count says how many there were.
_MAX_LISTED_ERRORS = 20
# How Python prints an object without a readable form, e.g. `<_io.BytesIO object at 0x7f…>`.
_OBJECT_REPR = re.compile(r'<[\w.]+ object at 0x[0-9a-fA-F]+>')


class ImageError(ValueError):
  """An image that cannot be used; the message names the file and says why."""


def list_images(directory: str | os.PathLike) -> list[str]:
  """Every image file (by extension, case-insensitive) under `directory`, recursively, sorted.

  Hidden files and folders (names starting with '.') are skipped: they are editor and OS artefacts
  such as macOS `._0001.png`, which carry an image extension but no image.
  """
  path = os.fspath(directory)
  if not path:
    raise ValueError('No image directory given: set the folder that holds the images.')
  if not os.path.exists(path):
    raise ValueError(f'{path}: no such directory.')
  if not os.path.isdir(path):
    raise ValueError(f'{path}: not a directory; give the folder that holds the images.')
  files = []
  for root, dirs, names in os.walk(path, followlinks=True):
    dirs[:] = [d for d in dirs if not d.startswith('.')]
    files.extend(os.path.join(root, n) for n in names
                 if not n.startswith('.') and n.lower().endswith(IMAGE_EXTENSIONS))
  if not files:
    raise ValueError(f'{path}: no image files ({", ".join(IMAGE_EXTENSIONS)}) in it or its subfolders.')
  return sorted(files)


def read_file(path: str | os.PathLike) -> bytes:
  try:
    with open(path, 'rb') as f:
      return f.read()
  except OSError as e:
    raise ImageError(f'{os.fspath(path)}: cannot read the file ({e.strerror or e}).') from e


def _reason(error: Exception, name: str) -> str:
  """A decoder's exception for an error message. Pillow and tifffile read our in-memory copy of the
  file, so their messages call it `<_io.BytesIO object at 0x…>`; the user knows it by `name`."""
  return f'{type(error).__name__}: {_OBJECT_REPR.sub(name, str(error))}'


def _open(data: bytes, name: str) -> Image.Image:
  """Opens (header only) with Pillow, enforcing its decompression-bomb limit as an error."""
  try:
    image = Image.open(io.BytesIO(data))
  except Image.DecompressionBombError as e:
    raise ImageError(f'{name}: rejected as a possible decompression bomb ({_reason(e, name)}). If you trust '
                     'the file, raise PIL.Image.MAX_IMAGE_PIXELS before loading it.') from e
  except Image.UnidentifiedImageError as e:  # Its message only names our in-memory copy of the file.
    raise ImageError(f'{name}: not a readable image file (no image format recognised: not an image, or '
                     'damaged from its first bytes); give a PNG, JPEG, TIFF, BMP or WebP file.') from e
  except Exception as e:  # Pillow signals unreadable input with several exception types.
    raise ImageError(f'{name}: not a readable image file ({_reason(e, name)}).') from e
  width, height = image.size
  limit = Image.MAX_IMAGE_PIXELS
  if limit is not None and width * height > limit:
    raise ImageError(
        f'{name}: {width}×{height} = {width * height} pixels exceeds Pillow\'s decompression-bomb limit '
        f'PIL.Image.MAX_IMAGE_PIXELS = {limit}. If you trust the file, raise that limit before loading it.')
  frames = getattr(image, 'n_frames', 1)
  if frames > 1:
    raise ImageError(f'{name}: holds {frames} frames (animation or multi-page file); save the frame you '
                     'want as a single still image.')
  return image


def _is_16bit_colour_png(data: bytes) -> bool:
  # IHDR is always the first chunk: bit depth at byte 24, colour type at byte 25 (2 RGB, 4 LA, 6 RGBA).
  return data[:8] == _PNG_SIGNATURE and len(data) > 25 and data[24] == 16 and data[25] in (2, 4, 6)


def _tiff_bits(image: Image.Image) -> int:
  bits = image.tag_v2.get(258, 8)  # TIFF tag 258 = BitsPerSample, one value per channel.
  return max(bits) if isinstance(bits, tuple) else int(bits)


def _check_mode(image: Image.Image, name: str) -> None:
  if image.mode in _CONVERTIBLE_MODES or image.mode in _SIXTEEN_BIT_GRAY_MODES:
    return
  raise ImageError(f'{name}: unsupported pixel format {image.mode!r} (32-bit integer or float samples have '
                   'no defined white level); save it as 8- or 16-bit RGB or grayscale.')


def _pillow_to_rgb(image: Image.Image) -> np.ndarray:
  """Decoded Pillow image (premultiplied modes already converted) → (H, W, 3) uint8, or uint16 for
  16-bit grayscale."""
  if image.mode in _SIXTEEN_BIT_GRAY_MODES:
    gray = np.asarray(image).astype(np.uint16)
    return np.repeat(gray[..., None], 3, axis=-1)
  if image.mode in ('1', 'L', 'LA'):
    gray = np.asarray(image.convert('L'))
    return np.repeat(gray[..., None], 3, axis=-1)
  if image.mode in ('P', 'PA'):
    image = image.convert('RGBA')  # Resolves the palette; the alpha is dropped below.
  if image.mode in ('RGBA', 'RGBX'):
    return np.ascontiguousarray(np.asarray(image)[..., :3])
  return np.asarray(image.convert('RGB'))


def _unless_opaque(opacity: np.ndarray) -> np.ndarray | None:
  """(H, W) float32 opacity in [0, 1], or None where every pixel is opaque (nothing to keep)."""
  return None if opacity.min() == 1.0 else opacity


def _pillow_opacity(image: Image.Image) -> np.ndarray | None:
  """A decoded Pillow image's alpha channel, palette or colour-key transparency (see `_unless_opaque`)."""
  if not image.has_transparency_data:
    return None
  if image.mode in _SIXTEEN_BIT_GRAY_MODES:  # Only a colour key (tRNS): that gray level is clear.
    return _unless_opaque((np.asarray(image) != image.info['transparency']).astype(np.float32))
  return _unless_opaque(to_float(np.asarray(image.convert('RGBA').getchannel('A'))))


# TIFF tag 338, ExtraSamples: what a sample beyond gray / RGB holds.
_TIFF_EXTRA_SAMPLES = 338
_UNSPECIFIED, _ASSOCIATED_ALPHA, _UNASSOCIATED_ALPHA = 0, 1, 2


def _tifffile_to_rgb(data: bytes, name: str, extra_samples: tuple[int, ...]
                     ) -> tuple[np.ndarray, np.ndarray | None]:
  """High-bit-depth TIFF (Pillow would keep only 8 bits of colour samples) → (H, W, 3) uint16/uint8 and
  the opacity of its extra sample where ExtraSamples says it is alpha (see `_unless_opaque`; premultiplied
  colours are divided back, as Pillow does for 8-bit files); an unspecified extra sample is ignored."""
  import tifffile  # A scikit-image dependency; only needed for >8-bit TIFF.
  try:
    array = tifffile.imread(io.BytesIO(data))
  except Exception as e:  # tifffile raises several types for broken or exotic files.
    raise ImageError(f'{name}: cannot decode this TIFF ({_reason(e, name)}).') from e
  if array.dtype not in (np.uint8, np.uint16):
    raise ImageError(f'{name}: TIFF with {array.dtype} samples is not supported (no defined white level); '
                     'save it as 8- or 16-bit unsigned integers.')
  if array.ndim == 2:
    array = array[..., None]
  if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4):
    raise ImageError(f'{name}: TIFF of shape {array.shape} is not a single grayscale or RGB(A) image.')
  opacity = None
  if array.shape[-1] in (2, 4):  # Gray or RGB and one extra sample.
    kind = extra_samples[0] if extra_samples else _UNSPECIFIED
    colour, extra = array[..., :-1], array[..., -1:]
    if kind == _ASSOCIATED_ALPHA:
      white = np.iinfo(array.dtype).max
      straight = np.round(colour.astype(np.float64) * white / np.maximum(extra, 1))
      colour = np.where(extra > 0, np.minimum(straight, white), 0).astype(array.dtype)
    if kind in (_ASSOCIATED_ALPHA, _UNASSOCIATED_ALPHA):
      opacity = _unless_opaque(to_float(extra[..., 0]))
    array = colour
  if array.shape[-1] == 1:
    return np.repeat(array, 3, axis=-1), opacity
  return np.ascontiguousarray(array), opacity


def _decode(data: bytes, name: str, with_opacity: bool) -> tuple[np.ndarray, np.ndarray | None]:
  image = _open(data, name)
  if _is_16bit_colour_png(data):
    raise ImageError(f'{name}: 16-bit colour PNG; Pillow decodes only the top 8 bits of each sample, so it '
                     'would be altered silently. Save it as 16-bit TIFF (read exactly) or 8-bit PNG.')
  _check_mode(image, name)
  try:
    if image.format == 'TIFF' and _tiff_bits(image) > 8:
      if image.mode == 'CMYK':
        raise ImageError(f'{name}: 16-bit CMYK TIFF; its inks have no defined conversion to RGB here. Save '
                         'it as RGB.')
      extra = image.tag_v2.get(_TIFF_EXTRA_SAMPLES, ())
      rgb, opacity = _tifffile_to_rgb(data, name, extra if isinstance(extra, tuple) else (extra,))
      return rgb, (opacity if with_opacity else None)
    image.load()
    if image.mode in ('La', 'RGBa'):  # Premultiplied alpha (TIFF): Pillow converts these to straight only.
      image = image.convert(image.mode[:-1] + 'A')
    return _pillow_to_rgb(image), (_pillow_opacity(image) if with_opacity else None)
  except ImageError:
    raise
  except Exception as e:  # zlib, OSError('image file is truncated'), SyntaxError from broken chunks, ...
    raise ImageError(f'{name}: cannot decode the pixels ({_reason(e, name)}); the file is truncated or '
                     'corrupt.') from e


def decode_image(data: bytes, name: str) -> np.ndarray:
  """Encoded image bytes → (H, W, 3) RGB array, uint8 (8-bit sources) or uint16 (16-bit sources).

  `name` (a path or record id) only labels errors. Raises `ImageError` for anything the module
  docstring lists as rejected.
  """
  return _decode(data, name, with_opacity=False)[0]


def decode_with_opacity(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray | None]:
  """`decode_image`, and the image's transparency: (H, W) float32 opacity in [0, 1] (from its alpha
  channel, palette or colour key), or None for an image without one or with every pixel opaque."""
  return _decode(data, name, with_opacity=True)


def image_size(data: bytes, name: str) -> tuple[int, int]:
  """(height, width) from the header alone, after the same header checks as `decode_image`."""
  image = _open(data, name)
  if _is_16bit_colour_png(data):
    decode_image(data, name)  # Raises the 16-bit colour PNG error.
  _check_mode(image, name)
  return image.size[1], image.size[0]


def to_float(image: np.ndarray) -> np.ndarray:
  """uint8 or uint16 → float32 in [0, 1] (divides by the type's white level, 255 or 65535); numpy or jax
  arrays (also traced ones): the one uint8 → float conversion of training, inference and evaluation."""
  if image.dtype == np.uint8:
    return image.astype(np.float32) / np.float32(255)
  if image.dtype == np.uint16:
    return image.astype(np.float32) / np.float32(65535)
  raise ValueError(f'expected a uint8 or uint16 image, got {image.dtype}.')


def to_uint8(image: np.ndarray) -> np.ndarray:
  """uint8 passes through; uint16 is rounded to the nearest 8-bit level, round(x / 257)."""
  if image.dtype == np.uint8:
    return image
  if image.dtype == np.uint16:
    # 65535 / 255 = 257 exactly; (x + 128) // 257 rounds halves of a level up.
    return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
  raise ValueError(f'expected a uint8 or uint16 image, got {image.dtype}.')


def read_image(path: str | os.PathLike) -> np.ndarray:
  """An image file → (H, W, 3) uint8 or uint16 RGB (see `decode_image`)."""
  return decode_image(read_file(path), os.fspath(path))


def load_image(path: str | os.PathLike) -> np.ndarray:
  """An image file → (H, W, 3) float32 RGB in [0, 1], with every check of `decode_image`."""
  return to_float(read_image(path))


def decode_payload(payload: Any, name: str) -> np.ndarray:
  """Encoded bytes (files, tfds Image features) or a decoded uint8 RGB array (tfds Tensor features)."""
  if isinstance(payload, bytes):
    return decode_image(payload, name)
  array = np.asarray(payload)
  if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
    raise ImageError(f'{name}: expected (H, W, 3) uint8 pixels, got {array.dtype} of shape {array.shape}.')
  return array


def payload_size(payload: Any, name: str) -> tuple[int, int]:
  """(height, width) of a payload; reads only the header of encoded bytes."""
  if isinstance(payload, bytes):
    return image_size(payload, name)
  return decode_payload(payload, name).shape[:2]


@dataclasses.dataclass(frozen=True)
class ScanReport:
  """What a start-up scan found. `sizes[i]` is (height, width) of item i, or None if it was bad."""
  sizes: list[tuple[int, int] | None]
  errors: list[str]       # 'name: reason' for unreadable/unsupported images (always fatal).
  too_small: list[str]    # 'name: reason' for readable images smaller than the crop.
  gray: list[bool | None] = dataclasses.field(default_factory=list)  # R = G = B (decoded scans only)

  def usable(self) -> list[int]:
    return [i for i, s in enumerate(self.sizes) if s is not None]


def scan(items: Sequence[Any], read: Callable[[Any], tuple[str, Any]], *, min_size: int,
         decode: bool, num_threads: int = 8) -> ScanReport:
  """Checks every item once, in threads: readable, supported and at least min_size on both sides.

  `read(item)` returns (name, payload) as for `decode_payload`. With `decode`, every image is decoded
  in full, which also finds truncated files; otherwise only headers are read (fast, but a truncated
  file then surfaces when the pipeline reads it).
  """
  def check(item):
    name = str(item)
    try:
      name, payload = read(item)
      gray = None
      if decode:
        pixels = decode_payload(payload, name)
        height, width = pixels.shape[:2]
        gray = bool(np.array_equal(pixels[..., 0], pixels[..., 1])
                    and np.array_equal(pixels[..., 1], pixels[..., 2]))
      else:
        height, width = payload_size(payload, name)
    except ImageError as e:
      return None, str(e), None, None
    if min(height, width) < min_size:
      return None, None, (f'{name}: {height}×{width} is smaller than the {min_size}×{min_size} crop.'), gray
    return (height, width), None, None, gray

  with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
    results = list(pool.map(check, items))
  return ScanReport(sizes=[r[0] for r in results],
                    errors=[r[1] for r in results if r[1]],
                    too_small=[r[2] for r in results if r[2]], gray=[r[3] for r in results])


def format_problems(problems: Iterable[str]) -> str:
  """Lines for an error message: at most `_MAX_LISTED_ERRORS`, then how many more."""
  problems = list(problems)
  lines = [f'  {p}' for p in problems[:_MAX_LISTED_ERRORS]]
  if len(problems) > _MAX_LISTED_ERRORS:
    lines.append(f'  ... and {len(problems) - _MAX_LISTED_ERRORS} more.')
  return '\n'.join(lines)
