r"""Command line: a training checkpoint → a compact model bundle (`modelio`: what inference reads).

  python -m s2k_jax.export --workdir runs/gaussian_cpu --out gaussian_estimator.npz
  python -m s2k_jax.export --workdir runs/sftmd_gaussian_x4_cpu --out sftmd_gaussian_x4.npz

A bundle holds only what inference needs (the generator with its BatchNorm statistics, or a restorer
with its kernel-code basis, plus the config) in one `.npz` read with `allow_pickle=False`; the format
is described in `s2k_jax/modelio.py`. The work is `tasks.export_bundle`; this module is only its
absl command line (docs/architecture.md, "Command lines").
"""
from collections.abc import Sequence
import os

from absl import app
from absl import flags

from s2k_jax import modelio
from s2k_jax import runtime
from s2k_jax import tasks

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Training workdir (or its checkpoints/) of an estimator or restorer.',
                    required=True)
flags.DEFINE_string('out', None, f'Bundle file to write (ends in {modelio.SUFFIX}).', required=True)
flags.DEFINE_integer('step', None, 'Checkpoint step to export (default: the latest).')
flags.DEFINE_enum('dtype', modelio.DEFAULT_DTYPE, list(modelio.FLOAT_DTYPES), 'Storage dtype of the parameters.')
flags.DEFINE_string('trained_on', '', 'Free text saved in the bundle: data, hardware, steps.')
flags.DEFINE_bool('raw_weights', False, "An estimator trained with train.ema_decay > 0: export the generator's "
                  'raw weights with their running BatchNorm statistics instead of the moving average (those are '
                  'what the same run without the average would have trained).')


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  runtime.quiet_library_logs()
  out = runtime.exit_on_user_error(lambda: tasks.export_bundle(
      FLAGS.workdir, FLAGS.out, step=FLAGS.step, dtype=FLAGS.dtype, trained_on=FLAGS.trained_on,
      raw_weights=FLAGS.raw_weights))
  print(f'Wrote {out} ({os.path.getsize(out) / 2**20:.1f} MiB)')


if __name__ == '__main__':
  app.run(main)
