r"""Collects the SR reports of evaluate.py into the restorer tables of docs/results.md §4.

  python scripts/collect_restorers.py runs/eval_restorers/gaussian_x4 runs/eval_restorers/motion_x4 ...

Each argument is an evaluate.py --out folder (one test set, one or more restorers). Three tables, one
row per folder: PSNR / SSIM on Y for bicubic and each restorer with the mean, S2K and true kernels; the
window per restorer (window = true − mean, the share of it S2K recovers, true − bicubic); and
colour and consistency with the true kernel (chroma error, saturation / HR, LR consistency).
"""
import json
import os
import sys

KERNELS = ('mean', 'S2K', 'true')


def row(cells) -> str:
  return '| ' + ' | '.join(str(c) for c in cells) + ' |'


def set_name(result: dict, folder: str) -> str:
  return f'{os.path.basename(os.path.normpath(folder))} ({result["images"]} LR)'


def load(folder: str) -> dict:
  with open(os.path.join(folder, 'results.json')) as f:
    return json.load(f)


def restorer_names(results: list[dict]) -> list[str]:
  """Every restorer in the order first seen."""
  names = []
  for result in results:
    names += [r['name'] for r in result['restorers'] if r['name'] not in names]
  return names


def score(sr: dict, name: str, kernel: str) -> dict | None:
  return sr.get(f'{name} + {kernel} kernel')


def main(folders: list[str]) -> None:
  results = [load(folder) for folder in folders]
  names = restorer_names(results)
  print(row(['set', 'Bicubic'] + [f'{n} + {k}' for n in names for k in KERNELS]))
  print(row(['---'] * (2 + 3 * len(names))))
  for folder, result in zip(folders, results):
    sr = result['sr']
    cells = [set_name(result, folder), f'{sr["Bicubic"]["psnr"]:.2f} / {sr["Bicubic"]["ssim"]:.4f}']
    for n in names:
      for k in KERNELS:
        s = score(sr, n, k)
        cells.append('—' if s is None else f'{s["psnr"]:.2f} / {s["ssim"]:.4f}')
    print(row(cells))

  print()
  print(row(['set', 'restorer', 'window (true − mean, dB)', 'S2K share of the window',
             'true − bicubic (dB)']))
  print(row(['---'] * 5))
  for folder, result in zip(folders, results):
    sr = result['sr']
    for n in names:
      mean, s2k, true = (score(sr, n, k) for k in KERNELS)
      if true is None:
        continue
      window = true['psnr'] - mean['psnr']
      share = '—' if s2k is None or abs(window) < 1e-6 else f'{(s2k["psnr"] - mean["psnr"]) / window:.0%}'
      print(row([set_name(result, folder), n, f'{window:+.2f}', share,
                 f'{true["psnr"] - sr["Bicubic"]["psnr"]:+.2f}']))

  print()
  print(row(['set: chroma error / saturation / LR consistency (true kernel)', 'Bicubic'] + names))
  print(row(['---'] * (2 + len(names))))
  for folder, result in zip(folders, results):
    sr = result['sr']
    cells = [set_name(result, folder),
             f'{sr["Bicubic"]["chroma"]:.2f} / {sr["Bicubic"]["saturation"]:.3f} / –']
    for n in names:
      s = score(sr, n, 'true')
      cells.append('—' if s is None else
                   f'{s["chroma"]:.2f} / {s["saturation"]:.3f} / {s["lr_psnr"]:.1f} dB')
    print(row(cells))


if __name__ == '__main__':
  main(sys.argv[1:])
