r"""Photos shrunk by an ordinary resizer, super-resolved with `s2k-sr`'s defaults (docs/benchmarks_sr.md).

Each HR image (modcropped) is shrunk by PIL's bicubic, Lanczos and box resizers at each scale — no
extra blur, the plainest case a user meets — and restored by the blind pipeline exactly as `s2k-sr`
runs it (the shipped Gaussian estimator of that scale, USRNet told the noise σ estimated from the LR,
the centre grid; `--noise zero` tells it σ 0 instead, the truth for these LR). The baseline
is PIL's own bicubic enlargement of the same LR. PSNR on Y (BT.601), `scale` border pixels cropped.

  python scripts/eval_resized.py --out results/resized IMAGE_OR_FOLDER [...]
  python scripts/eval_resized.py --out results/resized --estimator x4=runs/est/checkpoints ...
  python scripts/eval_resized.py --out results/resized --family auto --scales 4 ...   # as s2k-sr --family auto

Writes OUT/resized.md (mean per resizer and scale, and per image) and OUT/resized.csv.
"""
import argparse
import csv
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from s2k_jax import estimator as estimator_lib  # pylint: disable=g-import-not-at-top
from s2k_jax import family as family_lib
from s2k_jax import images
from s2k_jax import metrics
from s2k_jax import modelio
from s2k_jax import pipeline
from s2k_jax import runtime
from s2k_jax import tasks

RESIZERS = {'bicubic': Image.Resampling.BICUBIC, 'lanczos': Image.Resampling.LANCZOS, 'box': Image.Resampling.BOX}


def _paths(items: list[str]) -> list[str]:
  out = []
  for item in items:
    out.extend(images.list_images(item) if os.path.isdir(item) else [item])
  return out


