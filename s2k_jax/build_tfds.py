r"""Command line: image folders → the fast array_record dataset `s2k_images` (`tfds_builder.build`).

  python -m s2k_jax.build_tfds --train_dir=DIV2K_train_HR --eval_dir=DIV2K_valid_HR \
      --data_dir=~/tensorflow_datasets/div2k_s2k
  python train.py ... --config.data.source=tfds --config.data.tfds_data_dir=~/tensorflow_datasets/div2k_s2k

Needs the `tfds` extra (`pip install 's2k-jax[tfds]'`, no TensorFlow). This module is only the absl
command line (docs/architecture.md, "Command lines"); the builder lives in `s2k_jax/tfds_builder.py`.
"""
from collections.abc import Sequence
import os

from absl import app
from absl import flags

from s2k_jax import runtime
from s2k_jax import tfds_builder

FLAGS = flags.FLAGS
flags.DEFINE_string('train_dir', None, 'Folder of training images (searched recursively).', required=True)
flags.DEFINE_string('eval_dir', None, 'Folder of validation images (optional).')
flags.DEFINE_string('data_dir', None, 'tfds data_dir to write the dataset into.', required=True)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  runtime.quiet_library_logs()
  builder = runtime.exit_on_user_error(lambda: tfds_builder.build(FLAGS.train_dir, FLAGS.data_dir, FLAGS.eval_dir))
  print(f'{tfds_builder.NAME} ready in {builder.data_dir}: ' +
        ', '.join(f'{k} = {v.num_examples} images' for k, v in builder.info.splits.items()))
  print('Train with --config.data.source=tfds '
        f'--config.data.tfds_data_dir={os.path.expanduser(FLAGS.data_dir)}')


if __name__ == '__main__':
  app.run(main)
