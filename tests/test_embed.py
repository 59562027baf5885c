"""The sentence-embeddings CLI against mean-pooled PyTorch hidden states, and its errors; the SentenceEmbedder module
run by the evaluation Predictor on any mesh."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch

from stilts_jax import embed
from stilts_jax.core.distributed import DEFAULT_LOGICAL_RULES, make_mesh
from stilts_jax.core.errors import InputError
from stilts_jax.core.tokenization import SHIPPED_TEXT_DIR, load_tokenizer
from stilts_jax.evaluation import embedding
from stilts_jax.evaluation.embedding import SentenceEmbedder, SentenceEncoder, bucket_length, default_retrieval_layer
from stilts_jax.evaluation.predictor import Predictor
from stilts_jax.models.hf_weights import load_pretrained
from stilts_jax.train.state import ModelSpec
from tests.hf_reference import load_reference_model


def _sentences() -> list[str]:
    lines = []
    for lang in ("en", "ru", "ar", "hi", "zh", "th", "ko", "sw"):
        lines += (SHIPPED_TEXT_DIR / f"parallel.{lang}.txt").read_text(encoding="utf-8").splitlines()[:6]
    return lines + ["", "a"]  # an empty line is a sentence too: just <s></s>


def _pytorch_embeddings(folder, sentences, layer):
    tokenizer = load_tokenizer(folder)
    model = load_reference_model(folder)
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states[layer]
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return ((hidden * mask).sum(1) / mask.sum(1)).numpy()


@pytest.mark.parametrize("layer", [0, 2, 3])
def test_cli_matches_mean_pooled_pytorch_hidden_states(xlmr_dir, tmp_path, layer):
    sentences = _sentences()
    (tmp_path / "in.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    out = tmp_path / "emb.npy"
    code = embed.main(
        [
            "--model",
            str(xlmr_dir),
            "--input",
            str(tmp_path / "in.txt"),
            "--output",
            str(out),
            "--layer",
            str(layer),
            "--batch-size",
            "8",
            "--no-progress",
        ]
    )
    assert code == 0
    ours = np.load(out)
    assert ours.dtype == np.float32 and ours.shape == (len(sentences), 48)
    theirs = _pytorch_embeddings(xlmr_dir, sentences, layer)
    assert np.max(np.abs(ours - theirs)) < 1e-5


def test_devices_and_batch_sizes_do_not_change_the_result(xlmr_dir):
    encoder, _ = load_pretrained(xlmr_dir)
    tokenizer = load_tokenizer(xlmr_dir)
    sentences = _sentences()
    one = SentenceEncoder(encoder, tokenizer, layer=2, batch_size=5, devices=jax.devices()[:1]).encode(sentences)
    eight = SentenceEncoder(encoder, tokenizer, layer=2, batch_size=16, devices=jax.devices()[:8]).encode(sentences)
    assert len(jax.devices()) == 8
    np.testing.assert_allclose(one, eight, atol=1e-6)


def test_cls_pooling_is_the_first_token(xlmr_dir):
    encoder, _ = load_pretrained(xlmr_dir)
    tokenizer = load_tokenizer(xlmr_dir)
    sentences = _sentences()[:4]
    ours = SentenceEncoder(encoder, tokenizer, layer=3, pooling="cls").encode(sentences)
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        theirs = load_reference_model(xlmr_dir)(**batch).last_hidden_state[:, 0].numpy()
    assert np.max(np.abs(ours - theirs)) < 1e-5


def test_bad_input_gets_a_clear_error(xlmr_dir, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    args = ["--model", str(xlmr_dir), "--output", str(tmp_path / "out.npy"), "--no-progress"]
    assert embed.main([*args, "--input", str(empty)]) == 2
    assert "is empty: expected one sentence per line" in capsys.readouterr().err

    good = tmp_path / "in.txt"
    good.write_text("hello\n")
    assert embed.main([*args, "--input", str(good), "--layer", "4"]) == 2
    assert (
        "layer 4 is out of range: the model has 3 layers, so valid indices are 0 (embeddings output) to 3"
        in capsys.readouterr().err
    )

    assert embed.main([*args, "--input", str(tmp_path / "missing.txt")]) == 2
    assert "does not exist" in capsys.readouterr().err

    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((xlmr_dir / "config.json").read_text())
    assert embed.main(["--model", str(no_weights), "--input", str(good), "--output", str(tmp_path / "o.npy")]) == 2
    assert "no weights in" in capsys.readouterr().err
    assert not (tmp_path / "out.npy").exists() and not (tmp_path / "o.npy").exists()


def test_one_embedding_per_line_whatever_the_line_holds(xlmr_dir, tmp_path):
    # U+2028, U+0085 and form feeds are characters inside a line, not line breaks: 4 lines, 4 embeddings.
    lines = ["a\u2028b", "c\x85d", "\x0ce", "f"]
    (tmp_path / "in.txt").write_bytes(("\n".join(lines[:3]) + "\r\n" + lines[3] + "\n").encode("utf-8"))
    out = tmp_path / "emb.npy"
    assert (
        embed.main(
            [
                "--model",
                str(xlmr_dir),
                "--input",
                str(tmp_path / "in.txt"),
                "--output",
                str(out),
                "--layer",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    encoder, _ = load_pretrained(xlmr_dir)
    expected = SentenceEncoder(encoder, load_tokenizer(xlmr_dir), layer=1).encode(lines)
    np.testing.assert_allclose(np.load(out), expected, atol=1e-6)


@pytest.mark.parametrize("flag, value", [("--batch-size", "0"), ("--batch-size", "-4"), ("--max-length", "1")])
def test_bad_numbers_are_one_line_errors_naming_the_flag(xlmr_dir, tmp_path, capsys, flag, value):
    (tmp_path / "in.txt").write_text("hello\n", encoding="utf-8")
    args = [
        "--model",
        str(xlmr_dir),
        "--input",
        str(tmp_path / "in.txt"),
        "--output",
        str(tmp_path / "o.npy"),
        "--no-progress",
        flag,
        value,
    ]
    assert embed.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {flag} must be") and err.count("\n") == 1 and not (tmp_path / "o.npy").exists()


def test_input_that_is_not_utf8_names_the_file_and_line(xlmr_dir, tmp_path, capsys):
    (tmp_path / "in.txt").write_bytes("one\ntwo\ncaf\u00e9\n".encode("latin-1"))
    assert (
        embed.main(
            [
                "--model",
                str(xlmr_dir),
                "--input",
                str(tmp_path / "in.txt"),
                "--output",
                str(tmp_path / "o.npy"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert f"{tmp_path / 'in.txt'} line 3: not UTF-8 text" in capsys.readouterr().err


def test_length_buckets_and_default_layers():
    assert [bucket_length(n, 512) for n in (1, 16, 17, 100, 300, 600)] == [16, 16, 32, 128, 512, 512]
    assert bucket_length(70, 66) == 66
    assert default_retrieval_layer(24) == 14 and default_retrieval_layer(12) == 8 and default_retrieval_layer(2) == 2


def test_every_layer_in_one_pass_equals_one_layer_at_a_time(xlmr_dir):
    encoder, _ = load_pretrained(xlmr_dir)
    tokenizer = load_tokenizer(xlmr_dir)
    sentences = _sentences()[:12]
    together = SentenceEncoder(encoder, tokenizer, layer=[0, 1, 2, 3], batch_size=8).encode(sentences)
    assert together.shape == (12, 4, 48)
    for layer in range(4):
        alone = SentenceEncoder(encoder, tokenizer, layer=layer, batch_size=8).encode(sentences)
        np.testing.assert_allclose(together[:, layer], alone, atol=1e-6)


def test_the_runs_mesh_shards_the_parameters_and_gives_the_same_embeddings(xlmr_dir):
    """One engine: the sentence embedder runs through the Predictor on whatever mesh and rules it is given."""
    encoder, _ = load_pretrained(xlmr_dir)
    tokenizer = load_tokenizer(xlmr_dir)
    sentences = _sentences()
    replicated = SentenceEncoder(encoder, tokenizer, layer=[1, 3], batch_size=8).encode(sentences)
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    sharded = SentenceEncoder(encoder, tokenizer, layer=[1, 3], batch_size=8, mesh=mesh, rules=DEFAULT_LOGICAL_RULES)
    specs = [leaf.sharding.spec for leaf in jax.tree.leaves(sharded.params)]
    assert any("tensor" in jax.tree.leaves(tuple(spec)) for spec in specs)  # not replicated: Megatron-style splits
    assert any("fsdp" in jax.tree.leaves(tuple(spec)) for spec in specs)
    assert sharded.predictor.mesh is mesh and sharded.batch_size == 8
    np.testing.assert_allclose(sharded.encode(sentences), replicated, atol=1e-5)


def test_sentence_embedder_is_a_predictor_model(xlmr_dir):
    """The module alone, with the Predictor every task evaluates with: the pooled hidden states of PyTorch."""
    encoder, _ = load_pretrained(xlmr_dir)
    tokenizer = load_tokenizer(xlmr_dir)
    sentences = _sentences()
    model = SentenceEmbedder(encoder, 2)
    mesh = make_mesh({"data": -1})
    spec = ModelSpec(model, mesh, DEFAULT_LOGICAL_RULES)
    predictor = Predictor(spec, mesh, DEFAULT_LOGICAL_RULES, batch_size=8)
    batch = tokenizer(sentences, padding="max_length", max_length=64, return_tensors="np")
    arrays = {name: batch[name].astype(np.int32) for name in ("input_ids", "attention_mask")}
    ours = predictor.predict(spec.initial_params(), arrays, progress=False)
    assert ours.dtype == np.float32 and ours.shape == (len(sentences), 48)
    np.testing.assert_allclose(ours, _pytorch_embeddings(xlmr_dir, sentences, 2), atol=1e-5)
    with pytest.raises(InputError, match="no layer to embed"):
        SentenceEmbedder(encoder, [])
    with pytest.raises(InputError, match="unknown pooling"):
        SentenceEmbedder(encoder, 1, "max")


def test_long_inputs_are_fed_in_chunks_of_the_same_batches(xlmr_dir, monkeypatch):
    encoder, _ = load_pretrained(xlmr_dir)
    tokenizer = load_tokenizer(xlmr_dir)
    sentences = _sentences()
    whole = SentenceEncoder(encoder, tokenizer, layer=3, batch_size=8).encode(sentences)
    calls = []
    monkeypatch.setattr(embedding, "_CHUNK_ROWS", 12)  # rounded up to whole batches: 16 rows a call
    chunked = SentenceEncoder(encoder, tokenizer, layer=3, batch_size=8)
    predict = chunked.predictor.predict
    monkeypatch.setattr(
        chunked.predictor, "predict", lambda params, arrays, **kw: calls.append(arrays) or predict(params, arrays, **kw)
    )
    np.testing.assert_allclose(chunked.encode(sentences), whole, atol=1e-6)
    assert [len(a["input_ids"]) for a in calls] == [16, 16, 16, 2]
    widths = [a["input_ids"].shape[1] for a in calls]
    assert widths == sorted(widths) and all(w == bucket_length(w, 512) for w in widths)  # powers of two
