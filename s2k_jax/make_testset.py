r"""Command line: generate a saved benchmark test set (`testsets.generate`, paper §4 / Table 1).

  python -m s2k_jax.make_testset --config=configs/gaussian.py --out=testsets/gaussian_x4 --seed=0
  python -m s2k_jax.make_testset --config=configs/disk.py --config.degradation.scale=2 \
      --config.data.source=folder --config.data.eval_dir=DIV2K_valid_HR --out=testsets/div2k_disk_x2
  # benchmark protocols on a folder of HR images (docs/benchmarks_sr.md):
  python -m s2k_jax.make_testset --protocol=gaussian8 --scale=4 --hr_dir=Set5 --out=testsets/set5_g8_x4
  python -m s2k_jax.make_testset --protocol=s2k --family=motion --scale=2 --hr_dir=BSD100 --out=testsets/bsd_motion_x2

The same arguments give byte-identical files (`s2k_jax/testsets.py` describes the layout); this module
is only its absl command line (docs/architecture.md, "Command lines").
"""
from collections.abc import Sequence

from absl import app
from absl import flags
from ml_collections import config_flags

from s2k_jax import data
from s2k_jax import runtime
from s2k_jax import testsets

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config (configs/<family>.py); or use --protocol.',
                                lock_config=True)
flags.DEFINE_string('out', None, 'Output folder of the test set.', required=True)
flags.DEFINE_string('protocol', None, f'A benchmark protocol, one of {testsets.PROTOCOLS}, on the HR images in '
                    '--hr_dir (instead of --config): gaussian8 = IKC\'s 8 isotropic Gaussians then bicubic ÷s; '
                    's2k = the paper\'s one random --family kernel per image, direct decimation.')
flags.DEFINE_string('hr_dir', None, 'With --protocol: the folder of HR images (e.g. Set5).')
flags.DEFINE_integer('scale', None, 'With --protocol: the scale factor (2, 3 or 4).')
flags.DEFINE_string('family', None, f'With --protocol=s2k: the kernel family, one of {testsets.S2K_FAMILIES}.')
flags.DEFINE_integer('seed', 0, 'Seed of the kernels and noise.')
flags.DEFINE_enum('split', 'eval', data.SPLITS, 'Which images of config.data to use.')
flags.DEFINE_integer('hr_crop', 0, 'Side of centred HR crops; 0 = whole images (modcropped).')
flags.DEFINE_integer('limit', 0, 'Use only the first N images (0 = all).')
flags.DEFINE_integer('copies', 1, 'Degrade each image this many times, each with its own kernel.')
flags.DEFINE_bool('overwrite', False, 'Replace an existing test set in --out.')


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  runtime.quiet_library_logs()
  if FLAGS.protocol is not None:
    manifest = runtime.exit_on_user_error(_protocol_set)
  else:
    if FLAGS.config is None:
      raise app.UsageError('give --config (a random-kernel test set of its family) or --protocol with --hr_dir '
                           'and --scale (a benchmark protocol).')
    for name in ('hr_dir', 'scale', 'family'):
      if FLAGS[name].present:
        raise app.UsageError(f'--{name} is read only with --protocol; with --config, set the images and scale in '
                             'the config (--config.data.eval_dir, --config.degradation.scale).')
    runtime.exit_on_user_error(lambda: testsets.check_overrides(config_flags.get_override_values(FLAGS['config'])))
    manifest = runtime.exit_on_user_error(lambda: testsets.generate(
        FLAGS.config, FLAGS.out, seed=FLAGS.seed, split=FLAGS.split, hr_crop=FLAGS.hr_crop,
        limit=FLAGS.limit, copies=FLAGS.copies, overwrite=FLAGS.overwrite))
  print(f'{len(manifest["images"])} images, {manifest["family"]} kernels, ×{manifest["scale"]} '
        f'→ {FLAGS.out}')


def _protocol_set():
  """--protocol: the flags a protocol fixes must not be given."""
  if FLAGS['config'].present:
    raise ValueError('--protocol fixes the kernels and the downsampler: leave --config out.')
  for name in ('split', 'hr_crop', 'copies'):
    if FLAGS[name].present:
      raise ValueError(f'--{name} has no effect with --protocol (whole images of --hr_dir, modcropped; '
                       'gaussian8 takes each image with each of its 8 kernels).')
  if not FLAGS.hr_dir or FLAGS.scale is None:
    raise ValueError('--protocol needs --hr_dir (a folder of HR images) and --scale (2, 3 or 4).')
  return testsets.generate_protocol(FLAGS.protocol, FLAGS.hr_dir, FLAGS.out, scale=FLAGS.scale,
                                    family=FLAGS.family, seed=FLAGS.seed, limit=FLAGS.limit,
                                    overwrite=FLAGS.overwrite)


if __name__ == '__main__':
  app.run(main)
