"""Tests of s2k_jax/corpus.py: photos out of a fabricated Debian package (no registry needed)."""
import io
import os
import struct
import tarfile

import numpy as np
from PIL import Image
import pytest

from s2k_jax import corpus

PACKAGE = 'photo-data'


def _jpeg(pixels: np.ndarray, orientation: int = 1) -> bytes:
  buffer = io.BytesIO()
  exif = Image.Exif()
  if orientation != 1:
    exif[0x0112] = orientation
  Image.fromarray(pixels).save(buffer, format='JPEG', quality=95, subsampling=0, exif=exif.tobytes())
  return buffer.getvalue()


def _eet(entries: dict[str, bytes]) -> bytes:
  """An Eet (format 2) file as eet_lib.c writes it: header, directory, names, then the data."""
  names = b''.join(name.encode() + b'\0' for name in entries)
  head = 12 + 24 * len(entries)
  name_pos, data_pos, rows, blobs = head, head + len(names), [], b''
  for name, data in entries.items():
    rows.append(struct.pack('>6I', data_pos + len(blobs), len(data), len(data), name_pos, len(name) + 1, 0))
    name_pos += len(name) + 1
    blobs += data
  return struct.pack('>III', corpus.EET_MAGIC, len(entries), 0) + b''.join(rows) + names + blobs


def _ar(members: dict[str, bytes]) -> bytes:
  out = b'!<arch>\n'
  for name, data in members.items():
    header = f'{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n'.encode()
    out += header + data + (b'\n' if len(data) % 2 else b'')
  return out


def _deb(path: str, files: dict[str, bytes]) -> None:
  data = io.BytesIO()
  with tarfile.open(fileobj=data, mode='w:xz') as tar:
    for name, payload in files.items():
      info = tarfile.TarInfo('.' + name)
      info.size = len(payload)
      tar.addfile(info, io.BytesIO(payload))
  with open(path, 'wb') as f:
    f.write(_ar({'debian-binary': b'2.0\n', 'control.tar.xz': b'', 'data.tar.xz': data.getvalue()}))


