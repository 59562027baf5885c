"""Test set-up: 8 fake CPU devices for sharding tests, no network, shared tiny Hugging Face models."""

import os

# Must happen before JAX initialises its backend.
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import tempfile
from pathlib import Path

import jax
import pytest

# Many tests compile the same tiny train step; a persistent cache shared by the session compiles it once.
jax.config.update(
    "jax_compilation_cache_dir", os.environ.get("STILTS_TEST_JAX_CACHE", tempfile.mkdtemp(prefix="stilts-jax-cache-"))
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

from tests import hf_reference  # noqa: E402


@pytest.fixture(scope="session")
def xlmr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random XLMRobertaModel saved by transformers, with the shipped tokenizer."""
    return hf_reference.save_reference_model("xlm-roberta", tmp_path_factory.mktemp("xlmr"))


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random BertModel (mBERT-shaped: token types, positions from 0, eps 1e-12) saved by transformers."""
    return hf_reference.save_reference_model("bert", tmp_path_factory.mktemp("bert"))
