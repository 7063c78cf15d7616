r"""Command line: a USRNet bundle → the same restorer with a wider prior, to fine-tune as a larger model.

  python -m s2k_jax.widen --bundle s2k_jax/weights/usrnet_mixed.npz --features 32,64,128,256 --out wide.npz
  python train.py --config configs/usrnet.py:mixed,cpu --config.restorer.features='(32, 64, 128, 256)' \
      --config.train.init_from=wide.npz --workdir runs/usrnet_wide ...

The widened network computes what the bundle's did (new channels feed old ones through zero weights,
`models/usrnet.py`, `widen_prior`), so fine-tuning starts where the smaller model ended instead of from
scratch. The work is `restorers.usrnet.widen_bundle`; this module is only its absl command line.
"""
from collections.abc import Sequence
import os

from absl import app
from absl import flags

from s2k_jax import modelio
from s2k_jax import runtime
from s2k_jax.restorers import usrnet

FLAGS = flags.FLAGS
flags.DEFINE_string('bundle', None, 'USRNet bundle to widen (e.g. s2k_jax/weights/usrnet_mixed.npz).', required=True)
flags.DEFINE_list('features', None, 'New prior widths, one per level, each at least the old one: 32,64,128,256.',
                  required=True)
flags.DEFINE_string('out', None, f'Bundle file to write (ends in {modelio.SUFFIX}).', required=True)
flags.DEFINE_integer('seed', 0, 'Seed of the new channels\' initial weights.')


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  runtime.quiet_library_logs()

  def widen():
    try:
      features = tuple(int(f) for f in FLAGS.features)
    except ValueError as e:
      raise ValueError(f'--features must be whole numbers separated by commas, got {FLAGS.features}.') from e
    return usrnet.widen_bundle(FLAGS.bundle, FLAGS.out, features, FLAGS.seed)

  out = runtime.exit_on_user_error(widen)
  print(f'Wrote {out} ({os.path.getsize(out) / 2**20:.1f} MiB)')


if __name__ == '__main__':
  app.run(main)
