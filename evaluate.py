r"""Evaluates trained models as the paper's Table 1 (blind SR) and Figure 6 (kernel estimation) do.

  # blind SR ×4 on held-out bundled photos: bicubic, restorer + mean / S2K / true kernel
  python evaluate.py --estimator runs/gaussian_cpu --restorer runs/sftmd_gaussian_x4_cpu --out results/g4
  # the estimator alone (kernel metrics only), on a saved test set (python -m s2k_jax.make_testset ...)
  python evaluate.py --estimator runs/motion_cpu --testset testsets/motion_x4 --out results/motion

Without --testset, a test set is generated once in <out>/testset from --config or else the models'
config (held-out images of its data source, its family and scale, --seed). Writes results.md,
results.json, results.csv, per_image.csv (row by row, as images
complete), sr_examples.png and kernel_errors.png to --out.

Several processes (`--distributed`, with --coordinator_address, --num_processes and --process_id where
the cluster is not detected; `PROGRAM=evaluate.py bash scripts/launch_local.sh N ...` on one machine)
evaluate together over all their devices; process 0 generates the test set and writes the report.
"""
import os
import signal
import types

from absl import app
from absl import flags
import jax
from jax.experimental import multihost_utils
from ml_collections import config_flags

from s2k_jax import estimator as estimator_lib
from s2k_jax import evaluation
from s2k_jax import runtime
from s2k_jax import tasks
from s2k_jax import testsets

FLAGS = flags.FLAGS
flags.DEFINE_string('estimator', None, 'Training workdir (or checkpoints dir) of an S2K estimator.')
flags.DEFINE_alias('workdir', 'estimator')
flags.DEFINE_multi_string('restorer', None, 'Training workdir (or checkpoints dir) or bundle of a restorer; '
                          'repeat it to compare restorers side by side (USRNet and SFTMD, or two bundles of one network, '
                          'then named by their file).')
flags.DEFINE_string('testset', None, 'A saved test set; default: generate one in <out>/testset.')
config_flags.DEFINE_config_file(
    'config', None, 'Config whose data source, family and scale generate the test set (default: the '
    'models\' own config), e.g. configs/gaussian.py --config.data.source=folder --config.data.eval_dir=DIR.')
flags.DEFINE_string('out', None, 'Output directory for the report.')
flags.DEFINE_integer('seed', 0, 'Seed of a generated test set.')
flags.DEFINE_integer('limit', 0, 'Generate at most this many images (0 = the whole eval split).')
flags.DEFINE_integer('copies', 1, 'Degrade each image of a generated test set this many times, each with '
                     'its own kernel.')
flags.DEFINE_integer('hr_crop', 0, 'Generate centred HR crops of this side (0 = whole images).')
flags.DEFINE_integer('batch_size', 8, 'LR images per jitted batch.')
flags.DEFINE_enum('spectrum_mode', None, ['crop', 'welch'],
                  'Spectrum of the LR images for the estimator (default: the mode it was trained with).')
flags.DEFINE_enum('noise', None, evaluation.NOISE_MODES,
                  'The noise σ restorers are told: the test set\'s true one, or estimated from each LR image '
                  'as s2k-sr does (blind in the noise too). Default: the one they were trained told '
                  '(restorer.told_noise; \'true\' for all but USRNets trained told the estimate).')
flags.DEFINE_bool('distributed', False, 'Evaluate with several processes (docs/multihost.md).')
flags.DEFINE_string('coordinator_address', '', 'With --distributed: HOST:PORT of process 0 (unset: detected).')
flags.DEFINE_integer('num_processes', 0, 'With --distributed: the number of processes (0: detected).')
flags.DEFINE_integer('process_id', -1, 'With --distributed: this process, in [0, N) (-1: detected).')
flags.mark_flags_as_required(['out'])
GENERATION_FLAGS = ('config', 'seed', 'limit', 'copies', 'hr_crop')  # read only to generate a test set
CLUSTER_FLAGS = ('distributed', 'coordinator_address', 'num_processes', 'process_id')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  runtime.quiet_library_logs()
  if not (FLAGS.estimator or FLAGS.restorer):
    raise app.UsageError('give --estimator, --restorer or both.')
  cluster = types.SimpleNamespace(**{name: FLAGS[name].value for name in CLUSTER_FLAGS})
  runtime.exit_on_user_error(lambda: runtime.maybe_initialize_distributed(cluster, prefix='--'))
  if jax.process_count() > 1:
    # JAX's preemption notifier would turn SIGTERM into a flag that evaluation never reads: stop.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
  runtime.exit_on_user_error(evaluate_and_report)


def testset_config(est, rests):
  """The config a generated test set is drawn from: the estimator's, else a single-scale restorer's."""
  if est is not None:
    return est.config
  for rest in rests:
    if rest.scale is not None and rest.family != 'mixed':
      return rest.config
  raise ValueError(f'{rests[0].directory} restores {", ".join(f"×{s}" for s in rests[0].scales)} and '
                   f'{", ".join(rests[0].families)} kernels: say which test set to make, e.g. --config '
                   'configs/gaussian.py:cpu --config.degradation.scale=2, or pass --testset.')


def evaluate_and_report():
  """Loads the models, generates or loads the test set, evaluates and writes the report."""
  generation = [name for name in GENERATION_FLAGS if FLAGS[name].present]
  if FLAGS.testset is not None and generation:
    raise ValueError(f'--{", --".join(generation)} set how a test set is generated, and --testset '
                     f'{FLAGS.testset} is an existing one: leave them out, or leave --testset out.')
  if FLAGS.config is not None:
    testsets.check_overrides(config_flags.get_override_values(FLAGS['config']))
  testset_dir = FLAGS.testset or os.path.join(FLAGS.out, 'testset')
  reuse = os.path.exists(testset_dir)
  several = jax.process_count() > 1
  if several:  # every process has looked before process 0 may make it
    multihost_utils.sync_global_devices('evaluate.py: test set looked up')
  if FLAGS.testset is None and reuse and generation:
    raise ValueError(f'{testset_dir} already holds the test set of an earlier run, so --'
                     f'{", --".join(generation)} would have no effect: pass another --out, or delete '
                     f'{testset_dir} to generate it again.')
  est = estimator_lib.load(FLAGS.estimator) if FLAGS.estimator else None
  rests = evaluation.distinct_names([tasks.load_restorer(r) for r in FLAGS.restorer or []])
  if not reuse and FLAGS.testset is None:
    # The estimator's or the (single-scale) restorer's config fixes family and scale (checked on every
    # process, so that a missing one stops them all); process 0 writes the set.
    config = FLAGS.config if FLAGS.config is not None else testset_config(est, rests)
    if jax.process_index() == 0:
      testsets.generate(config, testset_dir, seed=FLAGS.seed, limit=FLAGS.limit, hr_crop=FLAGS.hr_crop,
                        copies=FLAGS.copies)
  if several:
    multihost_utils.sync_global_devices('evaluate.py: test set ready')
  testset = testsets.load(testset_dir)
  result = evaluation.evaluate(testset, FLAGS.out, est, rests, FLAGS.batch_size, FLAGS.spectrum_mode,
                               FLAGS.noise)
  summary = evaluation.summarize(result, testset, est, rests)
  evaluation.write_report(result, summary, FLAGS.out)
  if jax.process_index() == 0:
    with open(os.path.join(FLAGS.out, 'results.md')) as f:
      print(f.read())


if __name__ == '__main__':
  app.run(main)
