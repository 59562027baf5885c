"""Multi-task intermediate training on the paper's nine English tasks, then one target (Phang et al. 2020):

    python -m stilts_jax.main --config=configs/multitask.py                       # -> XNLI
    python -m stilts_jax.main --config=configs/multitask.py:target=tydiqa
    ... --config.intermediate.sampling=temperature --config.intermediate.temperature=2 --config.intermediate.cap=100000
    ... --config.intermediate.mlm.files="['/data/cc100/*.txt']" --config.intermediate.mlm.share=0.1   # + MLM auxiliary

One shared encoder, one head per task; each step trains one task, sampled in proportion to its number of training
features (the paper's rule; `cap` and temperature scaling as T5/jiant offer them). Checkpoints are ranked by the mean
of the nine English dev scores. CCG (CCGbank, LDC-licensed) has no public copy: point its source at your converted
files, `--config.intermediate.task_sources.ccg.path=/data/ccg`, or drop it with `--config.intermediate.tasks=[...]`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import base

# ANLI+ (ANLI + MNLI + SNLI), CCG, CommonsenseQA, Cosmos QA, HellaSwag, MNLI, QQP, SQuAD v1.1, SQuAD v2.0.
PAPER_TASKS = ["anli_plus", "ccg", "commonsenseqa", "cosmosqa", "hellaswag", "mnli", "qqp", "squad", "squad_v2"]


def get_config(arg: str = "target=xnli"):
    values = dict(item.split("=", 1) for item in arg.split(",") if item)
    unknown = set(values) - {"target"}
    if unknown:
        raise ValueError(f"configs/multitask.py takes target=Y; unknown: {sorted(unknown)}")
    target = values.get("target", "xnli")
    config = base.get_config(intermediate="multitask", target=target)
    config.workdir = f"workdir/multitask_to_{target}"
    config.intermediate.tasks = list(PAPER_TASKS)
    # Every task but CCG reads the hub by default; CCG needs the user's files.
    config.intermediate.task_sources = {"ccg": base.source("files")}
    config.intermediate.train.eval_every = 5000
    return config
