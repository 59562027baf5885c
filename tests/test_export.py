"""A fine-tuned model with its task head as a transformers folder: loaded with no missing or unexpected weights, and
the same logits as the project's model (transformers' PyTorch classes are the reference); imported back strictly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
import torch
from flax import nnx
from transformers import (
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from stilts_jax import export as export_module
from stilts_jax.core.errors import StiltsError, WeightsError
from stilts_jax.models import hf_heads
from stilts_jax.models.heads import ClassificationHead, SpanHead, TaggingHead, TaskModel
from stilts_jax.models.hf_weights import load_pretrained
from tests.hf_reference import padded_batch
from tests.two_step_demo import two_step_demo

LABELS = ["entailment", "neutral", "contradiction"]
AUTO = {
    hf_heads.QUESTION_ANSWERING: AutoModelForQuestionAnswering,
    hf_heads.SEQUENCE_CLASSIFICATION: AutoModelForSequenceClassification,
    hf_heads.TOKEN_CLASSIFICATION: AutoModelForTokenClassification,
    hf_heads.MULTIPLE_CHOICE: AutoModelForMultipleChoice,
}


def _task_model(folder: Path, head_of) -> TaskModel:
    """The encoder of `folder` with a head whose every parameter (biases included) is random, so a mapping error shows."""
    encoder, _ = load_pretrained(folder)
    head = head_of(encoder.config.hidden_size)
    rng = np.random.RandomState(7)
    for _, var in nnx.to_flat_state(nnx.state(head, nnx.Param)):
        var.set_value(jnp.asarray(0.2 * rng.randn(*var.shape).astype(np.float32)))
    return TaskModel(encoder, head)


def _load_strictly(folder: Path, kind: str) -> torch.nn.Module:
    model, info = AUTO[kind].from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    return model.eval()


def _batch(vocab_size: int, pad_id: int, choices: int = 0) -> tuple[np.ndarray, np.ndarray]:
    ids, mask = padded_batch(vocab_size, [11, 5, 8, 3, 9, 12][: 2 * max(choices, 1)], pad_id, 12)
    if choices:
        return ids.reshape(2, choices, 12), mask.reshape(2, choices, 12)
    return ids, mask


def _ours(model: TaskModel, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.asarray(model({"input_ids": jnp.asarray(ids), "attention_mask": jnp.asarray(mask)}))


def _theirs(model: torch.nn.Module, ids: np.ndarray, mask: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids).long(), attention_mask=torch.tensor(mask).long())


@pytest.mark.parametrize("model_type", ["xlm-roberta", "bert"])
def test_classification_head_round_trip(model_type, xlmr_dir, bert_dir, tmp_path):
    folder = xlmr_dir if model_type == "xlm-roberta" else bert_dir
    model = _task_model(folder, lambda d: ClassificationHead(d, len(LABELS), rngs=nnx.Rngs(1)))
    out = hf_heads.export_task_model(
        model, tmp_path / "out", kind=hf_heads.SEQUENCE_CLASSIFICATION, labels=LABELS, tokenizer_dir=folder
    )
    reference = _load_strictly(out, hf_heads.SEQUENCE_CLASSIFICATION)
    expected = "XLMRobertaForSequenceClassification" if model_type == "xlm-roberta" else "BertForSequenceClassification"
    assert type(reference).__name__ == expected
    assert reference.config.id2label == dict(enumerate(LABELS))
    assert (out / "tokenizer.json").exists()
    ids, mask = _batch(model.encoder.config.vocab_size, model.encoder.config.pad_token_id)
    ours = _ours(model, ids, mask)
    np.testing.assert_allclose(_theirs(reference, ids, mask).logits.numpy(), ours, atol=2e-5)

    # Back into JAX: the same logits; a checkpoint whose labels are in another order is matched by name.
    again = hf_heads.load_hf_task_model(
        out,
        kind=hf_heads.SEQUENCE_CLASSIFICATION,
        labels=LABELS,
        head=lambda d, rngs: ClassificationHead(d, len(LABELS), rngs=rngs),
    )
    np.testing.assert_allclose(_ours(again, ids, mask), ours, atol=1e-6)
    reordered = hf_heads.load_hf_task_model(
        out,
        kind=hf_heads.SEQUENCE_CLASSIFICATION,
        labels=LABELS[::-1],
        head=lambda d, rngs: ClassificationHead(d, len(LABELS), rngs=rngs),
    )
    np.testing.assert_allclose(_ours(reordered, ids, mask), ours[:, ::-1], atol=1e-6)


@pytest.mark.parametrize("model_type", ["xlm-roberta", "bert"])
def test_multiple_choice_head_round_trip(model_type, xlmr_dir, bert_dir, tmp_path):
    folder = xlmr_dir if model_type == "xlm-roberta" else bert_dir
    model = _task_model(folder, lambda d: ClassificationHead(d, 1, rngs=nnx.Rngs(1)))
    out = hf_heads.export_task_model(model, tmp_path / "out", kind=hf_heads.MULTIPLE_CHOICE)
    reference = _load_strictly(out, hf_heads.MULTIPLE_CHOICE)
    assert type(reference).__name__.endswith("ForMultipleChoice")
    ids, mask = _batch(model.encoder.config.vocab_size, model.encoder.config.pad_token_id, choices=3)
    ours = _ours(model, ids, mask)
    assert ours.shape == (2, 3)
    np.testing.assert_allclose(_theirs(reference, ids, mask).logits.numpy(), ours, atol=2e-5)
    again = hf_heads.load_hf_task_model(
        out, kind=hf_heads.MULTIPLE_CHOICE, head=lambda d, rngs: ClassificationHead(d, 1, rngs=rngs)
    )
    np.testing.assert_allclose(_ours(again, ids, mask), ours, atol=1e-6)


def test_tagging_and_span_heads_round_trip(xlmr_dir, tmp_path):
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    tagger = _task_model(xlmr_dir, lambda d: TaggingHead(d, len(tags), rngs=nnx.Rngs(1)))
    out = hf_heads.export_task_model(tagger, tmp_path / "tagger", kind=hf_heads.TOKEN_CLASSIFICATION, labels=tags)
    reference = _load_strictly(out, hf_heads.TOKEN_CLASSIFICATION)
    assert type(reference).__name__ == "XLMRobertaForTokenClassification"
    assert reference.config.label2id == {tag: i for i, tag in enumerate(tags)}
    ids, mask = _batch(tagger.encoder.config.vocab_size, tagger.encoder.config.pad_token_id)
    np.testing.assert_allclose(_theirs(reference, ids, mask).logits.numpy(), _ours(tagger, ids, mask), atol=2e-5)

    reader = _task_model(xlmr_dir, lambda d: SpanHead(d, rngs=nnx.Rngs(1)))
    out = hf_heads.export_task_model(reader, tmp_path / "reader", kind=hf_heads.QUESTION_ANSWERING)
    reference = _load_strictly(out, hf_heads.QUESTION_ANSWERING)
    theirs, ours = _theirs(reference, ids, mask), _ours(reader, ids, mask)
    real = mask > 0  # our span head masks padding with -1e9; transformers leaves it to the caller
    np.testing.assert_allclose(theirs.start_logits.numpy()[real], ours[..., 0][real], atol=2e-5)
    np.testing.assert_allclose(theirs.end_logits.numpy()[real], ours[..., 1][real], atol=2e-5)


def test_heads_transformers_cannot_hold_are_refused(xlmr_dir, tmp_path):
    reader = _task_model(xlmr_dir, lambda d: SpanHead(d, rngs=nnx.Rngs(1)))
    with pytest.raises(WeightsError, match="SpanHead cannot be exported as a sequence_classification head"):
        hf_heads.export_task_model(reader, tmp_path / "x", kind=hf_heads.SEQUENCE_CLASSIFICATION, labels=LABELS)
    scorer = _task_model(xlmr_dir, lambda d: ClassificationHead(d, 1, rngs=nnx.Rngs(1)))
    with pytest.raises(WeightsError, match="regression"):
        hf_heads.export_task_model(scorer, tmp_path / "x", kind=hf_heads.SEQUENCE_CLASSIFICATION, labels=["score"])
    assert not (tmp_path / "x").exists()


def test_import_is_strict(xlmr_dir, tmp_path):
    reader = _task_model(xlmr_dir, lambda d: SpanHead(d, rngs=nnx.Rngs(1)))
    out = hf_heads.export_task_model(reader, tmp_path / "reader", kind=hf_heads.QUESTION_ANSWERING)
    span = dict(kind=hf_heads.QUESTION_ANSWERING, head=lambda d, rngs: SpanHead(d, rngs=rngs))
    with pytest.raises(WeightsError, match="names the architectures"):  # a base model has no task head
        hf_heads.load_hf_task_model(xlmr_dir, **span)
    tensors = safetensors.numpy.load_file(str(out / "model.safetensors"))
    extra = tmp_path / "extra"
    shutil.copytree(out, extra)
    safetensors.numpy.save_file({**tensors, "lm_head.bias": np.zeros(3, np.float32)}, str(extra / "model.safetensors"))
    with pytest.raises(WeightsError, match=r"unexpected \['lm_head.bias'\]"):
        hf_heads.load_hf_task_model(extra, **span)
    safetensors.numpy.save_file(
        {k: v for k, v in tensors.items() if k != "qa_outputs.bias"}, str(extra / "model.safetensors")
    )
    with pytest.raises(WeightsError, match=r"missing \['qa_outputs.bias'\]"):
        hf_heads.load_hf_task_model(extra, **span)

    classifier = _task_model(xlmr_dir, lambda d: ClassificationHead(d, len(LABELS), rngs=nnx.Rngs(1)))
    out = hf_heads.export_task_model(classifier, tmp_path / "nli", kind=hf_heads.SEQUENCE_CLASSIFICATION, labels=LABELS)
    config = json.loads((out / "config.json").read_text())
    config["id2label"] = {"0": "yes", "1": "maybe", "2": "no"}
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        WeightsError, match=r"does not name the task's labels \['entailment', 'neutral', 'contradiction'\]"
    ):
        hf_heads.load_hf_task_model(
            out,
            kind=hf_heads.SEQUENCE_CLASSIFICATION,
            labels=LABELS,
            head=lambda d, rngs: ClassificationHead(d, len(LABELS), rngs=rngs),
        )


def test_push_to_hub_offline_fails_with_the_folder_named(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(StiltsError, match=r"HF_HUB_OFFLINE is set.*exported folder is .*out.*hf upload user/model"):
        export_module.push_to_hub(tmp_path / "out", "user/model")


@pytest.mark.slow
def test_exported_demo_target_gives_the_pipelines_span_logits(tmp_path_factory, tmp_path, capsys):
    """The demo trained 2 steps per phase; its target (TyDiQA, span QA) exported and loaded by transformers."""
    workdir = two_step_demo(tmp_path_factory)
    out = tmp_path / "exported"
    assert export_module.main([f"--workdir={workdir}", "--phase=target", f"--output={out}"]) == 0
    assert "XLMRobertaForQuestionAnswering" in capsys.readouterr().out
    reference = _load_strictly(out, hf_heads.QUESTION_ANSWERING)
    assert {"tokenizer.json", "sentencepiece.bpe.model"} <= {p.name for p in out.iterdir()}

    from stilts_jax.pipeline.context import RunContext
    from stilts_jax.pipeline.evaluate_model import load_phase_model, phase_run_config, phase_task, read_phase

    record = read_phase(workdir / "target")
    pipeline = RunContext(phase_run_config(workdir, record))
    model = load_phase_model(pipeline, record, phase_task(pipeline, record))
    config = model.encoder.config
    ids, mask = padded_batch(config.vocab_size, [40, 17, 64], config.pad_token_id, 64)
    ours, theirs = _ours(model, ids, mask), _theirs(reference, ids, mask)
    real = mask > 0
    np.testing.assert_allclose(theirs.start_logits.numpy()[real], ours[..., 0][real], atol=2e-5)
    np.testing.assert_allclose(theirs.end_logits.numpy()[real], ours[..., 1][real], atol=2e-5)

    # The intermediate phase (SQuAD) exports as well; a phase that never finished is named.
    assert export_module.main([f"--workdir={workdir}", "--phase=intermediate", f"--output={tmp_path / 'squad'}"]) == 0
    assert (
        export_module.main([f"--workdir={workdir}", "--phase=intermediate/1_siqa", f"--output={tmp_path / 'none'}"])
        == 2
    )
    assert "holds no finished phase" in capsys.readouterr().err