def _psnr_y(sr: np.ndarray, hr: np.ndarray, scale: int) -> float:
  return float(metrics.psnr(sr, hr, crop_border=scale))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('images', nargs='+', help='HR images or folders of them (never trained on)')
  parser.add_argument('--out', required=True)
  parser.add_argument('--scales', default='2,4')
  parser.add_argument('--estimator', action='append', default=[], metavar='xS=MODEL',
                      help='an estimator for scale S instead of the shipped Gaussian one, e.g. x4=runs/est')
  parser.add_argument('--restorer', default=None, help='a restorer instead of the shipped USRNet')
  parser.add_argument('--family', choices=('gaussian', modelio.AUTO_FAMILY), default='gaussian',
                      help="auto: the shipped family classifier (or --classifier) picks the shipped estimator "
                           "per LR image, as s2k-sr --family auto; the family it picked is in the CSV")
  parser.add_argument('--classifier', default=None, help='with --family auto: a classifier instead of the shipped one')
  parser.add_argument('--noise', choices=('estimate', 'zero'), default='estimate',
                      help="the noise σ USRNet is told: 'estimate' from each LR as s2k-sr does by default, "
                           "or 'zero' (the truth for these clean LR, as `s2k-sr --noise-sigma 0`)")
  args = parser.parse_args(argv)
  runtime.quiet_library_logs()
  scales = [int(s) for s in args.scales.split(',')]
  try:
    chosen = modelio.models_per_scale(args.estimator, '--estimator', scales, f'--scales={args.scales}')
  except ValueError as e:
    parser.error(str(e))
  if args.family == modelio.AUTO_FAMILY and args.estimator:
    parser.error('--family auto runs the shipped estimator of the family it recognises: leave --estimator out.')
  if args.classifier and args.family != modelio.AUTO_FAMILY:
    parser.error('--classifier has no effect without --family auto.')
  if args.family == modelio.AUTO_FAMILY and not args.classifier:
    missing = [s for s in scales if s not in modelio.PRETRAINED_CLASSIFIERS['centre']]
    if missing:
      parser.error(f'no shipped family classifier for ×{", ×".join(map(str, missing))} on photos: give '
                   f'--scales {",".join(str(s) for s in sorted(modelio.PRETRAINED_CLASSIFIERS["centre"]))} '
                   'or a --classifier of that scale.')
  paths = _paths(args.images)
  os.makedirs(args.out, exist_ok=True)
  rows = []
  for scale in scales:
    if args.family == modelio.AUTO_FAMILY:
      clf = family_lib.load(args.classifier or modelio.pretrained_classifier(scale, 'centre'))
      if clf.scale != scale:
        parser.error(f'the classifier in {clf.directory} reads ×{clf.scale} LR, not ×{scale}: give --scales {clf.scale}.')
      ests = {f: pipeline.on_one_device(estimator_lib.load(modelio.pretrained_estimator(f, scale, 'centre')))
              for f in family_lib.FAMILIES}
    else:
      clf, ests = None, {'gaussian': pipeline.on_one_device(estimator_lib.load(
          chosen.get(scale) or modelio.pretrained_estimator('gaussian', scale, 'centre')))}
    rest = pipeline.on_one_device(tasks.load_restorer(args.restorer or modelio.pretrained_restorer('gaussian', scale)))
    for path in paths:
      hr = images.to_uint8(images.read_image(path))
      hr = hr[:hr.shape[0] - hr.shape[0] % scale, :hr.shape[1] - hr.shape[1] % scale]
      size = (hr.shape[1] // scale, hr.shape[0] // scale)
      for name, method in RESIZERS.items():
        lr = np.asarray(Image.fromarray(hr).resize(size, method))
        bicubic = np.asarray(Image.fromarray(lr).resize(hr.shape[1::-1], Image.Resampling.BICUBIC))
        sigma, _ = pipeline.noise_level(lr / 255.0, rest, None if args.noise == 'estimate' else 0.0)
        family = 'gaussian'
        if clf is not None:
          family, _ = family_lib.classify(clf, lr)
        sr, _ = pipeline.super_resolve([lr], ests[family], rest, noise_sigma=sigma)
        row = dict(image=os.path.basename(path), resizer=name, scale=scale, family=family, noise_sigma=sigma,
                   bicubic=_psnr_y(bicubic, hr, scale), s2k_sr=_psnr_y(sr[0], hr, scale))
        rows.append(row)
        print(f"×{scale} {name:8s} {row['image']}: PIL bicubic {row['bicubic']:.2f} dB, s2k-sr "
              f"{row['s2k_sr']:.2f} dB ({row['s2k_sr'] - row['bicubic']:+.2f}), {family} estimator, "
              f"noise σ {100 * sigma:.2f}%",
              flush=True)
  with open(os.path.join(args.out, 'resized.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  lines = ['PSNR-Y (dB), border of the scale cropped; LR = PIL resize of the HR (no extra blur); baseline = '
           "PIL's bicubic enlargement of that LR; s2k-sr = its defaults"
           + (f' with --family {args.family}' if args.family == modelio.AUTO_FAMILY else '')
           + ('.' if args.noise == 'estimate' else ', told noise σ 0 (--noise-sigma 0).'), '',
           '| scale | resizer | images | PIL bicubic | s2k-sr | gain | estimators run (Gaussian / motion / disk) |',
           '|---|---|---|---|---|---|---|']
  for scale in scales:
    for name in RESIZERS:
      sel = [r for r in rows if r['scale'] == scale and r['resizer'] == name]
      b, s = np.mean([r['bicubic'] for r in sel]), np.mean([r['s2k_sr'] for r in sel])
      runs = ' / '.join(str(sum(r['family'] == f for r in sel)) for f in family_lib.FAMILIES)
      lines.append(f'| ×{scale} | {name} | {len(sel)} | {b:.2f} | {s:.2f} | {s - b:+.2f} | {runs} |')
  with open(os.path.join(args.out, 'resized.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))
  return 0


if __name__ == '__main__':
  sys.exit(main())
