"""Host memory between phases: a finished phase's arrays are gone and malloc's free pages go back to the system."""

from __future__ import annotations

import gc

import jax
import numpy as np
import psutil
import pytest

from stilts_jax.config.loader import parse_config_args
from stilts_jax.core import host_memory
from stilts_jax.pipeline import context, run, training

MIB = 2**20


@pytest.mark.skipif(not host_memory.can_release(), reason="returning free heap pages needs glibc's malloc_trim")
def test_freed_heap_memory_goes_back_to_the_system():
    process = psutil.Process()
    # As a train step's buffers: many blocks under malloc's mmap threshold, freed while a later block pins the heap's
    # top, so that free() alone cannot shrink the heap and the pages stay resident.
    np.ones(24 * MIB, np.uint8)  # freed at once: raises glibc's mmap threshold above the blocks below
    blocks = [np.ones(4 * MIB, np.uint8) for _ in range(64)]  # 256 MiB on the heap, every page touched
    pin = np.ones(MIB, np.uint8)
    del blocks
    gc.collect()
    held = process.memory_info().rss
    assert host_memory.release_host_memory()
    returned = held - process.memory_info().rss
    # free() alone returns none of it (the pin holds the heap's top); how much malloc_trim returns depends on the heap's
    # state (about half to all of it here): a quarter is the bar.
    assert returned > 64 * MIB, f"only {returned / MIB:.0f} MiB of 256 MiB freed went back"
    del pin


@pytest.mark.slow  # the demo pipeline, about 40 s on 2 cores
def test_a_finished_phase_holds_no_array_when_its_memory_is_released(tmp_path, monkeypatch):
    config, _ = parse_config_args(
        [
            "--config=configs/demo.py",
            f"--config.workdir={tmp_path / 'run'}",
            f"--config.model.name={tmp_path / 'tiny'}",
            "--config.evaluation.languages=['sw']",
            "--config.evaluation.plots=false",
            *(
                option
                for phase in ("intermediate", "target")
                for option in (
                    f"--config.{phase}.train.max_steps=1",
                    f"--config.{phase}.train.batch_size=8",
                    f"--config.{phase}.max_dev_examples=4",
                    f"--config.{phase}.train.progress_bar=false",
                )
            ),
        ]
    )
    events: list[tuple[str, int]] = []
    table_shapes: set[tuple[int, ...]] = set()
    make_model = context.RunContext.make_model

    def recorded_make_model(self, task, seed, encoder_from=None):
        model = make_model(self, task, seed, encoder_from)
        table_shapes.add(model.encoder.embeddings.word[...].shape)
        events.append(("build", 0))
        return model

    def recorded_release() -> bool:
        # The phase's model, train state and Adam moments: every one of them holds the word embedding's shape.
        alive = [a for a in jax.live_arrays() if a.shape in table_shapes]
        events.append(("release", len(alive)))
        return host_memory.release_host_memory()

    monkeypatch.setattr(context.RunContext, "make_model", recorded_make_model)
    monkeypatch.setattr(training, "release_host_memory", recorded_release)
    run(config)
    # Released after each phase, before the next one builds its model; nothing of the finished phase is left then.
    assert events == [("build", 0), ("release", 0), ("build", 0), ("release", 0)]
