"""Which JAX backends to start: a host with libtpu installed but no TPU attached starts only the CPU.

JAX tries every backend it finds when JAX_PLATFORMS is unset. With libtpu installed (the test extra installs it, to
compile for TPU slices from any host), that means loading libtpu on a CPU-only machine too: about 1.7 s more per
start and error lines about TPU worker hostnames before falling back to the CPU. `skip_absent_tpu()` sets
JAX_PLATFORMS=cpu exactly when nothing else could be used: libtpu installed, no TPU chip on the PCI bus, no NVIDIA
GPU and no other JAX plugin (CUDA, ROCm) installed, and JAX_PLATFORMS not set by the user. Compiling for a TPU
topology (stilts_jax.aot) still works: it loads libtpu itself.
"""

from __future__ import annotations

import importlib.util
import os


def skip_absent_tpu() -> None:
    """Set JAX_PLATFORMS=cpu on a host where libtpu is installed but only the CPU can run (see the module doc)."""
    if "JAX_PLATFORMS" in os.environ or importlib.util.find_spec("libtpu") is None:
        return
    if importlib.util.find_spec("jax_plugins") is not None:  # a GPU plugin package: let JAX choose
        return
    import jax  # reads JAX_PLATFORMS now: the choice below goes to its config (and the environment, for children)

    try:
        from jax._src import hardware_utils
    except ImportError:  # another jax layout: keep JAX's own choice
        return
    if hardware_utils.num_available_tpu_chips_and_device_id()[0] == 0 and not hardware_utils.has_visible_nvidia_gpu():
        os.environ["JAX_PLATFORMS"] = "cpu"
        jax.config.update("jax_platforms", "cpu")
