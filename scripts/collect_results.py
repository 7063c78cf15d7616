r"""Collects kernel-estimation reports of evaluate.py into one Markdown table (docs/results.md).

  python scripts/collect_results.py runs/results/k_gaussian runs/results/k_gaussian_spatial ...

Each argument is an evaluate.py --out folder; its results.json names the estimator, whose bundle or
checkpoint gives the generator, input and loss weights. One row per folder, plus one mean-kernel row
per (family, test set), in the order first seen.
"""
import json
import os
import sys

from s2k_jax import estimator as estimator_lib


def describe(directory: str) -> dict:
  config = estimator_lib.load(directory).config
  return dict(generator=config.model.generator, input=config.model.input,
              weights='/'.join(f'{w:g}' for w in config.train.loss_weights))


def row(cells) -> str:
  return '| ' + ' | '.join(str(c) for c in cells) + ' |'


def scores(k: dict) -> list[str]:
  return [f'{1e3 * k["D_v"]:.3f}', f'{k["D_s"]:.3f}', f'{k["psnr"]:.2f}']


def main(folders: list[str]) -> None:
  print(row(['run', 'family', 'generator', 'input', 'λ (L1/GAN/TV)', 'step', 'D_v ×10³', 'D_s',
             'kernel PSNR (dB)']))
  print(row(['---'] * 9))
  baselines = {}
  for folder in folders:
    with open(os.path.join(folder, 'results.json')) as f:
      result = json.load(f)
    est = result['estimator']
    info = describe(est['directory'])
    name = os.path.splitext(os.path.basename(est['directory']))[0]
    print(row([name, result['family'], info['generator'], info['input'], info['weights'], est['step'],
               *scores(result['kernels']['S2K'])]))
    baselines.setdefault((result['family'], result['testset']), result['kernels']['mean kernel'])
  for (family, _), k in baselines.items():
    print(row(['mean kernel', family, '', '', '', '', *scores(k)]))


if __name__ == '__main__':
  main(sys.argv[1:])
