"""The study's question offline: a sequential chain of two English intermediate stages (SQuAD, then MNLI) ahead of an
XCOPA-style target, zero-shot in 4 languages, on the tiny model and the shipped data (a few minutes on 2 cores).

    python -m stilts_jax.main --config=configs/chain_demo.py

Writes, besides the target's results.md, `intermediate/chain.md` (and chain.png): each stage's English dev score
after every later stage, i.e. what MNLI training did to the SQuAD skill. `--config.intermediate.task=squad&mnli`
trains both in one multi-task stage instead (the sequential chain's counterpart); `squad&mnli+mnli` is a
multi-task stage, then MNLI alone (stage folders intermediate/0_squad-mnli and intermediate/1_mnli). The
XCOPA-style data (stilts_jax/demo/xcopa_data.py) is evaluated on its dev files (`evaluation.split=dev`);
`--config.target.task=xnli` swaps in the XNLI-style target (stilts_jax/demo/nli_data.py), evaluated in the same
languages.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import demo

import base

GLUE_COPY = os.path.abspath(os.path.join(demo.DEMO_DATA, "glue"))


def get_config():
    config = demo.get_config()
    config.workdir = "workdir/chain_demo"
    config.intermediate.task = "squad+mnli"
    with config.intermediate.unlocked():
        config.intermediate.task_sources = {"mnli": base.source("hf", repo=GLUE_COPY)}
        config.intermediate.stage_overrides = {"mnli": {"max_length": 128, "train": {"epochs": 6.0}}}
    config.intermediate.train.epochs = 8.0
    config.target = base.phase("xcopa")
    config.target.source = base.source("xtreme", path=os.path.abspath(demo.DEMO_DATA))
    config.target.max_length = 96
    config.target.train.batch_size = 32
    config.target.train.epochs = 6.0
    config.target.train.learning_rate = 3e-3
    config.target.train.warmup_fraction = 0.1
    config.target.train.dropout = False
    config.target.train.log_every = 10
    config.evaluation.split = "dev"
    # The shipped languages both targets have (XCOPA has no English): the chain sweep runs both targets.
    config.evaluation.languages = ["sw", "th", "tr", "zh"]
    return config
