"""s2k-jax: S2K blind super-resolution (Spectrum-to-Kernel translation, NeurIPS 2021) in JAX."""

__version__ = '0.1.0'
