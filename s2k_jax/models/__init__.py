"""Networks of S2K's kernel estimator (paper §3.3): U-Net generator and PatchGAN discriminator."""
from s2k_jax.models.layers import ConvTranspose4x4S2
from s2k_jax.models.layers import conv_transpose_4x4_s2
from s2k_jax.models.layers import kernel_from_torch_conv_transpose
from s2k_jax.models.patchgan import PatchDiscriminator
from s2k_jax.models.unet import make_generator
from s2k_jax.models.unet import UNet
