"""Translate-train and translate-train-all: XTREME's translate-train files (5 columns, in the download folder where
XTREME's training code reads them), 'all' languages, language-balanced sampling, and the protocol label."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import ml_collections
import pytest

from stilts_jax.config.loader import parse_config_args
from stilts_jax.core.tokenization import load_demo_tokenizer
from stilts_jax.evaluation.report import protocol_markdown
from stilts_jax.pipeline.common import load_training_examples
from stilts_jax.pipeline.preflight import planned_reads
from stilts_jax.pipeline.protocol import run_protocol
from stilts_jax.pipeline.reuse import plan
from stilts_jax.pipeline.translate_train import balanced, training_languages, transfer_setting
from stilts_jax.tasks.families import make_task
from stilts_jax.tasks.registry import get_task

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "tasks" / "xtreme"
DEMO = ROOT / "stilts_jax" / "assets" / "demo"


def _config(target: str = "pawsx", **values) -> ml_collections.ConfigDict:
    config, _ = parse_config_args([f"--config=configs/stilts.py:intermediate=none,target={target}"])
    with config.target.unlocked():
        for key, value in values.items():
            config.target[key] = value
    return config


def test_xtreme_translate_train_rows_are_read_from_the_download_folder(caplog):
    task = make_task(get_task("pawsx"), load_demo_tokenizer(), max_length=64)
    source = {"kind": "xtreme", "path": str(FIXTURES)}
    with caplog.at_level(logging.WARNING):
        examples = load_training_examples(task, _config(train_languages=["en", "de"]).target, source)
    assert [ex.language for ex in examples] == ["en"] * 3 + ["de"] * 2  # the malformed row is skipped
    german = examples[3:]
    assert german[0].text_a == "Im Oktober 1560 traf er sich in Paris heimlich mit dem englischen Botschafter ."
    assert german[1].text_b.startswith("Es gibt auch öffentliche Diskussionen")
    assert [ex.label for ex in german] == [1, 0]
    assert "skipped 1 malformed translate-train row(s)" in caplog.text and "lines 2" in caplog.text
    assert len({ex.id for ex in examples}) == 5

    # A language without a translation file names the file and the fix.
    with pytest.raises(Exception, match=r"en-fr-translated.tsv"):
        load_training_examples(task, _config(train_languages=["en", "fr"]).target, source)


def test_all_languages_and_balanced_sampling():
    phase = _config(train_languages=["all"]).target
    assert training_languages(phase, "pawsx") == ["en", "de", "es", "fr", "ja", "ko", "zh"]
    parts = balanced([[_Example("a"), _Example("b"), _Example("c")], [_Example("x")]], ["en", "de"])
    assert [len(part) for part in parts] == [3, 3]
    assert [ex.id for ex in parts[1]] == ["x", "x-r1", "x-r2"]


@dataclasses.dataclass(frozen=True)
class _Example:
    id: str


def test_the_protocol_names_the_transfer_setting():
    assert transfer_setting(_config().target, "pawsx")[0] == "zero-shot"
    label, text = transfer_setting(_config(train_languages=["en", "de"]).target, "pawsx")
    assert label == "translate-train" and text.startswith("translate-train: trained on en, de")
    label, text = transfer_setting(_config(train_languages=["all"], language_sampling="balanced").target, "pawsx")
    assert label == "translate-train-all" and "(language-balanced), not zero-shot" in text
    # English and every evaluated language (the demo's XNLI languages) is translate-train-all too.
    config = _config("xnli", train_languages=["en", "de", "fr"])
    config.evaluation.languages = ["de", "fr"]
    protocol = run_protocol(config, split="test", trained_target=True)
    assert protocol["transfer"] == "translate-train-all" and protocol["train_languages"] == ["en", "de", "fr"]
    assert protocol_markdown(protocol).startswith("Protocol: translate-train-all: English and all 2 evaluated")
    from stilts_jax.evaluation.report import markdown_table, summarize

    summary = summarize("xnli", {"de": {"accuracy": 50.0}, "en": {"accuracy": 60.0}}, protocol=protocol)
    assert "| **average (no en; translate-train-all)** | 50.0 |" in markdown_table(summary, [("accuracy", "accuracy")])
    zero = run_protocol(_config("xnli"), split="test", trained_target=True)
    assert zero["transfer"] == "zero-shot" and zero["setting"] == "zero-shot from English"
    assert "train_languages" not in zero


def test_an_evaluated_model_is_labelled_by_the_languages_it_was_trained_on():
    # This run's own train_languages say English, but the evaluated model's record says it saw German too.
    config = _config("pawsx", evaluate_model="workdir/elsewhere")
    record = {"train_languages": ["en", "de"], "language_sampling": "balanced", "dev": 80.0}
    protocol = run_protocol(config, split="test", trained_target=True, phases={"target": record})
    assert protocol["transfer"] == "translate-train" and protocol["train_languages"] == ["en", "de"]
    assert protocol["language_sampling"] == "balanced"
    # A model imported from Hugging Face records no training languages: zero-shot is stated as an assumption.
    imported = run_protocol(config, split="test", trained_target=True, phases={"target": {"dev": None}})
    assert imported["transfer"] == "zero-shot" and "assumed" in imported["setting"]


def test_language_sampling_is_a_phase_setting_and_preflight_reads_the_translations():
    concatenated = plan(_config())[-1]
    assert "language_sampling" not in concatenated.settings["phase"]  # the default keeps earlier workdirs reusable
    assert plan(_config(language_sampling="balanced"))[-1].fingerprint != concatenated.fingerprint
    config = _config("xnli", train_languages=["en", "de"])
    config.target.source = ml_collections.ConfigDict({"kind": "xtreme", "path": str(DEMO)})
    reads = [read for read in planned_reads(config) if read.where == "target" and read.which == "train"]
    assert [read.source.get("paths", {}).get("train", "") for read in reads][1].endswith(
        "xnli/XNLI-Translated/en-de-translated.tsv"
    )


def test_the_shipped_demo_translations_are_xtreme_rows_of_the_english_pairs():
    task = make_task(get_task("xnli"), load_demo_tokenizer(), max_length=128)
    source = {"kind": "xtreme", "path": str(DEMO)}
    examples = load_training_examples(
        task, _config("xnli", train_languages=["en", "de", "zh"], language_sampling="balanced").target, source
    )
    by_language = {lang: [ex for ex in examples if ex.language == lang] for lang in ("en", "de", "zh")}
    assert len(by_language["en"]) == 600 and len(by_language["de"]) == len(by_language["zh"]) == 600
    rows = (DEMO / "xnli" / "XNLI-Translated" / "en-de-translated.tsv").read_text(encoding="utf-8").splitlines()
    first = rows[0].split("\t")
    assert len(first) == 5 and first[4] in ("entailment", "neutral", "contradiction")
    years = [word for word in first[0].split() if word.isdigit()]
    assert years and all(year in first[2] for year in years)  # the translation keeps the premise's year


def test_qa_targets_train_on_translated_squad_files(tmp_path):
    """XQuAD and MLQA have no training data of their own: translate-train reads SQuAD-format translations of the
    English training set (XTREME's translations bucket has them for SQuAD v1.1) through translated_train."""
    import json

    from stilts_jax.data.qa import Answer, QAExample, to_squad_dict

    def example(qid: str, question: str, context: str, answer: str) -> QAExample:
        return QAExample(qid, question, context, (Answer(answer, context.index(answer)),), "de")

    german = [
        example("q1", "Wann wurde die Brücke gebaut?", "Die Brücke wurde 1890 gebaut.", "1890"),
        example("q2", "Wer baute sie?", "Sie wurde von Gustave Eiffel entworfen.", "Gustave Eiffel"),
    ]
    template = tmp_path / "squad.translate.train.en-{lang}.json"
    (tmp_path / "squad.translate.train.en-de.json").write_text(json.dumps(to_squad_dict(german)), encoding="utf-8")
    phase = _config("xquad", train_languages=["en", "de"], translated_train=str(template)).target
    task = make_task(get_task("xquad"), load_demo_tokenizer(), max_length=160, doc_stride=64)
    source = {"kind": "xtreme", "path": str(DEMO)}
    examples = load_training_examples(task, phase, source)
    translated = [ex for ex in examples if ex.language == "de"]
    assert len(translated) == 2 and len(examples) > 2 and examples[0].language == "en"
    assert [ex.id for ex in translated] == ["q1-de", "q2-de"]  # unique beside the English ids
    assert [ex.context[a.start : a.start + len(a.text)] for ex in translated for a in ex.answers] == [
        "1890",
        "Gustave Eiffel",
    ]
    assert task.train_features(translated)["input_ids"].shape[0] >= 2
    assert transfer_setting(phase, "xquad")[0] == "translate-train"
    # A language without its file names the file.
    with pytest.raises(Exception, match=r"squad.translate.train.en-fr.json"):
        load_training_examples(
            task, _config("xquad", train_languages=["en", "fr"], translated_train=str(template)).target, source
        )
