"""Retrieval through the main command: the intermediate encoder (or the pretrained one) on Tatoeba and BUCC files."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import matplotlib.image
import numpy as np
import pytest

from stilts_jax import main as main_module
from stilts_jax.core.tokenization import load_tokenizer
from stilts_jax.data.retrieval import read_bucc, read_tatoeba
from stilts_jax.evaluation.embedding import SentenceEncoder
from stilts_jax.models.hf_weights import load_pretrained
from stilts_jax.tasks.retrieval import RetrievalEvaluator

FIXTURES = Path(__file__).parent / "fixtures" / "retrieval"


def test_tatoeba_accuracy_matches_a_direct_computation(xlmr_dir):
    encoder, _ = load_pretrained(xlmr_dir)
    sentence_encoder = SentenceEncoder(encoder, load_tokenizer(xlmr_dir), layer=[1, 3])
    data = read_tatoeba(FIXTURES / "tatoeba_laser", "de")
    result = RetrievalEvaluator(sentence_encoder, [1, 3], 3).tatoeba(data)
    embedded = sentence_encoder.encode(data.queries), sentence_encoder.encode(data.candidates)
    for position, layer in enumerate([1, 3]):
        q = embedded[0][:, position] / np.linalg.norm(embedded[0][:, position], axis=1, keepdims=True)
        c = embedded[1][:, position] / np.linalg.norm(embedded[1][:, position], axis=1, keepdims=True)
        forward = np.argmax(q @ c.T, axis=1)
        assert result.scores[layer]["accuracy"] == pytest.approx(100.0 * np.mean(forward == np.array(data.gold)))
        if layer == 3:
            assert result.predictions == forward.tolist()


def test_main_runs_tatoeba_and_bucc_with_a_per_layer_table(xlmr_dir, tmp_path, capsys):
    common = [
        "--config=configs/stilts.py:intermediate=none,target=tatoeba",
        f"--config.model.name={xlmr_dir}",
        "--config.model.dtype=float32",
        "--config.target.source.kind=xtreme",
    ]
    tatoeba = tmp_path / "tatoeba"
    assert (
        main_module.main(
            [
                *common,
                f"--config.workdir={tatoeba}",
                f"--config.target.source.path={FIXTURES / 'tatoeba_xtreme'}",
                f"--config.target.source.labels={FIXTURES / 'tatoeba_xtreme' / 'labels'}",
                "--config.evaluation.languages=['de','fr']",
                "--config.evaluation.all_layers=true",
            ]
        )
        == 0
    )
    results = json.loads((tatoeba / "results.json").read_text())
    assert set(results["per_language"]) == {"de", "fr"} and results["layer"] == 3
    assert set(results["per_layer"]) == {"0", "1", "2", "3"}
    assert "accuracy per layer" in (tatoeba / "results.md").read_text()
    figure = matplotlib.image.imread(tatoeba / "tatoeba_layers.png")  # beside results.md: a curve per language
    assert figure.ndim == 3 and figure.shape[1] > 800 and (figure[..., :3] < 0.9).any(axis=-1).mean() > 0.02
    predictions = (tatoeba / "predictions" / "tatoeba" / "test-de.tsv").read_text().split()
    assert len(predictions) == len(read_tatoeba(FIXTURES / "tatoeba_xtreme", "de").queries)

    bucc = tmp_path / "bucc"
    assert (
        main_module.main(
            [
                *common,
                "--config.target.task=bucc",
                f"--config.workdir={bucc}",
                f"--config.target.source.path={FIXTURES / 'bucc_original'}",
                "--config.evaluation.languages=['de']",
            ]
        )
        == 0
    )
    row = json.loads((bucc / "results.json").read_text())["per_language"]["de"]
    assert not list(bucc.glob("*_layers.png"))  # no all_layers: no per-layer figure
    assert {"threshold", "dev_f1", "precision", "recall", "f1"} <= set(row)
    lines = (bucc / "predictions" / "bucc2018" / "test-de.tsv").read_text().splitlines()
    test = read_bucc(FIXTURES / "bucc_original", "de", "training")
    assert all(line.split("\t")[0] in test.src_ids and line.split("\t")[1] in test.en_ids for line in lines)

    header = json.loads((bucc / "results.json").read_text())["protocol"]
    assert header["split"] == "test" and "dev (sample) split" in header["bucc_threshold"]
    assert "dev (sample) split" in (bucc / "results.md").read_text()

    # jiant's oracle rule tunes on the scored split itself: never below the transferred threshold's F1, and its
    # tuning F1 is the test F1.
    oracle = tmp_path / "bucc-oracle"
    assert (
        main_module.main(
            [
                *common,
                "--config.target.task=bucc",
                f"--config.workdir={oracle}",
                f"--config.target.source.path={FIXTURES / 'bucc_original'}",
                "--config.evaluation.languages=['de']",
                "--config.evaluation.bucc_threshold=oracle",
            ]
        )
        == 0
    )
    oracle_results = json.loads((oracle / "results.json").read_text())
    oracle_row = oracle_results["per_language"]["de"]
    assert oracle_row["f1"] >= row["f1"] and oracle_row["oracle_f1"] == pytest.approx(oracle_row["f1"])
    assert "oracle" in oracle_results["protocol"]["bucc_threshold"]

    # The fused search kernel (Pallas, interpret mode on CPU) mines the same pairs with the same margins.
    fused = tmp_path / "bucc-fused"
    assert (
        main_module.main(
            [
                *common,
                "--config.target.task=bucc",
                f"--config.workdir={fused}",
                f"--config.target.source.path={FIXTURES / 'bucc_original'}",
                "--config.evaluation.languages=['de']",
                "--config.evaluation.search_kernel=fused",
            ]
        )
        == 0
    )
    fused_row = json.loads((fused / "results.json").read_text())["per_language"]["de"]
    assert fused_row == pytest.approx(row, rel=1e-5)
    assert (fused / "predictions" / "bucc2018" / "test-de.tsv").read_text().splitlines() == lines and lines


def test_search_options_come_from_the_evaluation_config():
    from configs import base
    from stilts_jax.pipeline.common import search_options

    config = base.get_config(intermediate="none", target="bucc")
    assert search_options(config.evaluation) == {"kernel": "xla", "dtype": "float32"}
    config.evaluation.search_kernel, config.evaluation.search_dtype = "fused", "bfloat16"
    assert search_options(config.evaluation) == {"kernel": "fused", "dtype": "bfloat16"}


def test_retrieval_embeds_on_the_runs_mesh_and_rules(xlmr_dir, tmp_path, monkeypatch):
    """The encoder's parameters are laid out by config.mesh and config.logical_rules, as in every other phase:
    sharded over fsdp and tensor, the scores and predictions are those of the data-parallel run."""
    from stilts_jax.pipeline import retrieval as retrieval_pipeline

    built = []

    class Recorded(SentenceEncoder):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(retrieval_pipeline, "SentenceEncoder", Recorded)
    common = [
        "--config=configs/stilts.py:intermediate=none,target=tatoeba",
        f"--config.model.name={xlmr_dir}",
        "--config.model.dtype=float32",
        "--config.target.source.kind=xtreme",
        f"--config.target.source.path={FIXTURES / 'tatoeba_xtreme'}",
        f"--config.target.source.labels={FIXTURES / 'tatoeba_xtreme' / 'labels'}",
        "--config.evaluation.languages=['de']",
        "--config.evaluation.all_layers=true",
    ]
    runs = {"data": tmp_path / "data", "sharded": tmp_path / "sharded"}
    assert main_module.main([*common, f"--config.workdir={runs['data']}"]) == 0
    assert (
        main_module.main(
            [*common, f"--config.workdir={runs['sharded']}", "--config.mesh.fsdp=2", "--config.mesh.tensor=2"]
        )
        == 0
    )
    assert [dict(e.mesh.shape) for e in built] == [
        {"data": 8, "fsdp": 1, "tensor": 1},
        {"data": 2, "fsdp": 2, "tensor": 2},
    ]
    specs = {str(leaf.sharding.spec) for leaf in jax.tree.leaves(built[1].params)}
    assert any("tensor" in spec for spec in specs) and any("fsdp" in spec for spec in specs)
    results = {name: json.loads((path / "results.json").read_text()) for name, path in runs.items()}
    assert results["sharded"]["per_layer"] == results["data"]["per_layer"]  # accuracies: counts of equal neighbours
    predictions = [(path / "predictions" / "tatoeba" / "test-de.tsv").read_text() for path in runs.values()]
    assert predictions[0] == predictions[1] and predictions[0]
