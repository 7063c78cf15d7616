r"""Collects evaluate.py reports on benchmark protocols into the tables of docs/benchmarks_sr.md.

  python scripts/collect_benchmarks.py gaussian8 OUT    # one row per OUT/<set>_g8_x<s>*/results.json
  python scripts/collect_benchmarks.py table1 OUT       # the S2K paper's Table 1 layout: OUT/<family>_x<s>

Rows of `gaussian8`: set and scale, bicubic and USRNet with the mean / S2K / true kernel (PSNR / SSIM on
Y), S2K − bicubic. `table1`: the paper's layout, one row per method, one column per kernel family and
scale (Gaussian, motion, disk × ×2, ×3, ×4), cells PSNR / SSIM on Y, a dash where a folder is missing.
Writes OUT/<layout>.md and prints it.
"""
import json
import os
import sys

LAYOUTS = ('gaussian8', 'table1')
FAMILIES = ('gaussian', 'motion', 'disk')
SCALES = (2, 3, 4)
METHODS = ('Bicubic', 'R + mean kernel', 'R + S2K kernel', 'R + true kernel')


def load(folder: str) -> dict | None:
  path = os.path.join(folder, 'results.json')
  if not os.path.isfile(path):
    return None
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def scores(result: dict) -> dict[str, dict]:
  """The report's SR scores with the restorer's name replaced by 'R' (one restorer per report)."""
  restorer = result['restorer']['name']
  return {name.replace(restorer, 'R').split(' (')[0]: v for name, v in result['sr'].items()}


def cell(score: dict) -> str:
  return f"{score['psnr']:.2f} / {score['ssim']:.4f}"


def gaussian8(out: str) -> list[str]:
  rows = ['| set | scale | images × kernels | Bicubic | USRNet + mean kernel | USRNet + S2K | '
          'USRNet + true kernel | S2K − bicubic |', '|---|---|---|---|---|---|---|---|']
  for name in sorted(os.listdir(out)):
    result = load(os.path.join(out, name)) if name != 'testsets' else None
    if result is None:
      continue
    sr = scores(result)
    gain = sr['R + S2K kernel']['psnr'] - sr['Bicubic']['psnr']
    rows.append(f"| {name} | ×{result['scale']} | {result['images']} | "
                + ' | '.join(cell(sr[m]) for m in METHODS) + f' | {gain:+.2f} |')
  return rows


def table1(out: str) -> list[str]:
  columns = [(f, s) for f in FAMILIES for s in SCALES]
  results = {c: load(os.path.join(out, f'{c[0]}_x{c[1]}')) for c in columns}
  found = [r for r in results.values() if r]
  if not found:
    raise SystemExit(f'no <family>_x<scale>/results.json under {out}: run scripts/eval_table1.sh first.')
  restorer = found[0]['restorer']['name']
  images = sorted({r['images'] for r in found})
  rows = [f'LR images per cell: {", ".join(map(str, images))}; restorer {restorer}.', '',
          '| method | ' + ' | '.join(f'{f} ×{s}' for f, s in columns) + ' |',
          '|---|' + '---|' * len(columns)]
  for method in METHODS:
    label = method.replace('R + ', f'{restorer} + ')
    rows.append(f'| {label} | ' + ' | '.join(
        cell(scores(results[c])[method]) if results[c] else '—' for c in columns) + ' |')
  return rows


def main(argv: list[str]) -> None:
  if len(argv) != 3 or argv[1] not in LAYOUTS:
    raise SystemExit(f'usage: {argv[0]} {{{"|".join(LAYOUTS)}}} OUT')
  layout, out = argv[1], argv[2]
  if not os.path.isdir(out):
    raise SystemExit(f'{out}: no such folder (the OUT of scripts/eval_benchmarks.sh or eval_table1.sh).')
  rows = gaussian8(out) if layout == 'gaussian8' else table1(out)
  with open(os.path.join(out, f'{layout}.md'), 'w', encoding='utf-8') as f:
    f.write('\n'.join(rows) + '\n')
  print('\n'.join(rows))


if __name__ == '__main__':
  main(sys.argv)
