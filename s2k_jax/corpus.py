r"""The photo training corpus (§4's training data, at the scale these machines reach): camera photos
that ship inside Debian packages, extracted reproducibly.

The paper trains on DIV2K and Flickr2K, which cannot be fetched here. `photos.tsv` (shipped with the
data notes, one row per photo: package, path inside it, size, format, JPEG quality, EXIF orientation,
softness) lists 123 camera photographs in wallpaper, theme and test-data packages whose licences allow
this use. This module turns such a list into a folder of PNGs and a manifest:

- a `.deb` is read without dpkg: its `ar` container, then `data.tar.{xz,gz,bz2}` (`deb_files`);
- Enlightenment's `.edj` archives (Eet files) hold their JPEG, uncompressed, under `edje/images/0`
  (`eet_entry`; paths in the list name it as `ARCHIVE#ENTRY`); smaller copies under other entries are
  ignored;
- each photo is decoded by `images.decode_image` (the project's checks), turned upright by its EXIF
  orientation, and halved by 2×2 area averaging when its long side exceeds `MAX_SIDE` (hides JPEG
  blocks, as DF2K-style pipelines do);
- soft photos (a ×2 bicubic down-and-up round trip within `SOFT_PSNR_DB` of the photo, measured after
  resizing: fog, bokeh) are dropped unless asked to keep them, and marked in the manifest.

The command line is `scripts/build_photo_corpus.py` (downloads with `apt-get download`, which needs
the package registry: not in CI).
"""
from collections.abc import Iterable, Iterator
import csv
import dataclasses
import hashlib
import io
import os
import re
import struct
import tarfile

import numpy as np
from PIL import Image

from s2k_jax import images

MAX_SIDE = 2048          # Photos whose long side is above this are halved (2×2 area mean).
SOFT_PSNR_DB = 45.0      # ×2 bicubic round trip PSNR above which a photo counts as soft.
EET_MAGIC = 0x1EE70F42   # Eet file format 2 (eet_lib.c: EET_MAGIC_FILE2).
TSV_COLUMNS = ('package', 'path', 'width', 'height', 'format', 'mode', 'jpeg_q_est', 'subsampling',
               'exif_orient', 'psnr_down2up2_dB')
MANIFEST_COLUMNS = ('file', 'package', 'version', 'path', 'licence', 'source_sha256', 'png_sha256',
                    'width', 'height', 'processing', 'round_trip_psnr_dB', 'soft')


@dataclasses.dataclass(frozen=True)
class Photo:
  """One row of photos.tsv: where a photo is and what it should be."""
  package: str
  path: str                # Inside the package; 'ARCHIVE.edj#edje/images/0' for an Eet entry.
  width: int
  height: int

  @property
  def member(self) -> str:
    """The file inside the package (the Eet archive for an .edj entry)."""
    return self.path.split('#', 1)[0]

  @property
  def name(self) -> str:
    """The PNG's file name: package, then the path below /usr/share without extension ('/' → '_')."""
    stem = os.path.splitext(self.member.removeprefix('/usr/share/').lstrip('/'))[0]
    return f'{self.package}__{re.sub(r"[^A-Za-z0-9.-]+", "_", stem)}.png'


def read_list(path: str) -> list[Photo]:
  """photos.tsv → photos, checked: the header and every row must be complete."""
  with open(path, newline='', encoding='utf-8') as f:
    rows = list(csv.DictReader(f, delimiter='\t'))
  if not rows or any(column not in rows[0] for column in ('package', 'path', 'width', 'height')):
    raise ValueError(f'{path} is not a photo list: it needs a tab-separated header with package, path, '
                     f'width and height (the columns of photos.tsv: {", ".join(TSV_COLUMNS)}).')
  photos = []
  for line, row in enumerate(rows, start=2):
    try:
      photos.append(Photo(row['package'], row['path'], int(row['width']), int(row['height'])))
    except (TypeError, ValueError) as e:
      raise ValueError(f'{path}, line {line}: incomplete row {row} ({e}).') from None
  names = [p.name for p in photos]
  if len(set(names)) != len(names):
    raise ValueError(f'{path}: two photos map to the same file name; rename one of the rows.')
  return photos


