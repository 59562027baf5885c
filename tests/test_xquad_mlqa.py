"""XQuAD and MLQA targets: loading from every source kind, the registry, and scoring with each dataset's script."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from stilts_jax.core.errors import InputError
from stilts_jax.core.tokenization import load_demo_tokenizer
from stilts_jax.data import task_sources
from stilts_jax.data.qa import QADataError
from stilts_jax.data.task_sources import load_qa
from stilts_jax.evaluation import xtreme_tasks
from stilts_jax.evaluation.squad_metric import squad_scores
from stilts_jax.tasks.registry import get_task
from stilts_jax.tasks.span_qa import SpanQATask
from tests.test_sources import builder_reading, squad_rows, write_parquet

ROOT = Path(__file__).resolve().parent.parent
XTREME = Path(__file__).parent / "fixtures" / "qa" / "xtreme"
XQUAD = {lang: XTREME / "xquad" / f"xquad.{lang}.json" for lang in task_sources.XQUAD_LANGUAGES}
MLQA = {
    split: {
        lang: XTREME / "mlqa" / "MLQA_V1" / split / f"{split}-context-{lang}-question-{lang}.json"
        for lang in task_sources.MLQA_LANGUAGES
    }
    for split in ("dev", "test")
}
XTREME_SOURCE = {"kind": "xtreme", "path": str(XTREME)}


def by_id(examples):
    return sorted(examples, key=lambda ex: ex.id)


def _card(configs: dict[str, dict[str, str]]) -> str:
    """A dataset card mapping configs to their files, as the hub repos' README.md does."""
    lines = ["---", "configs:"]
    for config, splits in configs.items():
        lines += [f"- config_name: {config}", "  data_files:"]
        lines += [f"  - split: {split}\n    path: {path}" for split, path in splits.items()]
    return "\n".join(lines + ["---", "# test copy", ""])


@pytest.fixture(scope="module")
def hf_repos(tmp_path_factory):
    """google/xquad (main branch: xquad.{lang}/validation-00000-of-00001.parquet and a card) and facebook/mlqa at
    refs/convert/parquet (mlqa.{lang}.{lang}/{validation,test}/0000.parquet, no card)."""
    root = tmp_path_factory.mktemp("hf_xquad_mlqa")
    xquad = root / "google_xquad"
    for lang, path in XQUAD.items():
        write_parquet(xquad / f"xquad.{lang}" / "validation-00000-of-00001.parquet", squad_rows(path))
    (xquad / "README.md").write_text(
        _card({f"xquad.{lang}": {"validation": f"xquad.{lang}/validation-*"} for lang in XQUAD}), encoding="utf-8"
    )
    mlqa = root / "facebook_mlqa"
    for split, hf_split in (("dev", "validation"), ("test", "test")):
        for lang, path in MLQA[split].items():
            write_parquet(mlqa / f"mlqa.{lang}.{lang}" / hf_split / "0000.parquet", squad_rows(path))
    return {"xquad": xquad, "mlqa": mlqa, "cache": root / "cache"}


def hf_source(hf_repos, dataset: str) -> dict:
    return {"kind": "hf", "repo": str(hf_repos[dataset]), "cache_dir": str(hf_repos["cache"])}


TFDS_BUILT = {"xquad": ("en", "zh", "ar"), "mlqa": ("zh", "hi")}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """xquad/{lang} (split test) and mlqa/{lang} (splits validation, test), built by the real TFDS builders."""
    from tensorflow_datasets.datasets.mlqa import mlqa_dataset_builder
    from tensorflow_datasets.question_answering import xquad

    root = tmp_path_factory.mktemp("tfds_xquad_mlqa")
    for lang in TFDS_BUILT["xquad"]:
        with builder_reading(xquad.Xquad, {"test": XQUAD[lang]}):
            xquad.Xquad(config=lang, data_dir=str(root), file_format="array_record").download_and_prepare()
    for lang in TFDS_BUILT["mlqa"]:
        with builder_reading(
            mlqa_dataset_builder.Builder, {"validation": MLQA["dev"][lang], "test": MLQA["test"][lang]}
        ):
            mlqa_dataset_builder.Builder(
                config=lang, data_dir=str(root), file_format="array_record"
            ).download_and_prepare()
    return root


# --- the XTREME download folder and plain files ---------------------------------------------------------------


