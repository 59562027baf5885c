"""The offline demo with a multi-task intermediate phase: SQuAD plus continued multilingual MLM on the shipped text
of 17 languages (the paper's "MLM during intermediate training"), then TyDiQA-GoldP, zero-shot in 9 languages.

    python -m stilts_jax.main --config=configs/multitask_demo.py

Everything else is configs/demo.py: the tiny XLM-R-shaped model and the shipped data.
"""

import glob
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import demo

TEXT = os.path.join(os.path.dirname(__file__), "..", "stilts_jax", "assets", "text")


def get_config():
    config = demo.get_config()
    config.workdir = "workdir/multitask_demo"
    config.intermediate.task = "multitask"
    config.intermediate.tasks = ["squad"]
    config.intermediate.mlm.files = sorted(os.path.abspath(p) for p in glob.glob(os.path.join(TEXT, "parallel.*.txt")))
    config.intermediate.mlm.share = 0.2
    config.intermediate.mlm.max_length = 64
    config.intermediate.mlm.init_from_checkpoint = False  # the tiny model is random: no pretrained lm_head
    return config
