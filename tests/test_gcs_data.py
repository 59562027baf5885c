"""Data on object stores: every source kind and data reader takes gs:// URLs as it takes local folders.

The data is copied into the in-memory gs:// bucket of tests/test_remote_workdir.py (fsspec's MemoryFileSystem
registered where gcsfs would be, so epath goes through the same backend a real bucket uses) and must read exactly
as the local copy does; a missing file's error names the URL with its scheme (pathlib would print `gs:/bucket/x`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import ml_collections
import pytest

from stilts_jax import main as main_module
from stilts_jax.config.loader import ConfigError, parse_config_args
from stilts_jax.core.errors import InputError
from stilts_jax.core.paths import as_path, glob_files, iter_files
from stilts_jax.core.tokenization import load_demo_tokenizer
from stilts_jax.data.lareqa import read_lareqa
from stilts_jax.data.mewslix import read_mewslix
from stilts_jax.data.mlm import read_text_lines
from stilts_jax.data.retrieval import read_bucc, read_tatoeba
from stilts_jax.data.task_sources import load_examples
from stilts_jax.data.tfds_reader import tfds_data_dir, tfds_records
from stilts_jax.pipeline.common import load_training_examples
from stilts_jax.pipeline.preflight import check_config
from stilts_jax.tasks.dual_encoder import DualEncoderTask
from stilts_jax.tasks.families import make_task
from stilts_jax.tasks.registry import get_task
from tests import test_remote_workdir as remote

bucket = remote.bucket  # the in-memory gs://test-bucket fixture
GS = f"gs://{remote.BUCKET}"
ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "stilts_jax" / "assets" / "demo"
TEXT = ROOT / "stilts_jax" / "assets" / "text"
TASKS = Path(__file__).parent / "fixtures" / "tasks"
RETRIEVAL = Path(__file__).parent / "fixtures" / "retrieval"


def same_data(remote_copy: Any, local: Any) -> bool:
    """Equal but for the `source` each names (the URL, the local folder)."""
    return dataclasses.replace(remote_copy, source=local.source) == local and GS in remote_copy.source


def upload(local: Path, url: str) -> str:
    """Copy a local folder's files under `url`; returns the URL."""
    for name, path in iter_files(local):
        (as_path(url) / name).write_bytes(path.read_bytes())
    return url


def test_an_xtreme_folder_on_gs_reads_as_the_local_one(bucket):
    folder = upload(DEMO, f"{GS}/demo")
    for dataset, split, languages in (
        ("xnli", "dev", ["en", "de"]),
        ("squad", "train", ["en"]),
        ("tydiqa", "dev", ["en", "sw"]),
    ):
        local = load_examples(dataset, split, {"kind": "xtreme", "path": str(DEMO)}, languages)
        remote_copy = load_examples(dataset, split, {"kind": "xtreme", "path": folder}, languages)
        assert remote_copy == local and all(remote_copy[lang] for lang in languages)
    with pytest.raises(InputError, match=f"{GS}/elsewhere/xnli/dev-en.tsv is missing"):
        load_examples("xnli", "dev", {"kind": "xtreme", "path": f"{GS}/elsewhere"}, ["en"])


def test_a_files_source_on_gs_reads_every_format(bucket):
    cases = [  # dataset, split, local file: TSV with a header, JSON lines with labels.lst beside, one JSON list, CSV
        ("qqp", "train", TASKS / "qqp" / "train.tsv"),
        ("piqa", "train", TASKS / "piqa" / "physicaliqa-train-dev" / "train.jsonl"),
        ("reclor", "train", TASKS / "reclor" / "train.json"),
        ("cosmosqa", "train", TASKS / "cosmosqa" / "train.csv"),
    ]
    upload(TASKS, f"{GS}/tasks")
    for dataset, split, path in cases:
        url = f"{GS}/tasks/{path.relative_to(TASKS).as_posix()}"
        local = load_examples(dataset, split, {"kind": "files", "paths": {split: str(path)}})
        remote_copy = load_examples(dataset, split, {"kind": "files", "paths": {split: url}})
        assert remote_copy == local and remote_copy["en"], dataset
    # A jiant task config names its files relative to itself: on gs:// too.
    config = f"{GS}/tasks/ccg/jiant/ccg_config.json"
    local = load_examples("ccg", "train", {"kind": "files", "path": str(TASKS / "ccg" / "jiant" / "ccg_config.json")})
    assert load_examples("ccg", "train", {"kind": "files", "path": config}) == local
    with pytest.raises(InputError, match=f"file {GS}/tasks/qqp/nothing.tsv does not exist"):
        load_examples("qqp", "train", {"kind": "files", "paths": {"train": f"{GS}/tasks/qqp/nothing.tsv"}})