def test_xtreme_reads_every_language_with_its_own_file():
    test = load_qa("xquad", "test", XTREME_SOURCE)
    assert list(test) == list(task_sources.XQUAD_LANGUAGES)
    english_ids = [ex.id for ex in test["en"]]
    for lang, examples in test.items():
        raw = json.loads(XQUAD[lang].read_text(encoding="utf-8"))
        questions = [q for a in raw["data"] for p in a["paragraphs"] for q in p["qas"]]
        assert [ex.id for ex in examples] == [q["id"] for q in questions] == english_ids  # parallel: same ids
        assert [ex.answers[0].text for ex in examples] == [q["answers"][0]["text"] for q in questions]
        assert all(ex.language == lang for ex in examples)
    assert test["zh"][0].context != test["en"][0].context
    mlqa = load_qa("mlqa", "test", XTREME_SOURCE, languages=["zh", "ar"])
    assert list(mlqa) == ["zh", "ar"] and len(mlqa["zh"]) == 6
    assert mlqa["ar"][0].answers[0].text == "البحر الأبيض المتوسط"
    dev = load_qa("mlqa", "dev", XTREME_SOURCE)
    assert list(dev) == list(task_sources.MLQA_LANGUAGES)
    assert not {ex.id for ex in dev["en"]} & {ex.id for ex in load_qa("mlqa", "test", XTREME_SOURCE, ["en"])["en"]}


