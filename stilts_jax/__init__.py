"""stilts-jax: English intermediate-task training for zero-shot cross-lingual transfer, in JAX/Flax."""

__version__ = "0.1.0"
