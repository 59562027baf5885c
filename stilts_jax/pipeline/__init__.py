"""The STILTs pipeline: intermediate task -> encoder hand-off -> English target task -> zero-shot evaluation."""

from stilts_jax.pipeline.retrieval import evaluate_retrieval, layer_table
from stilts_jax.pipeline.runner import Pipeline, run

__all__ = ["Pipeline", "evaluate_retrieval", "layer_table", "run"]
