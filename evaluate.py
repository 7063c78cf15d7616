r"""Evaluates a trained S2K estimator: kernel error against the mean-kernel baseline (paper Fig. 6, Eq. 13).

  # on a saved test set (python -m s2k_jax.testsets ...):
  python evaluate.py --workdir runs/motion_cpu --testset testsets/motion_x4 --out results/motion
  # or generate the test set from the estimator's own config (held-out images, fixed seed) first:
  python evaluate.py --workdir runs/motion_cpu --out results/motion --seed 0

Writes kernels.md, kernels.json, kernels_per_image.csv and kernels.png to --out.
"""
import os

from absl import app
from absl import flags
from absl import logging

from s2k_jax import estimator
from s2k_jax import evaluation
from s2k_jax import loop
from s2k_jax import testsets

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Training workdir (or checkpoints directory) of the estimator.')
flags.DEFINE_string('testset', None, 'A saved test set; default: generate one in <out>/testset.')
flags.DEFINE_string('out', None, 'Output directory for the report.')
flags.DEFINE_integer('seed', 0, 'Seed of a generated test set.')
flags.DEFINE_integer('limit', 0, 'Generate at most this many images (0 = the whole eval split).')
flags.DEFINE_integer('batch_size', 8, 'LR images per jitted batch.')
flags.DEFINE_enum('spectrum_mode', None, ['crop', 'welch'], 'Override the estimator\'s spectrum mode.')
flags.mark_flags_as_required(['workdir', 'out'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  loop.quiet_library_logs()
  est = estimator.load_estimator(FLAGS.workdir)
  testset_dir = FLAGS.testset
  if testset_dir is None:
    testset_dir = os.path.join(FLAGS.out, 'testset')
    if not os.path.exists(testset_dir):
      testsets.generate(est.config, testset_dir, seed=FLAGS.seed, limit=FLAGS.limit)
  testset = testsets.load(testset_dir)
  result = evaluation.evaluate_kernels(est, testset, FLAGS.batch_size, mode=FLAGS.spectrum_mode)
  summary = evaluation.write_report(result, est, testset, FLAGS.out)
  print(' | '.join(f'{k}: D_v {v:.5f}' for k, v in summary['D_v'].items()), f'→ {FLAGS.out}')


if __name__ == '__main__':
  app.run(main)