def test_a_hub_parquet_folder_on_gs_reads_as_the_local_one(bucket):
    folder = upload(DEMO / "glue", f"{GS}/glue")
    local = load_examples("mnli", "train", {"kind": "hf", "repo": str(DEMO / "glue")})
    assert load_examples("mnli", "train", {"kind": "hf", "repo": folder}) == local and local["en"]
    with pytest.raises(InputError, match=f"{GS}/nowhere' looks like a folder but"):
        load_examples("mnli", "train", {"kind": "hf", "repo": f"{GS}/nowhere"})


def test_a_tfds_data_dir_on_gs_keeps_its_url(bucket):
    data_dir = tfds_data_dir({"data_dir": f"{GS}/tfds"})
    assert str(data_dir) == f"{GS}/tfds"
    with pytest.raises(InputError, match=f"is not prepared in {GS}/tfds "):
        tfds_records("xnli", "test", data_dir)
    # A prepared builder folder in the bucket is found (the read itself is tfds's, which names the bucket).
    (data_dir / "xnli" / "1.1.0" / "dataset_info.json").write_text("{}")
    with pytest.raises(InputError) as error:
        tfds_records("xnli", "test", data_dir)
    assert "is not prepared" not in str(error.value)


def _phase(**values) -> ml_collections.ConfigDict:
    config, _ = parse_config_args(["--config=configs/stilts.py:intermediate=mnli,target=xnli"])
    with config.intermediate.unlocked():
        for key, value in values.items():
            config.intermediate[key] = value
    return config.intermediate


def test_translated_training_files_on_gs(bucket):
    upload(TASKS / "xtreme", f"{GS}/xtreme")
    upload(TASKS / "translated", f"{GS}/translated")
    task = make_task(get_task("mnli"), load_demo_tokenizer(), max_length=64)

    def read(root: str, folder: str) -> list:
        phase = _phase(train_languages=["en", "de", "fr"], translated_train=f"{folder}/mnli.train.{{lang}}.tsv")
        return load_training_examples(task, phase, {"kind": "xtreme", "path": root})

    examples = read(f"{GS}/xtreme", f"{GS}/translated")
    assert [ex.language for ex in examples] == ["en"] * 3 + ["de"] * 3 + ["fr"] * 3
    assert examples == read(str(TASKS / "xtreme"), str(TASKS / "translated"))


def test_mlm_text_files_and_patterns_on_gs(bucket):
    upload(TEXT, f"{GS}/text")
    names = ["parallel.de.txt", "parallel.ru.txt"]
    local = read_text_lines([str(TEXT / name) for name in names])
    assert read_text_lines([f"{GS}/text/{name}" for name in names]) == local
    assert read_text_lines(f"{GS}/text/parallel.[dr]?.txt") == local  # a glob pattern lists the bucket's folder
    assert [p.name for p in glob_files(f"{GS}/text/parallel.*.txt")] == sorted(
        p.name for p in TEXT.glob("parallel.*.txt")
    )
    with pytest.raises(InputError, match=f"MLM text pattern {GS}/text/nothing-\\*.txt matches no file"):
        read_text_lines(f"{GS}/text/nothing-*.txt")
    with pytest.raises(InputError, match=f"MLM text file {GS}/text/missing.txt does not exist"):
        read_text_lines(f"{GS}/text/missing.txt")


def test_the_preflight_checks_gs_mlm_files_and_data(bucket):
    data = upload(DEMO, f"{GS}/demo")
    upload(TEXT, f"{GS}/text")
    config, _ = parse_config_args(
        [
            "--config=configs/demo.py",
            f"--config.intermediate.source.path={data}",
            f"--config.target.source.path={data}",
            "--config.evaluation.languages=['en']",
            f"--config.intermediate.mlm.files=['{GS}/text/parallel.*.txt']",
        ]
    )
    check_config(config)  # reads the gs:// data and lists the gs:// MLM pattern without a problem
    with config.intermediate.unlocked():
        config.intermediate.mlm.files = [f"{GS}/text/missing.txt"]
    with pytest.raises(ConfigError, match=f"mlm.files: MLM text file {GS}/text/missing.txt does not exist"):
        check_config(config)
    with config.intermediate.unlocked():
        config.intermediate.mlm.files = []
    with config.target.unlocked():
        config.target.source.path = f"{GS}/elsewhere"
    with pytest.raises(ConfigError, match=f"{GS}/elsewhere/tydiqa/"):
        check_config(config)


