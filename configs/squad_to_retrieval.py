"""SQuAD v1.1 -> sentence retrieval with the intermediate encoder (no target phase), as the paper does for
BUCC and Tatoeba.

    python -m stilts_jax.main --config=configs/squad_to_retrieval.py --config.target.source.path=/data/xtreme/download
    python -m stilts_jax.main --config=configs/squad_to_retrieval.py --config.target.task=bucc ...
    ... --config.evaluation.all_layers=true      # a score per layer: which layer transfers best

Retrieval data comes from folders (kind "xtreme"): LASER's Tatoeba files or XTREME's download (with
`--config.target.source.labels=<folder of XTREME label files>` to score it), and BUCC 2018 in its original or
XTREME layout.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import base


def get_config():
    config = base.get_config(intermediate="squad", target="tatoeba")
    config.workdir = "workdir/squad_to_retrieval"
    config.target.source = base.source("xtreme", path="download")
    config.target.max_length = 512
    return config
