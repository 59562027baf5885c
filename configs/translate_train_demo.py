"""Translate-train on shipped data: the demo's XNLI-style target trained on English plus machine translations.

    python -m stilts_jax.main --config=configs/translate_train_demo.py            # translate-train-all
    python -m stilts_jax.main --config=configs/translate_train_demo.py:languages=de  # translate-train (German)

The translations are XTREME's translate-train files in the download folder (stilts_jax/assets/demo/xnli/XNLI-Translated/
en-{lang}-translated.tsv, written by tools/make_demo_data.py). `languages=all` trains on English and every shipped translation,
each language drawn equally often (mT5's translate-train-all); a language code trains on English and that one
translation (XTREME's translate-train). Results are labelled with the setting, never as zero-shot.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import base

DEMO_DATA = os.path.join(os.path.dirname(__file__), "..", "stilts_jax", "assets", "demo")


def get_config(languages: str = "all"):
    config = base.get_config(intermediate="", target="xnli")
    config.workdir = f"workdir/translate_train_demo_{languages}"
    config.model.name = "workdir/tiny-xlmr"
    config.model.make_tiny = True
    config.model.dtype = "float32"
    target = config.target
    target.source = base.source("xtreme", path=os.path.abspath(DEMO_DATA))
    # XNLI's languages among the shipped parallel sentences: the demo's translations and evaluation languages.
    demo_languages = ["ar", "de", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "zh"]
    target.train_languages = demo_languages if languages == "all" else ["en", languages]
    target.language_sampling = "balanced"
    # A model trained from scratch needs a far larger learning rate than fine-tuning XLM-R, and no dropout.
    target.max_length = 128
    target.train.batch_size = 32
    target.train.epochs = 3.0
    target.train.learning_rate = 5e-3
    target.train.warmup_fraction = 0.1
    target.train.dropout = False
    target.train.log_every = 10
    target.train.eval_every = 0
    config.evaluation.split = "dev"  # the demo's XNLI has dev files in its languages
    config.evaluation.languages = demo_languages
    config.evaluation.batch_size = 64
    return config