def test_retrieval_data_on_gs(bucket):
    folder = upload(RETRIEVAL, f"{GS}/retrieval")
    tatoeba = read_tatoeba(
        f"{folder}/tatoeba_xtreme", "de", labels=f"{folder}/tatoeba_xtreme/labels/tatoeba/test-de.tsv"
    )
    assert same_data(
        tatoeba,
        read_tatoeba(
            RETRIEVAL / "tatoeba_xtreme",
            "de",
            labels=RETRIEVAL / "tatoeba_xtreme" / "labels" / "tatoeba" / "test-de.tsv",
        ),
    )
    assert tatoeba.gold is not None
    assert same_data(read_tatoeba(f"{folder}/tatoeba_laser", "de"), read_tatoeba(RETRIEVAL / "tatoeba_laser", "de"))
    sample = read_bucc(f"{folder}/bucc_original", "de", "sample")
    local = read_bucc(RETRIEVAL / "bucc_original", "de", "sample")
    assert (sample.src_sentences, sample.en_sentences, sample.gold) == (
        local.src_sentences,
        local.en_sentences,
        local.gold,
    )
    with pytest.raises(InputError, match=f"{folder}/nowhere"):
        read_tatoeba(f"{folder}/nowhere", "de")


def test_dual_encoder_data_and_eval_folders_on_gs(bucket):
    folder = upload(RETRIEVAL, f"{GS}/retrieval")
    tokenizer = load_demo_tokenizer()
    mewslix = DualEncoderTask(get_task("mewslix"), tokenizer, max_length=64)
    local_pool = mewslix.eval_pool(RETRIEVAL / "mewslix", ["en", "ja"], "test")
    assert same_data(mewslix.eval_pool(f"{folder}/mewslix", ["en", "ja"], "test"), local_pool)
    assert same_data(
        read_mewslix(f"{folder}/mewslix", "dev", ["en"]), read_mewslix(RETRIEVAL / "mewslix", "dev", ["en"])
    )
    source, local_source = {"path": f"{folder}/mewslix"}, {"path": str(RETRIEVAL / "mewslix")}
    assert mewslix.train_pairs(source) == mewslix.train_pairs(local_source)
    assert same_data(mewslix.dev_pool(source), mewslix.dev_pool(local_source))
    lareqa = DualEncoderTask(get_task("lareqa"), tokenizer, max_length=64)
    pool = lareqa.eval_pool(f"{folder}/lareqa", ["de", "zh"], "test")
    assert same_data(pool, lareqa.eval_pool(RETRIEVAL / "lareqa", ["de", "zh"], "test")) and pool.candidate_ids
    assert same_data(read_lareqa(f"{folder}/lareqa", ["de"]), read_lareqa(RETRIEVAL / "lareqa", ["de"]))


def _demo_results(workdir: Path, data: str, model: Path) -> dict:
    code = main_module.main(
        [
            "--config=configs/demo.py",
            f"--config.workdir={workdir}",
            f"--config.model.name={model}",
            f"--config.intermediate.source.path={data}",
            f"--config.target.source.path={data}",
            "--config.intermediate.train.max_steps=2",
            "--config.target.train.max_steps=2",
            "--config.intermediate.train.progress_bar=false",
            "--config.target.train.progress_bar=false",
            "--config.evaluation.languages=['en']",
        ]
    )
    assert code == 0
    return json.loads((workdir / "results.json").read_text())


@pytest.mark.slow
def test_the_demo_reads_its_data_from_gs_with_the_same_results(bucket, tmp_path):
    data = upload(DEMO, f"{GS}/demo")
    model = tmp_path / "tiny-xlmr"
    remote_run = _demo_results(tmp_path / "from-gs", data, model)
    local_run = _demo_results(tmp_path / "local", str(DEMO), model)
    assert list(remote_run["per_language"]) == ["en"]
    assert remote_run["per_language"] == local_run["per_language"]
