"""The training-feature cache: a hit gives the arrays of a fresh featurization; another tokenizer, max_length or
data featurizes again; a damaged file is reported and rebuilt."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from stilts_jax.core.tokenization import load_demo_tokenizer
from stilts_jax.demo.qa_data import squad_examples
from stilts_jax.pipeline.common import training_features
from stilts_jax.tasks.families import make_task
from stilts_jax.tasks.registry import get_task


@dataclasses.dataclass
class _Config:
    feature_cache: str = ""


@dataclasses.dataclass
class _Run:
    workdir: Path
    config: _Config = dataclasses.field(default_factory=_Config)


class _Counting:
    """A real task whose train_features calls are counted."""

    def __init__(self, task):
        self.task, self.calls = task, 0

    def __getattr__(self, name):
        return getattr(self.task, name)

    def train_features(self, examples):
        self.calls += 1
        return self.task.train_features(examples)


def _task(max_length=160, tokenizer=None):
    return _Counting(
        make_task(get_task("squad"), tokenizer or load_demo_tokenizer(), max_length=max_length, doc_stride=64)
    )


@pytest.fixture(scope="module")
def examples():
    return squad_examples(40, 0, "train")


def test_a_hit_gives_the_fresh_arrays_and_a_change_rebuilds(tmp_path, examples, capsys):
    run = _Run(tmp_path)
    task = _task()
    fresh = training_features(run, task, examples)
    again = training_features(run, task, examples)
    assert task.calls == 1 and "read from" in capsys.readouterr().out
    assert sorted(again) == sorted(fresh)
    for name in fresh:
        assert again[name].dtype == fresh[name].dtype
        np.testing.assert_array_equal(again[name], fresh[name])
    longer = _task(max_length=224)
    training_features(run, longer, examples)
    assert longer.calls == 1  # another max_length
    other_data = _task()
    training_features(run, other_data, [dataclasses.replace(examples[0], question="Who?"), *examples[1:]])
    assert other_data.calls == 1  # other data
    tokenizer = load_demo_tokenizer()
    tokenizer.add_tokens(["zzzqqq"])
    other_tokenizer = _task(tokenizer=tokenizer)
    training_features(run, other_tokenizer, examples)
    assert other_tokenizer.calls == 1  # another tokenizer
    assert len(list((tmp_path / "features").glob("*.npz"))) == 4


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_a_damaged_file_is_reported_and_rebuilt(tmp_path, examples, capsys, how):
    run = _Run(tmp_path)
    fresh = training_features(run, _task(), examples)
    (path,) = (tmp_path / "features").glob("*.npz")
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    else:  # one flipped bit inside the largest array's bytes, where the zip's own checks may not look
        data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    capsys.readouterr()
    task = _task()
    rebuilt = training_features(run, task, examples)
    assert task.calls == 1 and "damaged" in capsys.readouterr().out
    for name in fresh:
        np.testing.assert_array_equal(rebuilt[name], fresh[name])
    again = _task()
    training_features(run, again, examples)
    assert again.calls == 0  # the rebuilt file is sound


def test_the_key_survives_the_tokenizer_calls_of_a_featurization(tmp_path):
    from stilts_jax.core.tokenization import load_demo_tokenizer as fresh_tokenizer
    from stilts_jax.data.examples import PairExample

    pairs = [
        PairExample(id=str(i), text_a=f"A sentence number {i}.", text_b="Another one.", label=i % 3, language="en")
        for i in range(8)
    ]
    task = _Counting(make_task(get_task("mnli"), fresh_tokenizer(), max_length=32))
    training_features(_Run(tmp_path), task, pairs)  # sets the tokenizer's truncation and padding
    training_features(_Run(tmp_path), task, pairs)
    assert task.calls == 1


def test_a_shared_cache_folder_serves_every_run_that_names_it(tmp_path, examples, capsys):
    shared = _Config(feature_cache=str(tmp_path / "shared"))
    first, second = _Run(tmp_path / "run1", shared), _Run(tmp_path / "run2", shared)
    task = _task()
    fresh = training_features(first, task, examples)
    again = training_features(second, task, examples)  # another run (another workdir) of the same data
    assert task.calls == 1 and "read from" in capsys.readouterr().out
    np.testing.assert_array_equal(again["input_ids"], fresh["input_ids"])
    assert len(list((tmp_path / "shared").glob("*.npz"))) == 1
    assert not (tmp_path / "run1" / "features").exists() and not (tmp_path / "run2" / "features").exists()