def _ar_members(data: bytes, name: str) -> Iterator[tuple[str, bytes]]:
  """(member name, bytes) of a Unix `ar` archive (the container of a .deb)."""
  if not data.startswith(b'!<arch>\n'):
    raise ValueError(f'{name} is not a Debian package (no ar header); delete it and download it again.')
  pos = 8
  while pos + 60 <= len(data):
    header = data[pos:pos + 60]
    member = header[:16].decode('ascii', 'replace').strip().rstrip('/')
    size = int(header[48:58].decode('ascii').strip())
    if pos + 60 + size > len(data):
      raise ValueError(f'{name} is truncated (member {member} needs {size} bytes); delete it and download '
                       'it again.')
    yield member, data[pos + 60:pos + 60 + size]
    pos += 60 + size + (size % 2)


def deb_files(deb_path: str, wanted: Iterable[str]) -> dict[str, bytes]:
  """The files `wanted` (absolute paths as in the package) read from a .deb; missing ones are absent."""
  wanted = {'./' + w.lstrip('/') for w in wanted}
  with open(deb_path, 'rb') as f:
    data = f.read()
  for member, payload in _ar_members(data, deb_path):
    if member.startswith('data.tar'):
      if member.endswith('.zst'):
        raise ValueError(f'{deb_path}: {member} is zstd-compressed, which Python cannot read before 3.14; '
                         f'unpack it with `dpkg-deb --fsys-tarfile {deb_path}`.')
      try:
        with tarfile.open(fileobj=io.BytesIO(payload), mode='r:*') as tar:
          return {info.name[1:]: tar.extractfile(info).read() for info in tar
                  if info.isfile() and info.name in wanted}
      except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f'{deb_path}: {member} cannot be read ({e}); delete the file and download it '
                         'again.') from None
  raise ValueError(f'{deb_path} has no data.tar member: not a binary Debian package.')


def eet_entry(data: bytes, entry: str, name: str = 'archive') -> bytes:
  """One uncompressed entry of an Eet (format 2) file, such as an Edje `.edj` theme.

  Layout (eet_lib.c, eet_internal_read2): big-endian int32 magic, entry count, dictionary count, then
  per entry offset, size, data size, name offset, name size, flags; names are NUL-terminated.
  """
  if len(data) < 12 or struct.unpack('>I', data[:4])[0] != EET_MAGIC:
    raise ValueError(f'{name} is not an Eet archive (magic {data[:4].hex()}).')
  count = struct.unpack('>I', data[4:8])[0]
  if 12 + 24 * count > len(data):
    raise ValueError(f'{name}: its Eet directory ({count} entries) runs past the end of the file.')
  for i in range(count):
    offset, size, _, name_offset, name_size, flags = struct.unpack('>6I', data[12 + 24 * i:36 + 24 * i])
    if data[name_offset:name_offset + name_size].rstrip(b'\0').decode('utf-8', 'replace') != entry:
      continue
    if flags & 0x3:
      raise ValueError(f'{name}: entry {entry} is compressed or ciphered; only stored entries are read.')
    if offset + size > len(data):
      raise ValueError(f'{name}: entry {entry} runs past the end of the file (truncated download?).')
    return data[offset:offset + size]
  raise ValueError(f'{name} has no entry {entry}.')


def jpeg_in(blob: bytes, name: str) -> bytes:
  """The JPEG stream inside an image entry: from its start marker (FF D8 FF) to its last end marker."""
  start, end = blob.find(b'\xff\xd8\xff'), blob.rfind(b'\xff\xd9')
  if start < 0 or end < start:
    raise ValueError(f'{name} holds no JPEG stream.')
  return blob[start:end + 2]


def photo_bytes(files: dict[str, bytes], photo: Photo) -> bytes:
  """The encoded photo of `photo` from the files read out of its package."""
  if photo.member not in files:
    raise ValueError(f'{photo.package} has no file {photo.member}: the package version differs from the '
                     'list; check `apt-cache policy` or drop the row.')
  data = files[photo.member]
  if '#' in photo.path:
    entry = photo.path.split('#', 1)[1]
    data = jpeg_in(eet_entry(data, entry, photo.member), f'{photo.path}')
  return data


_EXIF_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                   4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                   6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


def upright(data: bytes, name: str) -> tuple[np.ndarray, bool]:
  """Decoded uint8 RGB pixels turned by the file's EXIF orientation (as `ImageOps.exif_transpose`), and
  whether they were turned."""
  with Image.open(io.BytesIO(data)) as image:
    orientation = image.getexif().get(0x0112, 1)
  pixels = images.to_uint8(images.decode_image(data, name))
  if orientation not in _EXIF_TRANSPOSE:
    return pixels, False
  return np.asarray(Image.fromarray(pixels).transpose(_EXIF_TRANSPOSE[orientation])), True


