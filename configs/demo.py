"""The offline default: the whole pipeline on a tiny XLM-R-shaped model and shipped data, a few minutes on 2 cores.

    python -m stilts_jax.main --config=configs/demo.py

Data: stilts_jax/assets/demo, an XTREME download folder of small SQuAD v1.1 and TyDiQA-GoldP files in their real
formats (written by tools/make_demo_data.py from the shipped parallel sentences). Model: a tiny random XLM-R
created on first use with the shipped sentencepiece tokenizer.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import base

DEMO_DATA = os.path.join(os.path.dirname(__file__), "..", "stilts_jax", "assets", "demo")


def get_config():
    config = base.get_config(intermediate="squad", target="tydiqa")
    config.workdir = "workdir/demo"
    config.model.name = "workdir/tiny-xlmr"
    config.model.make_tiny = True
    config.model.dtype = "float32"
    # A model trained from scratch needs a far larger learning rate than fine-tuning XLM-R, and no dropout.
    for phase in (config.intermediate, config.target):
        phase.source = base.source("xtreme", path=os.path.abspath(DEMO_DATA))
        phase.max_length = 160
        phase.doc_stride = 64
        phase.train.batch_size = 32
        phase.train.epochs = 12.0
        phase.train.learning_rate = 5e-3
        phase.train.warmup_fraction = 0.1
        phase.train.dropout = False
        phase.train.log_every = 10
        phase.train.checkpoint_every = 40
        phase.train.eval_every = 0
    config.evaluation.batch_size = 64
    return config
