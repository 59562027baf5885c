"""SQuAD v1.1 -> LAReQA (XQuAD-R) with a dual encoder, as XTREME-R trains its LAReQA baseline on SQuAD.

    python -m stilts_jax.main --config=configs/squad_to_lareqa.py \
        --config.target.source.path=/data/xtreme/download --config.dual_encoder.eval_path=/data/xtreme/download
    ... --config.target.task=mewslix --config.target.source.path=/data/xtreme/download   # SQuAD -> Mewsli-X

The target phase trains on SQuAD v1.1 question -> answer sentence pairs (from target.source: an XTREME download
folder here; kind hf reads `rajpurkar/squad`), keeps the best English dev mAP@20, and searches the XQuAD-R pool of
all 11 languages found under `dual_encoder.eval_path` (`lareqa/xquad-r/{lang}.json`, written by xtreme's
scripts/download_lareqa_data.sh). Offline, both paths must point at local folders.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import base


def get_config():
    config = base.get_config(intermediate="squad", target="lareqa")
    config.workdir = "workdir/squad_to_lareqa"
    config.target.source = base.source("xtreme", path="download")
    return config