def halve(pixels: np.ndarray) -> np.ndarray:
  """÷2 by 2×2 area averaging (odd last rows/columns dropped), rounded back to uint8."""
  h, w = pixels.shape[0] // 2 * 2, pixels.shape[1] // 2 * 2
  blocks = pixels[:h, :w].astype(np.float64).reshape(h // 2, 2, w // 2, 2, -1).mean(axis=(1, 3))
  return np.clip(np.round(blocks), 0, 255).astype(np.uint8)


def round_trip_psnr(pixels: np.ndarray) -> float:
  """PSNR (dB, RGB) of a ×2 bicubic down-and-up round trip: high = little detail near Nyquist (soft)."""
  image = Image.fromarray(pixels)
  h, w = pixels.shape[:2]
  back = np.asarray(image.resize((w // 2, h // 2), Image.Resampling.BICUBIC)
                    .resize((w, h), Image.Resampling.BICUBIC), np.float64)
  mse = np.mean((back - pixels.astype(np.float64)) ** 2)
  return float('inf') if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def prepare(data: bytes, name: str) -> tuple[np.ndarray, list[str], float]:
  """Encoded photo → (upright uint8 RGB, processing steps, round-trip PSNR of the result)."""
  pixels, turned = upright(data, name)
  steps = ['EXIF orientation applied'] if turned else []
  if max(pixels.shape[:2]) > MAX_SIDE:
    pixels = halve(pixels)
    steps.append('halved by 2×2 area mean')
  return pixels, steps, round_trip_psnr(pixels)


def licence(copyright_text: str | None) -> str:
  """The licence names of a Debian copyright file (DEP-5 `License:` fields), or its first line."""
  if not copyright_text:
    return 'unknown (no copyright file in the package)'
  names = sorted({m.strip() for m in re.findall(r'^License:\s*(.+)$', copyright_text, re.MULTILINE)})
  return '; '.join(names) if names else copyright_text.strip().splitlines()[0][:120]


def sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def read_manifest(path: str) -> dict[str, dict[str, str]]:
  """manifest.tsv → {file: row}; {} when there is none yet."""
  if not os.path.exists(path):
    return {}
  with open(path, newline='', encoding='utf-8') as f:
    return {row['file']: row for row in csv.DictReader(f, delimiter='\t')}


def write_manifest(path: str, rows: Iterable[dict[str, str]]) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w', newline='', encoding='utf-8') as f:
    writer = csv.DictWriter(f, MANIFEST_COLUMNS, delimiter='\t', lineterminator='\n')
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: r['file']))
  os.replace(tmp, path)


def is_current(row: dict[str, str] | None, png_path: str) -> bool:
  """Whether a PNG written earlier is there and still has the checksum its manifest row records."""
  if not row or not os.path.exists(png_path):
    return False
  with open(png_path, 'rb') as f:
    return sha256(f.read()) == row['png_sha256']


def extract_package(deb_path: str, package: str, version: str, photos: list[Photo], out_dir: str, *,
                    keep_soft: bool = False, licence_dir: str | None = None) -> list[dict[str, str]]:
  """Writes the package's photos as PNGs into out_dir (and its copyright file, if it has one, as
  licence_dir/<package>.copyright); returns their manifest rows (soft ones dropped unless keep_soft, but
  listed with soft = yes and no file written). The package is read once."""
  copyright_path = f'/usr/share/doc/{package}/copyright'
  files = deb_files(deb_path, [p.member for p in photos] + [copyright_path])
  text = files.get(copyright_path)
  if text and licence_dir:
    with open(os.path.join(licence_dir, f'{package}.copyright'), 'wb') as f:
      f.write(text)
  package_licence = licence(text.decode('utf-8', 'replace') if text else None)
  rows = []
  for photo in photos:
    data = photo_bytes(files, photo)
    pixels, steps, psnr = prepare(data, photo.path)
    soft = psnr > SOFT_PSNR_DB
    row = dict(file=photo.name, package=package, version=version, path=photo.path, licence=package_licence,
               source_sha256=sha256(data), png_sha256='', width=str(pixels.shape[1]),
               height=str(pixels.shape[0]), processing='; '.join(steps) or 'none',
               round_trip_psnr_dB=f'{psnr:.1f}', soft='yes' if soft else 'no')
    if not soft or keep_soft:
      buffer = io.BytesIO()
      Image.fromarray(pixels).save(buffer, format='PNG', optimize=False)
      png = buffer.getvalue()
      with open(os.path.join(out_dir, photo.name), 'wb') as f:
        f.write(png)
      row['png_sha256'] = sha256(png)
    rows.append(row)
  return rows
