r"""How much a USRNet bundle trusts its data step on noise-free LR (docs/results.md §4, "Why the window
was small").

  PYTHONPATH=. python scripts/probe_usrnet_alpha.py [BUNDLE] [--factors 1,0.3,0.1,0.03] [--crop 192]

Eight crops (192² unless --crop) of the two held-out photos, Gaussian kernels of the `:cpu` range (seed 7), 8-bit LR
without noise, σ = 0 given. For each factor f, every round's data-step weight α (models/usrnet.py,
USRNet Eq. 7: larger α = closer to the prior's estimate) is multiplied by f at inference, and the script
prints PSNR (Y, border of the scale cropped) with the true and with the family-mean kernel at ×4 and ×2,
and the hyper-network's α at σ = 0. A window (true − mean) that grows as f falls means the bundle's α is
larger than noise-free LR calls for.
"""
import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np
import skimage.data

from configs import common
from s2k_jax import data
from s2k_jax import degradation
from s2k_jax import images
from s2k_jax import kernels
from s2k_jax import metrics
from s2k_jax import modelio
from s2k_jax.models import usrnet as usrnet_model
from s2k_jax.restorers import usrnet as usrnet_restorer


def held_out_crops(crop: int) -> jnp.ndarray:
  crops = []
  for name in data.BUNDLED_EVAL:  # never trained on
    image = images.to_uint8(images.read_image(os.path.join(skimage.data.data_dir, name))) / np.float32(255)
    h, w = image.shape[:2]
    for r, c in ((0, 0), (h - crop, w - crop), (h // 2 - crop // 2, w // 2 - crop // 2), (0, w - crop)):
      crops.append(image[r:r + crop, c:c + crop])
  return jnp.asarray(np.stack(crops))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('bundle', nargs='?', default=modelio.pretrained_restorer('gaussian', 4, 'usrnet'))
  parser.add_argument('--factors', default='1,0.3,0.1,0.03')
  parser.add_argument('--crop', type=int, default=192, help='HR crop side, a multiple of 4')
  args = parser.parse_args()
  rest = usrnet_restorer.load(args.bundle)
  hr = held_out_crops(args.crop)
  config = common.get_estimator_config('gaussian').degradation
  config.noise_max, config.quantize = 0.0, True
  sigma = jnp.zeros((hr.shape[0],))
  data_step = usrnet_model.data_step
  for scale in (4, 2):
    alphas, _ = usrnet_model.HyperNet(rest.config.restorer.iterations, rest.config.restorer.hyper_features).apply(
        {'params': rest.state.params[usrnet_restorer.HYPER_NET]}, sigma[:1], scale)
    print(f'×{scale}: α per round at σ = 0: {np.round(np.asarray(alphas[0]), 4).tolist()}')
    config.scale = scale
    true = kernels.sample_kernels(jax.random.PRNGKey(7), hr.shape[0], config)
    lr = degradation.degrade_with_kernels(hr, true, jax.random.PRNGKey(1), config)['lr']
    mean = jnp.broadcast_to(jnp.asarray(kernels.mean_kernel(config)), true.shape)
    for factor in (float(f) for f in args.factors.split(',')):
      # The data step is looked up at call time, so scaling its α here changes nothing else.
      usrnet_model.data_step = lambda z, fb, fbfy, alpha, s, f=factor: data_step(z, fb, fbfy, alpha * f, s)
      try:
        scores = {}
        for name, k in (('true', true), ('mean', mean)):
          sr = rest.state.apply_fn({'params': rest.state.params}, lr, k, sigma, scale)
          scores[name] = float(jnp.mean(metrics.psnr(sr, hr, crop_border=scale)))
      finally:
        usrnet_model.data_step = data_step
      print(f'×{scale} α·{factor:g}: true kernel {scores["true"]:.2f} dB, mean kernel {scores["mean"]:.2f} dB, '
            f'window {scores["true"] - scores["mean"]:+.2f} dB', flush=True)


if __name__ == '__main__':
  main()
