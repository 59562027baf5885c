"""SQuAD v1.1 -> TyDiQA-GoldP with XLM-R Large: the paper's strongest QA pairing.

    python -m stilts_jax.main --config=configs/squad_to_tydiqa.py
    python -m stilts_jax.main --config=configs/squad_to_tydiqa.py --config.intermediate.source.kind=xtreme \
        --config.intermediate.source.path=/data/xtreme --config.target.source.kind=xtreme --config.target.source.path=/data/xtreme
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import base


def get_config():
    return base.get_config(intermediate="squad", target="tydiqa")
