r"""Command line: generate a saved benchmark test set (`testsets.generate`, paper §4 / Table 1).

  python -m s2k_jax.make_testset --config=configs/gaussian.py --out=testsets/gaussian_x4 --seed=0
  python -m s2k_jax.make_testset --config=configs/disk.py --config.degradation.scale=2 \
      --config.data.source=folder --config.data.eval_dir=DIV2K_valid_HR --out=testsets/div2k_disk_x2

The same arguments give byte-identical files (`s2k_jax/testsets.py` describes the layout); this module
is only its absl command line (docs/architecture.md, "Command lines").
"""
from collections.abc import Sequence

from absl import app
from absl import flags
from ml_collections import config_flags

from s2k_jax import data
from s2k_jax import loop
from s2k_jax import testsets

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config (configs/<family>.py).', lock_config=True)
flags.mark_flag_as_required('config')
flags.DEFINE_string('out', None, 'Output folder of the test set.', required=True)
flags.DEFINE_integer('seed', 0, 'Seed of the kernels and noise.')
flags.DEFINE_enum('split', 'eval', data.SPLITS, 'Which images of config.data to use.')
flags.DEFINE_integer('hr_crop', 0, 'Side of centred HR crops; 0 = whole images (modcropped).')
flags.DEFINE_integer('limit', 0, 'Use only the first N images (0 = all).')
flags.DEFINE_integer('copies', 1, 'Degrade each image this many times, each with its own kernel.')
flags.DEFINE_bool('overwrite', False, 'Replace an existing test set in --out.')


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  loop.quiet_library_logs()
  loop.exit_on_user_error(lambda: testsets.check_overrides(config_flags.get_override_values(FLAGS['config'])))
  manifest = loop.exit_on_user_error(lambda: testsets.generate(
      FLAGS.config, FLAGS.out, seed=FLAGS.seed, split=FLAGS.split, hr_crop=FLAGS.hr_crop,
      limit=FLAGS.limit, copies=FLAGS.copies, overwrite=FLAGS.overwrite))
  print(f'{len(manifest["images"])} images, {manifest["family"]} kernels, ×{manifest["scale"]} '
        f'→ {FLAGS.out}')


if __name__ == '__main__':
  app.run(main)