def _texture(h: int, w: int, seed: int) -> np.ndarray:
  """Random 2×2 blocks: sharp (a ×2 round trip loses much), yet JPEG q95 keeps them within a few levels."""
  blocks = np.random.default_rng(seed).integers(0, 256, (-(-h // 2), -(-w // 2), 3), dtype=np.uint8)
  return blocks.repeat(2, axis=0).repeat(2, axis=1)[:h, :w]


@pytest.fixture
def package(tmp_path):
  rotated = _texture(40, 60, 0)
  large = _texture(90, 130, 1)
  small_copy = _jpeg(_texture(9, 16, 2))
  soft = np.broadcast_to(np.linspace(0, 255, 64)[None, :, None], (48, 64, 3)).astype(np.uint8)
  soft_png = io.BytesIO()
  Image.fromarray(soft).save(soft_png, format='PNG')
  files = {
      '/usr/share/pics/rotated.jpg': _jpeg(rotated, orientation=6),
      '/usr/share/themes/big.edj': _eet({'edje/images/1': small_copy, 'edje/file': b'\x00' * 10,
                                         'edje/images/0': _jpeg(large)}),
      '/usr/share/pics/soft.png': soft_png.getvalue(),
      f'/usr/share/doc/{PACKAGE}/copyright': b'Format: dep5\n\nFiles: *\nLicense: CC0-1.0\n\nFiles: x\nLicense: MIT\n',
  }
  deb = str(tmp_path / f'{PACKAGE}_1.0-1_all.deb')
  _deb(deb, files)
  photos = [corpus.Photo(PACKAGE, '/usr/share/pics/rotated.jpg', 60, 40),
            corpus.Photo(PACKAGE, '/usr/share/themes/big.edj#edje/images/0', 130, 90),
            corpus.Photo(PACKAGE, '/usr/share/pics/soft.png', 64, 48)]
  return deb, photos, dict(rotated=rotated, large=large)


def test_extracts_turns_halves_and_drops_soft_photos(package, tmp_path, monkeypatch):
  deb, photos, source = package
  monkeypatch.setattr(corpus, 'MAX_SIDE', 100)
  out = tmp_path / 'photos'
  out.mkdir()
  rows = {r['path']: r for r in corpus.extract_package(deb, PACKAGE, '1.0-1', photos, str(out),
                                                       licence_dir=str(tmp_path))}
  assert (tmp_path / f'{PACKAGE}.copyright').read_bytes().startswith(b'Format: dep5')
  rotated = np.asarray(Image.open(out / photos[0].name))
  assert rotated.shape == (60, 40, 3)  # EXIF 6: the stored 60×40 picture is turned a quarter clockwise
  expected = np.rot90(source['rotated'], k=-1).astype(np.float64)
  assert np.mean(np.abs(rotated - expected)) < 8  # JPEG q95: not bit-exact, but this turn
  assert np.mean(np.abs(rotated - np.rot90(source['rotated'], k=1))) > 40  # not the other one
  big = np.asarray(Image.open(out / photos[1].name))
  assert big.shape == (45, 65, 3)  # the Eet entry images/0 (130×90), halved by 2×2 means
  assert rows[photos[1].path]['processing'] == 'halved by 2×2 area mean'
  assert rows[photos[2].path]['soft'] == 'yes' and not (out / photos[2].name).exists()
  assert rows[photos[0].path]['licence'] == 'CC0-1.0; MIT'
  assert rows[photos[0].path]['processing'] == 'EXIF orientation applied'
  assert all(corpus.is_current(r, str(out / r['file'])) for r in rows.values() if r['soft'] == 'no')
  (out / photos[0].name).write_bytes(b'changed')
  assert not corpus.is_current(rows[photos[0].path], str(out / photos[0].name))
  corpus.write_manifest(str(tmp_path / 'manifest.tsv'), rows.values())
  assert corpus.read_manifest(str(tmp_path / 'manifest.tsv')) == {r['file']: r for r in rows.values()}


def test_halve_is_the_mean_of_each_block():
  x = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
  expected = x[:4, :6].astype(np.float64).reshape(2, 2, 3, 2, 3).mean(axis=(1, 3))
  np.testing.assert_array_equal(corpus.halve(x), np.round(expected).astype(np.uint8))


def test_soft_and_sharp_round_trips():
  assert corpus.round_trip_psnr(_texture(64, 64, 3)) < 20
  flat = np.full((32, 32, 3), 100, np.uint8)
  assert corpus.round_trip_psnr(flat) == float('inf')


def test_bad_packages_and_lists_are_named(package, tmp_path):
  deb, photos, _ = package
  truncated = tmp_path / 'cut.deb'
  truncated.write_bytes(open(deb, 'rb').read()[:300])
  with pytest.raises(ValueError, match='cut.deb is truncated'):
    corpus.deb_files(str(truncated), ['/usr/share/pics/rotated.jpg'])
  not_deb = tmp_path / 'x.deb'
  not_deb.write_bytes(b'<html>404</html>')
  with pytest.raises(ValueError, match='x.deb is not a Debian package'):
    corpus.deb_files(str(not_deb), [])
  missing = corpus.Photo(PACKAGE, '/usr/share/pics/gone.jpg', 1, 1)
  with pytest.raises(ValueError, match='photo-data has no file /usr/share/pics/gone.jpg'):
    corpus.extract_package(deb, PACKAGE, '1', [missing], str(tmp_path))
  with pytest.raises(ValueError, match='has no entry edje/images/7'):
    corpus.extract_package(deb, PACKAGE, '1', [corpus.Photo(PACKAGE, '/usr/share/themes/big.edj#edje/images/7', 1, 1)],
                           str(tmp_path))
  with pytest.raises(ValueError, match='is not an Eet archive'):
    corpus.eet_entry(b'\xff\xd8\xff' * 8, 'edje/images/0', 'fake.edj')
  bad_list = tmp_path / 'list.tsv'
  bad_list.write_text('name\tsize\nx\t1\n')
  with pytest.raises(ValueError, match='is not a photo list'):
    corpus.read_list(str(bad_list))
  bad_list.write_text('package\tpath\twidth\theight\np\t/a.jpg\twide\t3\n')
  with pytest.raises(ValueError, match='line 2: incomplete row'):
    corpus.read_list(str(bad_list))


def test_the_shipped_list_reads_and_names_every_photo_once():
  photos = corpus.read_list(os.path.join(os.path.dirname(__file__), '..', 'scripts', 'photo_corpus.tsv'))
  assert len(photos) == 123 and len({p.name for p in photos}) == 123
  assert sum('#' in p.path for p in photos) == 14  # enlightenment-data's .edj entries
