"""XTREME-R's XCOPA chain: SIQA (Social IQa) as the intermediate task, then COPA, XCOPA's English training data, as
the target phase, then zero-shot XCOPA in its 11 languages.

    python -m stilts_jax.main --config=configs/siqa_to_xcopa.py
    python -m stilts_jax.main --config=configs/siqa_to_xcopa.py --config.intermediate.source.kind=xtreme \
        --config.intermediate.source.path=/data/xtreme/download --config.target.source.kind=xtreme \
        --config.target.source.path=/data/xtreme/download

Same as `configs/stilts.py:intermediate=siqa,target=xcopa`, with its own workdir.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import base


def get_config():
    config = base.get_config(intermediate="siqa", target="xcopa")
    config.workdir = "workdir/siqa_to_xcopa"
    return config