def test_xtreme_blanked_test_files_are_refused_with_the_originals_named(tmp_path):
    """XTREME's utils_preprocess.py blanks XQuAD and MLQA test answers as it does TyDiQA's dev answers."""
    folder = tmp_path / "xquad"
    folder.mkdir()
    data = json.loads(XQUAD["th"].read_text(encoding="utf-8"))
    blanked = {
        "version": data["version"],
        "data": [
            {
                "paragraphs": [
                    {
                        "context": p["context"],
                        "qas": [
                            {"answers": [{"answer_start": 0, "text": ""}], "question": q["question"], "id": q["id"]}
                        ],
                    }
                ]
            }
            for a in data["data"]
            for p in a["paragraphs"]
            for q in p["qas"]
        ],
    }
    (folder / "xquad.th.json").write_text(json.dumps(blanked, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(QADataError) as err:
        load_qa("xquad", "test", {"kind": "xtreme", "path": str(tmp_path)}, languages=["th"])
    message = str(err.value)
    assert str(folder / "xquad.th.json") in message and blanked["data"][0]["paragraphs"][0]["qas"][0]["id"] in message
    assert "remove_qa_test_annotations" in message and "google-deepmind/xquad" in message


def test_missing_xtreme_language_file_names_its_path(tmp_path):
    shutil.copytree(XTREME / "mlqa", tmp_path / "mlqa")
    (tmp_path / "mlqa" / "MLQA_V1" / "test" / "test-context-vi-question-vi.json").unlink()
    assert list(load_qa("mlqa", "test", {"kind": "xtreme", "path": str(tmp_path)}, ["de"])) == ["de"]
    with pytest.raises(InputError, match=r"MLQA_V1/test/test-context-vi-question-vi.json is missing"):
        load_qa("mlqa", "test", {"kind": "xtreme", "path": str(tmp_path)})


def test_files_need_one_file_per_language():
    paths = {"test": {lang: str(XQUAD[lang]) for lang in ("hi", "el")}}
    test = load_qa("xquad", "test", {"kind": "files", "paths": paths})
    assert list(test) == ["el", "hi"] and by_id(test["hi"]) == by_id(
        load_qa("xquad", "test", XTREME_SOURCE, ["hi"])["hi"]
    )
    with pytest.raises(InputError, match=r"xquad.el.json: this dataset has one file per language"):
        load_qa("xquad", "test", {"kind": "files", "paths": {"test": str(XQUAD["el"])}})


def test_splits_each_dataset_has():
    with pytest.raises(InputError, match="unknown split 'train' for xquad; valid splits: test"):
        load_qa("xquad", "train", XTREME_SOURCE)
    with pytest.raises(InputError, match="unknown split 'train' for mlqa; valid splits: dev, test"):
        load_qa("mlqa", "train", XTREME_SOURCE)
    with pytest.raises(InputError, match="mlqa has no data for language.*th; available: en, es, de, ar, hi, vi, zh"):
        load_qa("mlqa", "test", XTREME_SOURCE, languages=["th"])


# --- Hugging Face -------------------------------------------------------------------------------------------------


def test_hf_repos_give_the_same_examples_as_xtreme(hf_repos):
    for dataset, split, languages in (
        ("xquad", "test", ["ro", "zh", "th"]),
        ("mlqa", "test", ["hi", "vi"]),
        ("mlqa", "dev", ["ar"]),
    ):
        from_hf = load_qa(dataset, split, hf_source(hf_repos, dataset), languages=languages)
        assert list(from_hf) == languages
        assert from_hf == load_qa(dataset, split, XTREME_SOURCE, languages=languages)


def test_hf_config_must_name_the_language(hf_repos):
    source = {**hf_source(hf_repos, "xquad"), "config": "xquad.zh"}
    with pytest.raises(InputError, match=r"hf config 'xquad.zh' must contain \{lang\}.*'xquad.\{lang\}'"):
        load_qa("xquad", "test", source, ["zh"])
    # google/xtreme keeps XQuAD as XQuAD.{lang}: a template naming another layout works the same way.
    renamed = hf_repos["xquad"].parent / "google_xtreme"
    for lang in ("de", "tr"):
        shutil.copytree(hf_repos["xquad"] / f"xquad.{lang}", renamed / f"XQuAD.{lang}")
    source = {"kind": "hf", "repo": str(renamed), "config": "XQuAD.{lang}", "cache_dir": str(hf_repos["cache"])}
    assert load_qa("xquad", "test", source, ["tr", "de"]) == load_qa("xquad", "test", XTREME_SOURCE, ["tr", "de"])


def test_hf_hub_mlqa_uses_the_parquet_branch_and_says_how_to_copy_it(tmp_path):
    with pytest.raises(InputError) as err:
        load_qa("mlqa", "test", {"kind": "hf", "cache_dir": str(tmp_path)}, ["de"])
    message = str(err.value)
    assert "facebook/mlqa (config mlqa.de.de, split test)" in message
    assert "hf download facebook/mlqa --repo-type dataset --revision refs/convert/parquet" in message


# --- TFDS ---------------------------------------------------------------------------------------------------------


def test_tfds_gives_the_same_examples_as_xtreme(tfds_dir):
    source = {"kind": "tfds", "data_dir": str(tfds_dir)}
    xquad = load_qa("xquad", "test", source, languages=list(TFDS_BUILT["xquad"]))
    assert list(xquad) == list(TFDS_BUILT["xquad"])
    for lang, examples in xquad.items():
        assert by_id(examples) == by_id(load_qa("xquad", "test", XTREME_SOURCE, [lang])[lang])
        assert all(isinstance(ex.context, str) and ex.language == lang for ex in examples)
    for split in ("dev", "test"):
        mlqa = load_qa("mlqa", split, source, languages=["hi", "zh"])
        expected = load_qa("mlqa", split, XTREME_SOURCE, ["hi", "zh"])
        assert {k: by_id(v) for k, v in mlqa.items()} == {k: by_id(v) for k, v in expected.items()}


def test_tfds_xquad_has_no_romanian_and_says_where_to_get_it(tfds_dir):
    with pytest.raises(InputError) as err:
        load_qa("xquad", "test", {"kind": "tfds", "data_dir": str(tfds_dir)}, languages=["zh", "ro"])
    message = str(err.value)
    assert "no language(s) ro" in message and "hf or files" in message and "evaluation.languages" in message
    with pytest.raises(InputError, match=r"tfds build mlqa/vi"):
        load_qa("mlqa", "test", {"kind": "tfds", "data_dir": str(tfds_dir)}, languages=["vi"])


# --- the registry and the configs ---------------------------------------------------------------------------------


def test_registry_entries_follow_xtreme():
    for name in ("xquad", "mlqa"):
        spec = get_task(name)
        assert spec.family == "span_qa" and spec.xtreme_name == name and spec.metric == "f1"
        assert spec.languages == task_sources.DATASETS[name].languages
        assert list(spec.languages) == xtreme_tasks.XTREME_R_TASK2LANGS[name]
        assert spec.dataset_and_split("train") == ("squad", "train") and spec.dataset_and_split("dev") == (
            "squad",
            "dev",
        )
        assert spec.dataset_and_split("eval") == (name, "test")
    assert xtreme_tasks.XTREME_TASK2LANGS["xquad"] == list(get_task("xquad").languages[:-1])
    v2 = get_task("squad_v2")
    assert v2.languages == ("en",) and v2.dataset_and_split("dev") == ("squad_v2", "dev")
    sys.path.insert(0, str(ROOT / "configs"))
    import base

    for name in ("xquad", "mlqa"):  # jiant d_write_configs.sh:47/55, c_tokenize_and_cache.sh:98/110
        assert dict(get_task(name).defaults) == dict(epochs=2.0, batch_size=16, max_length=384)
        assert base.get_config(intermediate="squad", target=name).target.max_length == 384
    assert base.get_config(intermediate="squad_v2", target="xquad").intermediate.max_length == 256


# --- scoring: each dataset's official normalisation -----------------------------------------------------------------


def _gold(examples):
    return {ex.id: ex.answers[0].text for ex in examples}


def test_mlqa_is_scored_with_its_language_aware_script():
    task = SpanQATask(get_task("mlqa"), load_demo_tokenizer())
    test = load_qa("mlqa", "test", XTREME_SOURCE, languages=["zh", "ar", "de"])

    def one_changed(lang: str, answer: str, prediction: str) -> tuple[dict[str, str], list[str]]:
        predictions = _gold(test[lang])
        changed = next(qid for qid, text in predictions.items() if text == answer)
        predictions[changed] = prediction
        return predictions, [ex.answers[0].text for ex in test[lang]]

    # zh: MLQA splits Chinese into characters; "地中" against "地中海" shares 2 of 3 (P 1, R 2/3, F1 0.8).
    predictions, _ = one_changed("zh", "地中海", "地中")
    mlqa = task.score(predictions, test["zh"], language="zh")
    assert mlqa["f1"] == pytest.approx((5 * 100 + 80) / 6) and mlqa["exact_match"] == pytest.approx(500 / 6)
    references = {ex.id: [ex.answers[0].text] for ex in test["zh"]}
    assert squad_scores(predictions, references)["f1"] == pytest.approx(500 / 6)  # SQuAD's script: no shared token
    # ar: every "ال" goes; de: articles go. SQuAD's script drops English articles only.
    for lang, answer, prediction in (
        ("ar", "البحر الأبيض المتوسط", "بحر أبيض متوسط"),
        ("de", "das Mittelmeer", "Mittelmeer"),
    ):
        predictions, _ = one_changed(lang, answer, prediction)
        assert task.score(predictions, test[lang], language=lang)["exact_match"] == 100.0
        references = {ex.id: [ex.answers[0].text] for ex in test[lang]}
        assert squad_scores(predictions, references)["exact_match"] == pytest.approx(500 / 6)
    # Without a language the examples are the English SQuAD dev set of model selection: SQuAD's script.
    predictions, _ = one_changed("de", "das Mittelmeer", "Mittelmeer")
    assert task.score(predictions, test["de"])["exact_match"] == pytest.approx(500 / 6)


def test_xquad_is_scored_with_squad_v1_and_baselines_use_the_evaluated_metric():
    xquad = SpanQATask(get_task("xquad"), load_demo_tokenizer())
    test = load_qa("xquad", "test", XTREME_SOURCE, languages=["de"])["de"]
    predictions = _gold(test)
    changed = next(qid for qid, text in predictions.items() if text == "das Mittelmeer")
    predictions[changed] = "Mittelmeer"
    assert xquad.score(predictions, test, language="de")["exact_match"] == pytest.approx(500 / 6)
    # The trivial baseline (the context's first word) on Chinese: one unspaced run, which only MLQA's character
    # segmentation can partly match.
    mlqa = SpanQATask(get_task("mlqa"), load_demo_tokenizer())
    zh = load_qa("mlqa", "test", XTREME_SOURCE, languages=["zh"])["zh"]
    assert mlqa.baseline(zh)["baseline_f1"] > 0.0
    references = {ex.id: [ex.answers[0].text] for ex in zh}
    assert squad_scores(mlqa.trivial_predictions(zh), references)["f1"] == 0.0


# --- the fixtures -------------------------------------------------------------------------------------------------


def test_fixtures_are_what_the_generator_writes(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    import make_qa_fixtures

    written = make_qa_fixtures.write(tmp_path)
    assert len(written) == 2 + len(task_sources.XQUAD_LANGUAGES) + 2 * len(task_sources.MLQA_LANGUAGES)
    for path in written:
        relative = path.relative_to(tmp_path)
        assert path.read_bytes() == (XTREME / relative).read_bytes(), relative
