"""stilts-jax: English intermediate-task training for zero-shot cross-lingual transfer, in JAX/Flax."""

__version__ = "0.1.0"

from stilts_jax.core.platforms import skip_absent_tpu

skip_absent_tpu()  # before any backend starts: a CPU-only host with libtpu installed does not load it
