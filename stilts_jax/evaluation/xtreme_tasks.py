"""The task, language and group tables of google-research/xtreme `evaluate.py`, and the label sets the scorer checks.

Copied as data from evaluate.py (the version with `--xtreme_version`, Mewsli-X and XCOPA): XTREME_GROUP2TASK,
XTREME_R_GROUP2TASK, XTREME_TASK2LANGS, XTREME_R_TASK2LANGS and get_suffix. Language order matters: evaluate.py
averages per-language scores in this order and writes them in this order.

Things evaluate.py itself cannot aggregate (the scorer reports them under its "extensions" key):
- LAReQA has no languages in XTREME_R_TASK2LANGS (`'lareqa': []`), so evaluate.py writes `"lareqa": {}`. The scorer
  scores `lareqa/test-{lang}.json` for LAREQA_LANGUAGES (the 11 XQuAD-R languages) with mAP@20.
- Mewsli-X gets `map@20` and `avg_map@20` but no `avg_metric`, so the XTREME-R "retrieval" group (tatoeba, mewslix)
  and "all_task" raise a TypeError in evaluate.py. The scorer computes them with avg_map@20 as the task metric.
"""

from __future__ import annotations

from stilts_jax.core.errors import InputError
from stilts_jax.data.task_sources import vocabulary
from stilts_jax.data.task_sources.vocabulary import NLI_LABELS, PAWS_LABELS, UPOS_TAGS

BENCHMARKS = ("xtreme", "xtreme-r")

XTREME_GROUP2TASK: dict[str, list[str]] = {
    "classification": ["pawsx", "xnli"],
    "tagging": ["udpos", "panx"],
    "qa": ["xquad", "mlqa", "tydiqa"],
    "retrieval": ["bucc2018", "tatoeba"],
}

XTREME_R_GROUP2TASK: dict[str, list[str]] = {
    "classification": ["xnli", "xcopa"],
    "tagging": ["udpos", "panx"],
    "qa": ["xquad", "mlqa", "tydiqa"],
    "retrieval": ["tatoeba", "mewslix"],
    "multi_choice": ["xcopa"],
}


def _langs(text: str) -> list[str]:
    return text.split(",")


XTREME_TASK2LANGS: dict[str, list[str]] = {
    "pawsx": _langs("de,en,es,fr,ja,ko,zh"),
    "xnli": _langs("ar,bg,de,el,en,es,fr,hi,ru,sw,th,tr,ur,vi,zh"),
    "panx": _langs(
        "ar,he,vi,id,jv,ms,tl,eu,ml,ta,te,af,nl,en,de,el,bn,hi,mr,ur,fa,fr,"
        "it,pt,es,bg,ru,ja,ka,ko,th,sw,yo,my,zh,kk,tr,et,fi,hu"
    ),
    "udpos": _langs(
        "af,ar,bg,de,el,en,es,et,eu,fa,fi,fr,he,hi,hu,id,it,ja,kk,ko,mr,nl,pt,ru,ta,te,th,tl,tr,ur,vi,yo,zh"
    ),
    "bucc2018": _langs("de,fr,ru,zh"),
    "tatoeba": _langs(
        "ar,he,vi,id,jv,tl,eu,ml,ta,te,af,nl,de,el,bn,hi,mr,ur,fa,fr,it,pt,es,bg,ru,ja,ka,ko,th,sw,zh,kk,tr,et,fi,hu"
    ),
    "xquad": _langs("en,es,de,el,ru,tr,ar,vi,th,zh,hi"),
    "mlqa": _langs("en,es,de,ar,hi,vi,zh"),
    "tydiqa": _langs("en,ar,bn,fi,id,ko,ru,sw,te"),
}

# XTREME-R drops PAWS-X and BUCC, adds XCOPA, LAReQA and Mewsli-X, and adds languages to UD-POS, PAN-X, Tatoeba
# and XQuAD (evaluate.py's own comment).
XTREME_R_TASK2LANGS: dict[str, list[str]] = {
    "xnli": _langs("ar,bg,de,el,en,es,fr,hi,ru,sw,th,tr,ur,vi,zh"),
    "panx": _langs(
        "ar,he,vi,id,jv,ms,tl,eu,ml,ta,te,af,nl,en,de,el,bn,hi,mr,ur,fa,fr,"
        "it,pt,es,bg,ru,ja,ka,ko,th,sw,yo,my,zh,kk,tr,et,fi,hu,qu,pl,uk,az,"
        "lt,pa,gu,ro"
    ),
    "udpos": _langs(
        "af,ar,bg,de,el,en,es,et,eu,fa,fi,fr,he,hi,hu,id,it,ja,kk,ko,mr,"
        "nl,pt,ru,ta,te,th,tl,tr,ur,vi,yo,zh,lt,pl,uk,wo,ro"
    ),
    "tatoeba": _langs(
        "ar,he,vi,id,jv,tl,eu,ml,ta,te,af,nl,de,el,bn,hi,mr,ur,fa,fr,it,"
        "pt,es,bg,ru,ja,ka,ko,th,sw,zh,kk,tr,et,fi,hu,az,lt,pl,uk,ro"
    ),
    "xcopa": _langs("et,ht,id,it,qu,sw,ta,th,tr,vi,zh"),
    "lareqa": [],
    "mewslix": _langs("ar,de,en,es,fa,ja,pl,ro,ta,tr,uk"),
    "xquad": _langs("en,es,de,el,ru,tr,ar,vi,th,zh,hi,ro"),
    "mlqa": _langs("en,es,de,ar,hi,vi,zh"),
    "tydiqa": _langs("en,ar,bn,fi,id,ko,ru,sw,te"),
}

# LAReQA (XQuAD-R) question languages, scored by this project only (evaluate.py lists none).
LAREQA_LANGUAGES = _langs("ar,de,el,en,es,hi,ru,th,tr,vi,zh")

GROUP2TASK = {"xtreme": XTREME_GROUP2TASK, "xtreme-r": XTREME_R_GROUP2TASK}
TASK2LANGS = {"xtreme": XTREME_TASK2LANGS, "xtreme-r": XTREME_R_TASK2LANGS}

# Labels the scorer accepts, in prediction and label files alike (the XTREME test-label conventions).
XNLI_LABELS = frozenset(NLI_LABELS)
PAWSX_LABELS = frozenset(PAWS_LABELS)
XCOPA_LABELS = frozenset({0, 1})
PANX_TAGS = frozenset(vocabulary.PANX_TAGS)
UDPOS_TAGS = frozenset(UPOS_TAGS)  # the 17 Universal Dependencies POS tags
LABEL_SETS = {"xnli": XNLI_LABELS, "pawsx": PAWSX_LABELS, "panx": PANX_TAGS, "udpos": UDPOS_TAGS}


def check_benchmark(benchmark: str) -> str:
    if benchmark not in BENCHMARKS:
        raise InputError(f"unknown benchmark {benchmark!r}; choose one of: {', '.join(BENCHMARKS)}")
    return benchmark


def get_suffix(task: str, benchmark: str) -> str:
    """The extension of `{task}/test-{lang}.*`, as evaluate.py's get_suffix (LAReQA: json, this project's choice)."""
    group2task = GROUP2TASK[check_benchmark(benchmark)]
    if task in group2task["qa"] or task in ("mewslix", "lareqa"):
        return "json"
    if task in group2task.get("multi_choice", ()):
        return "jsonl"
    return "tsv"
