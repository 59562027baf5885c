"""Any intermediate -> target pairing: `--config=configs/stilts.py:intermediate=squad,target=tydiqa`.

`intermediate=none` is the baseline (no intermediate phase); `intermediate=anli+squad&mnli` is a chain
(stilts_jax/pipeline/chain.py: `+` between stages, `&` between the tasks one stage trains together), run in
workdir/anli+squad-mnli_to_<target>. `preset=published` (the default: each task as the code behind its published
numbers ran it, see configs/base.py) or `preset=own` (this project's earlier setup).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import base


def get_config(arg: str = "intermediate=squad,target=tydiqa"):
    values = dict(item.split("=", 1) for item in arg.split(",") if item)
    unknown = set(values) - {"intermediate", "target", "preset"}
    if unknown:
        raise ValueError(
            f"configs/stilts.py takes intermediate=X,target=Y[,preset=published|own]; unknown: {sorted(unknown)}"
        )
    intermediate = values.get("intermediate", "squad")
    config = base.get_config(
        intermediate="" if intermediate == "none" else intermediate,
        target=values.get("target", "tydiqa"),
        preset=values.get("preset", "published"),
    )
    return config
