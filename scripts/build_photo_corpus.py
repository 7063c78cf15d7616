r"""Builds the photo training corpus: Debian packages → upright PNGs + manifest (+ the fast dataset).

  python scripts/build_photo_corpus.py OUT [--list scripts/photo_corpus.tsv]
      [--keep_soft] [--tfds_dir ~/tensorflow_datasets/photo_corpus --eval_dir HELD_OUT_PHOTOS]

Downloads each package the list names with `apt-get download` into OUT/debs (kept: a re-run reads
them again instead of downloading; run `apt-get update` once first), extracts exactly the listed photos
(`s2k_jax.corpus`), writes OUT/photos/*.png, OUT/manifest.tsv (file, source package and version, path,
licence, checksums, processing, softness) and each package's copyright file under OUT/licences/.

Re-runnable: a photo whose PNG is there with the checksum in the manifest is not redone; a package whose
download fails is named, the rest is built, and the command exits 1. With --tfds_dir the PNGs then
become the `s2k_images` array_record dataset (`python -m s2k_jax.build_tfds`), with --eval_dir as its
validation split (training evaluates on it: photos never trained on, e.g. the bundled chelsea.png and
coffee.png); train with
`--config.data.source=tfds --config.data.tfds_data_dir=DIR`. Needs the package registry: not run in CI.
"""
import argparse
import collections
import glob
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from s2k_jax import corpus  # pylint: disable=g-import-not-at-top

# 123 camera photos in Debian packages (package, path, size, JPEG quality, EXIF orientation, softness).
DEFAULT_LIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'photo_corpus.tsv')


def _download(package: str, deb_dir: str) -> str:
  """The package's .deb in deb_dir, downloaded with apt-get if not there yet."""
  found = sorted(glob.glob(os.path.join(deb_dir, f'{package}_*.deb')))
  if not found:
    result = subprocess.run(['apt-get', 'download', package], cwd=deb_dir, capture_output=True, text=True)
    found = sorted(glob.glob(os.path.join(deb_dir, f'{package}_*.deb')))
    if result.returncode != 0 or not found:
      raise RuntimeError(f'apt-get download {package} failed: {result.stderr.strip()[-400:]} '
                         '(run `apt-get update` once; the package registry must be reachable).')
  return found[-1]


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('out', help='Output folder (photos/, manifest.tsv, licences/, debs/).')
  parser.add_argument('--list', default=DEFAULT_LIST, help='photos.tsv (default: %(default)s).')
  parser.add_argument('--keep_soft', action='store_true',
                      help=f'Also write soft photos (×2 round trip PSNR > {corpus.SOFT_PSNR_DB} dB).')
  parser.add_argument('--tfds_dir', help='Then build the s2k_images dataset here.')
  parser.add_argument('--eval_dir', help="The dataset's validation photos (needed by train.py's eval).")
  args = parser.parse_args()
  photos = corpus.read_list(args.list)
  dirs = {name: os.path.join(args.out, name) for name in ('photos', 'licences', 'debs')}
  for directory in dirs.values():
    os.makedirs(directory, exist_ok=True)
  manifest_path = os.path.join(args.out, 'manifest.tsv')
  manifest = corpus.read_manifest(manifest_path)
  by_package = collections.defaultdict(list)
  for photo in photos:
    by_package[photo.package].append(photo)
  failed = []
  for i, (package, members) in enumerate(sorted(by_package.items()), start=1):
    todo = [p for p in members if not (manifest.get(p.name, {}).get('soft') == 'yes' and not args.keep_soft)
            and not corpus.is_current(manifest.get(p.name), os.path.join(dirs['photos'], p.name))]
    print(f'[{i}/{len(by_package)}] {package}: {len(members)} photos, {len(todo)} to extract', flush=True)
    if not todo:
      continue
    try:
      deb = _download(package, dirs['debs'])
      version = os.path.basename(deb)[len(package) + 1:].rsplit('_', 1)[0]
      for row in corpus.extract_package(deb, package, version, todo, dirs['photos'], keep_soft=args.keep_soft,
                                        licence_dir=dirs['licences']):
        manifest[row['file']] = row
    except (RuntimeError, ValueError, OSError) as e:
      failed.append(package)
      print(f'  {package} skipped: {e}', file=sys.stderr, flush=True)
    corpus.write_manifest(manifest_path, manifest.values())
  kept = [r for r in manifest.values() if r['png_sha256']]
  print(f'{len(kept)} photos in {dirs["photos"]} ({len(manifest) - len(kept)} soft ones left out); '
        f'manifest: {manifest_path}')
  if failed:
    print(f'Not built (re-run to retry): {", ".join(failed)}', file=sys.stderr)
    return 1
  if args.tfds_dir:
    subprocess.run([sys.executable, '-m', 's2k_jax.build_tfds', f'--train_dir={dirs["photos"]}',
                    f'--data_dir={args.tfds_dir}'] + ([f'--eval_dir={args.eval_dir}'] if args.eval_dir else []),
                   check=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
