"""Label sets and language lists of the task datasets, in the orders their sources publish them."""

from __future__ import annotations

NLI_LABELS = ("entailment", "neutral", "contradiction")  # the order of the HF, TFDS and GLUE class labels
PAWS_LABELS = ("0", "1")  # 1: paraphrase; XTREME's files and submissions use "0"/"1"
QQP_LABELS = ("not_duplicate", "duplicate")
UPOS_TAGS = (
    "ADJ",
    "ADP",
    "ADV",
    "AUX",
    "CCONJ",
    "DET",
    "INTJ",
    "NOUN",
    "NUM",
    "PART",
    "PRON",
    "PROPN",
    "PUNCT",
    "SCONJ",
    "SYM",
    "VERB",
    "X",
)  # the 17 UD tags, in the order of google/xtreme's and TFDS's class labels
PANX_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")  # the order of the HF and TFDS class labels

UNKNOWN_TAG = "<unk>"  # open tag sets (CCG): gold tags unseen in training are scored as this tag

_NLI_ALIASES = {"contradictory": "contradiction", "e": "entailment", "n": "neutral", "c": "contradiction"}

# google-research/xtreme evaluate.py TASK2LANGS (XTREME) and utils_preprocess.py (XTREME-R additions).
XNLI_LANGUAGES = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
PAWSX_LANGUAGES = ("de", "en", "es", "fr", "ja", "ko", "zh")
XCOPA_LANGUAGES = ("et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh")
UDPOS_XTREME_LANGUAGES = (
    "af",
    "ar",
    "bg",
    "de",
    "el",
    "en",
    "es",
    "et",
    "eu",
    "fa",
    "fi",
    "fr",
    "he",
    "hi",
    "hu",
    "id",
    "it",
    "ja",
    "kk",
    "ko",
    "mr",
    "nl",
    "pt",
    "ru",
    "ta",
    "te",
    "th",
    "tl",
    "tr",
    "ur",
    "vi",
    "yo",
    "zh",
)
UDPOS_LANGUAGES = UDPOS_XTREME_LANGUAGES + ("lt", "pl", "uk", "wo", "ro")  # XTREME-R: 38 (UD v2.7 for the new five)
PANX_XTREME_LANGUAGES = (
    "ar",
    "he",
    "vi",
    "id",
    "jv",
    "ms",
    "tl",
    "eu",
    "ml",
    "ta",
    "te",
    "af",
    "nl",
    "en",
    "de",
    "el",
    "bn",
    "hi",
    "mr",
    "ur",
    "fa",
    "fr",
    "it",
    "pt",
    "es",
    "bg",
    "ru",
    "ja",
    "ka",
    "ko",
    "th",
    "sw",
    "yo",
    "my",
    "zh",
    "kk",
    "tr",
    "et",
    "fi",
    "hu",
)
PANX_LANGUAGES = PANX_XTREME_LANGUAGES + ("qu", "pl", "uk", "az", "lt", "pa", "gu", "ro")  # XTREME-R: 48
# UD treebanks (v2.5) without a dev set: Kazakh has train+test, Tagalog, Thai and Yoruba test only.
UDPOS_NO_DEV = frozenset({"kk", "tl", "th", "yo"})
# google/xtreme's udpos configs are named after the language.
UD_NAMES = {
    "af": "Afrikaans",
    "ar": "Arabic",
    "bg": "Bulgarian",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "es": "Spanish",
    "et": "Estonian",
    "eu": "Basque",
    "fa": "Persian",
    "fi": "Finnish",
    "fr": "French",
    "he": "Hebrew",
    "hi": "Hindi",
    "hu": "Hungarian",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "kk": "Kazakh",
    "ko": "Korean",
    "mr": "Marathi",
    "nl": "Dutch",
    "pt": "Portuguese",
    "ru": "Russian",
    "ta": "Tamil",
    "te": "Telugu",
    "th": "Thai",
    "tl": "Tagalog",
    "tr": "Turkish",
    "ur": "Urdu",
    "vi": "Vietnamese",
    "yo": "Yoruba",
    "zh": "Chinese",
}

# Span QA (SQuAD-format) datasets. TyDiQA-GoldP: the nine languages of its GoldP task. XQuAD and MLQA:
# google-research/xtreme evaluate.py XTREME_R_TASK2LANGS["xquad"] (XTREME_TASK2LANGS has the first 11, without ro) and
# ["mlqa"] (the same 7 in both; XTREME evaluates context language == question language).
TYDIQA_LANGUAGES = ("ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te")
XQUAD_LANGUAGES = ("en", "es", "de", "el", "ru", "tr", "ar", "vi", "th", "zh", "hi", "ro")
MLQA_LANGUAGES = ("en", "es", "de", "ar", "hi", "vi", "zh")
