r"""Trains a shipped model again from its recipe (s2k_jax/catalogue.py, configs/release.py) and exports it.

  python scripts/reproduce_shipped.py --list                        # the shipped models and their stages
  python scripts/reproduce_shipped.py gaussian_x4_estimator         # → runs/release/gaussian_x4_estimator.npz
  python scripts/reproduce_shipped.py usrnet_mixed --root runs/rel  # 10 stages, each from the one before
  python scripts/reproduce_shipped.py gaussian_x2_resized_estimator \
      --override data.tfds_data_dir=/data/corpus/tfds               # any config field, every stage
  python scripts/reproduce_shipped.py usrnet_mixed --dry_run        # print the commands only

Each stage trains in ROOT/STAGE (`python train.py --config configs/release.py:STAGE`; stopped or
interrupted, running this again resumes it from its checkpoint) and is exported to ROOT/STAGE.npz, which
the next stage starts from; a stage whose export exists is skipped. The last export is copied to
ROOT/NAME.npz, the file to compare with (or put in place of) s2k_jax/weights/NAME.npz.
"""
import argparse
import os
import shlex
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from configs import release  # pylint: disable=g-import-not-at-top
from s2k_jax import catalogue


def stage_commands(model: catalogue.Shipped, root: str, overrides: list[str]) -> list[tuple[str, list[str]]]:
  """[(the export a stage writes, [its train command, its export command])], in order."""
  python = sys.executable or 'python'
  out = []
  for i, stage in enumerate(model.recipe):
    workdir, bundle = os.path.join(root, stage), os.path.join(root, f'{stage}.npz')
    train = [python, os.path.join(ROOT, 'train.py'), f'--config={os.path.join(ROOT, "configs", "release.py")}:{stage}',
             f'--workdir={workdir}']
    if release.previous_stage(stage):
      train.append(f'--config.train.init_from={os.path.join(root, release.previous_stage(stage) + ".npz")}')
    train += [f'--config.{override}' for override in overrides]
    export = [python, '-m', 's2k_jax.export', f'--workdir={workdir}', f'--out={bundle}']
    if i == len(model.recipe) - 1:
      export += [f'--step={model.export_step}'] * (model.export_step is not None)
      export += ['--raw_weights'] * model.raw_weights
    out.append((bundle, [shlex.join(train), shlex.join(export)]))
  return out


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  parser.add_argument('name', nargs='?', help='a shipped model (its file name without .npz)')
  parser.add_argument('--root', default=release.RELEASE_ROOT, help='where the stages train and export')
  parser.add_argument('--override', action='append', default=[], metavar='FIELD=VALUE',
                      help='a config field for every stage, e.g. data.tfds_data_dir=/data/tfds (repeatable)')
  parser.add_argument('--list', action='store_true', help='list the shipped models and their stages')
  parser.add_argument('--dry_run', action='store_true', help='print the commands, run nothing')
  args = parser.parse_args(argv)
  if args.list:
    for m in catalogue.SHIPPED:
      print(f'{m.name:32s} {" → ".join(m.recipe)}  ({m.summary})')
    return 0
  if not args.name:
    parser.error('name a shipped model (--list lists them).')
  try:
    model = catalogue.by_name(args.name)
  except ValueError as e:
    parser.error(str(e))
  for override in args.override:
    if '=' not in override or '.' not in override.partition('=')[0]:
      parser.error(f'--override {override!r}: write SECTION.FIELD=VALUE, e.g. data.tfds_data_dir=/data/tfds.')
  os.makedirs(args.root, exist_ok=True)
  for bundle, commands in stage_commands(model, args.root, args.override):
    if os.path.isfile(bundle) and not args.dry_run:
      print(f'{bundle} exists: stage done.', flush=True)
      continue
    for command in commands:
      print(command, flush=True)
      if not args.dry_run and subprocess.call(command, shell=True) != 0:
        print(f'Stopped: `{command}` failed; run this again to resume.', file=sys.stderr)
        return 1
  final = os.path.join(args.root, model.file)
  if not args.dry_run:
    if os.path.abspath(bundle) != os.path.abspath(final):
      shutil.copyfile(bundle, final)
    print(f'Wrote {final} (compare with s2k_jax/weights/{model.file}).')
  return 0


if __name__ == '__main__':
  sys.exit(main())
