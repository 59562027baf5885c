"""Sentence-retrieval data: BUCC 2018 (bitext mining) and Tatoeba (parallel sentence search).

Every line is checked; a bad one is an error naming the file and the line, never silently dropped.

BUCC 2018 (checked against the shared task's description, LASER tasks/bucc/bucc.sh and google-research/xtreme
scripts/download_data.sh, download_bucc18):
- Original release: the archives `bucc2018-{xx}-en.{sample,training}-gold.tar.bz2` (and the test archive) extract
  to `bucc2018/{xx}-en/{xx}-en.{split}.{xx|en|gold}` with split `sample`, `training` or `test`. Sentence files hold
  `id<TAB>sentence` lines; ids are the language code, a dash and 9 digits (`de-000413461`, `en-000091985`).
  `.gold` files hold `xx_id<TAB>en_id` lines, foreign side first. The test split has no gold file.
- XTREME layout: download_bucc18 moves those files up to `bucc2018/` and renames `training` to `test` and `sample`
  to `dev`: `bucc2018/{xx}-en.{dev,test}.{xx,en}` and `{xx}-en.dev.gold`; it deletes `{xx}-en.test.gold` (copies
  of the script in other projects keep it: a gold file is read whenever present). XTREME's "test" is BUCC's training
  split (BUCC's own test gold is not in these downloads). The threshold is chosen on dev (BUCC sample) and applied
  to test.
- Mining works on unique sentences (LASER's `--unify`): `deduplicate` gives the unique sentences of one side and the
  ids carrying each, and `expand_pairs` / `expand_candidates` map mined (row, row) pairs back to every id pair they
  stand for. LASER's and XTREME's bucc scoring instead drop every sentence that occurs more than once on its side
  (read_sent2id), so pairs involving repeated sentences can never count there; here they expand to all their ids.

Tatoeba (checked against LASER data/tatoeba/v1, xtreme utils_preprocess.py tatoeba_preprocess,
third_party/evaluate_retrieval.py + utils_retrieve.similarity_search, and the label files in xtreme
mock_test_data/labels/tatoeba):
- LASER's test set `tatoeba.{xxx}-eng.{xxx}` / `tatoeba.{xxx}-eng.eng` (ISO 639-3 names, 1000 pairs for most
  languages) is line-aligned: line i of one file translates line i of the other.
- XTREME's download copies the foreign file verbatim to `tatoeba/{xx}-en.{xx}` and writes the English file to
  `tatoeba/{xx}-en.en` sorted: lines stripped, then Python's stable `sorted` by text (code-point order; equal lines
  keep their original order). The permutation is not written anywhere, so the XTREME files alone have no gold
  ("we ... change the order of the test sentences", xtreme README).
- Direction: XTREME indexes the foreign sentences and searches them with the English ones
  (faiss `idx.add(x_foreign); idx.search(y_english, 1)`), so the queries are the English sentences in the sorted
  file's order, the candidates are the foreign sentences in file order, and a prediction file `test-{xx}.tsv`
  holds, for English line j of `{xx}-en.en`, the index of the foreign line it retrieves. The gold of query j is the
  original (LASER) line number of sorted English line j: the labels in mock_test_data (de: 367, 258, 374, 529,
  528, ...) are exactly that for LASER's deu-eng files ('"A cat?" asked the old man.', line 367, sorts first).
  Taking the gold of query j to be j (the English file's own line number) is wrong.
- `read_tatoeba` gives queries, candidates and gold in that convention from either layout: from LASER's files the
  gold is computed; from XTREME's files it comes from an XTREME label file (`labels=`), or is None.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence

from etils import epath

from stilts_jax.core.errors import InputError
from stilts_jax.core.io_utils import iter_lines
from stilts_jax.core.paths import PathLike, data_path

BUCC_LANGUAGES = ("de", "fr", "ru", "zh")
BUCC_ORIGINAL_SPLITS = ("sample", "training", "test")
BUCC_XTREME_SPLITS = ("dev", "test")
BUCC_XTREME_SPLIT_OF = {"sample": "dev", "training": "test"}  # what download_bucc18 renames them to
BUCC_LAYOUTS = ("auto", "original", "xtreme")

BUCC_HINT = (
    "to get it, download BUCC 2018 from https://comparable.limsi.fr/bucc2018/ "
    "(bucc2018-{lang}-en.sample-gold.tar.bz2 and bucc2018-{lang}-en.training-gold.tar.bz2; `tar -xjf` creates "
    "bucc2018/{lang}-en/), or run "
    "`bash scripts/download_data.sh` in a checkout of https://github.com/google-research/xtreme (it writes "
    "download/bucc2018/{lang}-en.{{dev,test}}.{{{lang},en}} and {lang}-en.dev.gold)"
)

# XTREME (utils_preprocess.py tatoeba_preprocess) names: ISO 639-1 -> LASER's ISO 639-3 file names.
TATOEBA_ISO3 = {
    "af": "afr",
    "ar": "ara",
    "az": "aze",
    "bg": "bul",
    "bn": "ben",
    "de": "deu",
    "el": "ell",
    "es": "spa",
    "et": "est",
    "eu": "eus",
    "fa": "pes",
    "fi": "fin",
    "fr": "fra",
    "he": "heb",
    "hi": "hin",
    "hu": "hun",
    "id": "ind",
    "it": "ita",
    "ja": "jpn",
    "jv": "jav",
    "ka": "kat",
    "kk": "kaz",
    "ko": "kor",
    "lt": "lit",
    "ml": "mal",
    "mr": "mar",
    "nl": "nld",
    "pl": "pol",
    "pt": "por",
    "ro": "ron",
    "ru": "rus",
    "sw": "swh",
    "ta": "tam",
    "te": "tel",
    "th": "tha",
    "tl": "tgl",
    "tr": "tur",
    "uk": "ukr",
    "ur": "urd",
    "vi": "vie",
    "zh": "cmn",
}
TATOEBA_LAYOUTS = ("auto", "laser", "xtreme")
TATOEBA_HINT = (
    "LASER's aligned files are data/tatoeba/v1/tatoeba.{iso3}-eng.{{{iso3},eng}} in "
    "https://github.com/facebookresearch/LASER; `bash scripts/download_data.sh` in a checkout of "
    "https://github.com/google-research/xtreme writes download/tatoeba/{lang}-en.{{{lang},en}} (English "
    "sorted, without the alignment: pass its label file as labels= to score it)"
)


class RetrievalDataError(InputError):
    pass


# --- reading lines -----------------------------------------------------------------------------------------------


def _lines(path: epath.Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its line break): lines end at \n only, so line numbers are the file's and
    every reader agrees on them; an undecodable line is an error naming it."""
    return iter_lines(path, RetrievalDataError)


def _missing(path: epath.Path, what: str, hint: str) -> RetrievalDataError:
    folder = path.parent
    where = "" if folder.is_dir() else f" (the folder {folder} does not exist either)"
    return RetrievalDataError(f"{what} not found: {path} is missing{where}. {hint[:1].upper()}{hint[1:]}.")


# --- BUCC 2018 ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BuccSplit:
    """One BUCC split of one language pair, both sides in file order."""

    language: str  # the foreign side: de, fr, ru or zh
    split: str  # as the files name it: sample/training/test (original) or dev/test (XTREME)
    src_ids: tuple[str, ...]
    src_sentences: tuple[str, ...]
    en_ids: tuple[str, ...]
    en_sentences: tuple[str, ...]
    gold: frozenset[tuple[str, str]] | None  # (src_id, en_id) pairs; None: the split has no gold file
    source: str  # the folder and layout, for messages


@dataclasses.dataclass(frozen=True)
class UniqueSentences:
    """One side's distinct sentences in order of first occurrence, and the ids (file order) carrying each."""

    sentences: tuple[str, ...]
    ids: tuple[tuple[str, ...], ...]  # ids[u]: every id whose sentence is sentences[u]

    def __len__(self) -> int:
        return len(self.sentences)


def bucc_paths(root: PathLike, language: str, split: str, layout: str = "auto") -> dict[str, epath.Path]:
    """{"src", "en", "gold"} paths of a split. `root` is the `bucc2018` folder or the folder holding it."""
    if language not in BUCC_LANGUAGES:
        raise RetrievalDataError(f"BUCC 2018 has no language {language!r}; valid: {', '.join(BUCC_LANGUAGES)}")
    if layout not in BUCC_LAYOUTS:
        raise RetrievalDataError(f"unknown BUCC layout {layout!r}; valid: {', '.join(BUCC_LAYOUTS)}")
    root = data_path(root)
    if root.name != "bucc2018" and (root / "bucc2018").is_dir():
        root = root / "bucc2018"
    pair = f"{language}-en"
    if layout == "auto":
        layout = "original" if (root / pair).is_dir() or split in ("sample", "training") else "xtreme"
        renamed = BUCC_XTREME_SPLIT_OF.get(split)
        xtreme_file = root / f"{pair}.{renamed}.en"
        if layout == "original" and renamed and not (root / pair).is_dir() and xtreme_file.is_file():
            raise RetrievalDataError(
                f"{root} has XTREME's BUCC layout, where the {split!r} split is called "
                f"{renamed!r}; ask for split {renamed!r}"
            )
    valid = BUCC_ORIGINAL_SPLITS if layout == "original" else BUCC_XTREME_SPLITS
    if split not in valid:
        known = split in (*BUCC_ORIGINAL_SPLITS, "dev")
        note = "; XTREME renamed sample to dev and training to test" if known else ""
        raise RetrievalDataError(
            f"unknown split {split!r} for the {layout} BUCC layout in {root}; valid: {', '.join(valid)}{note}"
        )
    folder = root / pair if layout == "original" else root
    stem = folder / f"{pair}.{split}"
    return {"src": data_path(f"{stem}.{language}"), "en": data_path(f"{stem}.en"), "gold": data_path(f"{stem}.gold")}


def read_bucc_sentences(path: PathLike, language: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(ids, sentences) of a BUCC `id<TAB>sentence` file whose ids must start with `{language}-`."""
    path = data_path(path)
    if not path.is_file():
        raise _missing(path, f"BUCC {language} sentence file", BUCC_HINT.format(lang=language))
    ids: list[str] = []
    sentences: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in _lines(path):
        where = f"{path}:{number}"
        if "\t" not in line:
            raise RetrievalDataError(f"{where}: no tab; BUCC sentence lines are `id<TAB>sentence` ({line[:60]!r})")
        sid, sentence = line.split("\t", 1)
        sid, sentence = sid.strip(), sentence.strip()
        _check_id(sid, language, where)
        if not sentence:
            raise RetrievalDataError(f"{where}: id {sid!r} has an empty sentence")
        if sid in first_line:
            raise RetrievalDataError(f"{where}: id {sid!r} repeats line {first_line[sid]}; ids must be unique")
        first_line[sid] = number
        ids.append(sid)
        sentences.append(sentence)
    if not ids:
        raise RetrievalDataError(f"{path} is empty")
    return tuple(ids), tuple(sentences)


def read_bucc_gold(
    path: PathLike,
    language: str,
    src_ids: Iterable[str] | None = None,
    en_ids: Iterable[str] | None = None,
    *,
    src_file: PathLike = "",
    en_file: PathLike = "",
) -> frozenset[tuple[str, str]]:
    """(src_id, en_id) pairs of a `.gold` file (`xx_id<TAB>en_id` lines); ids are checked against the sides if given
    (`src_file`, `en_file`: the sentence files they come from, named in errors)."""
    path = data_path(path)
    if not path.is_file():
        raise _missing(path, f"BUCC {language}-en gold file", BUCC_HINT.format(lang=language))
    known_src = None if src_ids is None else set(src_ids)
    known_en = None if en_ids is None else set(en_ids)
    pairs = set()
    for number, line in _lines(path):
        where = f"{path}:{number}"
        fields = line.split("\t")
        if len(fields) != 2:
            raise RetrievalDataError(
                f"{where}: expected `{language}_id<TAB>en_id`, got {len(fields)} tab-separated field(s) ({line[:60]!r})"
            )
        src, en = fields[0].strip(), fields[1].strip()
        _check_id(src, language, where, hint=" (the foreign id comes first)")
        _check_id(en, "en", where, hint=" (the English id comes second)")
        if known_src is not None and src not in known_src:
            raise RetrievalDataError(
                f"{where}: {src!r} is not an id of the {language} sentence file {src_file}; is "
                "this the gold file of another split, or is that file cut short?"
            )
        if known_en is not None and en not in known_en:
            raise RetrievalDataError(
                f"{where}: {en!r} is not an id of the English sentence file {en_file}; is this "
                "the gold file of another split, or is that file cut short?"
            )
        pairs.add((src, en))
    if not pairs:
        raise RetrievalDataError(f"{path} is empty")
    return frozenset(pairs)


def _check_id(sid: str, language: str, where: str, hint: str = "") -> None:
    if not sid:
        raise RetrievalDataError(f"{where}: empty id")
    if any(ch.isspace() for ch in sid):
        raise RetrievalDataError(f"{where}: id {sid!r} contains white space")
    if not sid.startswith(f"{language}-"):
        raise RetrievalDataError(
            f"{where}: id {sid!r} should start with {language + '-'!r}{hint}; BUCC ids are the "
            f"language code, a dash and digits (e.g. {language}-000000001)"
        )


def read_bucc(
    root: PathLike, language: str, split: str, *, layout: str = "auto", require_gold: bool = False
) -> BuccSplit:
    """One split of a BUCC 2018 folder in either layout (see the module docstring).

    The gold pairs are read when the split's `.gold` file exists (None otherwise; an error with require_gold=True).
    """
    paths = bucc_paths(root, language, split, layout)
    src_ids, src_sentences = read_bucc_sentences(paths["src"], language)
    en_ids, en_sentences = read_bucc_sentences(paths["en"], "en")
    gold = None
    if paths["gold"].is_file():
        gold = read_bucc_gold(paths["gold"], language, src_ids, en_ids, src_file=paths["src"], en_file=paths["en"])
    elif require_gold:
        raise _missing(paths["gold"], f"BUCC {language}-en {split} gold file", BUCC_HINT.format(lang=language))
    return BuccSplit(
        language, split, src_ids, src_sentences, en_ids, en_sentences, gold, source=str(paths["src"].parent)
    )


def deduplicate(ids: Sequence[str], sentences: Sequence[str]) -> UniqueSentences:
    """Distinct sentences (first occurrence order) and, for each, the ids carrying it."""
    if len(ids) != len(sentences):
        raise RetrievalDataError(f"{len(ids)} ids but {len(sentences)} sentences")
    row: dict[str, int] = {}
    groups: list[list[str]] = []
    for sid, sentence in zip(ids, sentences):
        if sentence not in row:
            row[sentence] = len(groups)
            groups.append([])
        groups[row[sentence]].append(sid)
    return UniqueSentences(tuple(row), tuple(tuple(g) for g in groups))


def expand_pairs(pairs: Iterable[tuple[int, int]], src: UniqueSentences, en: UniqueSentences) -> set[tuple[str, str]]:
    """(src_id, en_id) pairs of mined (unique src row, unique en row) pairs: each id of one with each of the other."""
    return {(s, e) for _, s, e in expand_candidates(((0.0, i, j) for i, j in pairs), src, en)}


def expand_candidates(
    candidates: Iterable[tuple[float, int, int]], src: UniqueSentences, en: UniqueSentences
) -> list[tuple[float, str, str]]:
    """(score, src_id, en_id) for mined (score, unique src row, unique en row) triples, in the given order."""
    out = []
    for score, i, j in candidates:
        if not 0 <= i < len(src) or not 0 <= j < len(en):
            raise RetrievalDataError(
                f"mined pair ({i}, {j}) is out of range: {len(src)} unique source and "
                f"{len(en)} unique English sentences"
            )
        out.extend((float(score), s, e) for s in src.ids[i] for e in en.ids[j])
    return out


# --- Tatoeba -----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TatoebaSet:
    """XTREME's Tatoeba task for one language: English queries searched against the foreign sentences."""

    language: str  # the foreign side, ISO 639-1 as XTREME names it
    queries: tuple[str, ...]  # English, in the order of XTREME's sorted `{xx}-en.en`
    candidates: tuple[str, ...]  # the foreign sentences in file order
    gold: tuple[int, ...] | None  # gold[j]: index into candidates of query j's translation; None: unknown
    source: str


def xtreme_english_order(english: Sequence[str]) -> list[int]:
    """The permutation XTREME applies to the English side: order[j] is the original line of sorted line j.

    Lines are compared stripped, by code point; equal lines keep their original order (Python's sort is stable).
    """
    stripped = [line.strip() for line in english]
    return sorted(range(len(stripped)), key=stripped.__getitem__)


def tatoeba_paths(root: PathLike, language: str, layout: str = "auto") -> tuple[str, epath.Path, epath.Path]:
    """(layout, foreign file, English file). `root` holds the files (or a `tatoeba` folder holding them)."""
    if language not in TATOEBA_ISO3:
        raise RetrievalDataError(
            f"no Tatoeba language {language!r}; valid (XTREME-R's 41): {', '.join(sorted(TATOEBA_ISO3))}"
        )
    if layout not in TATOEBA_LAYOUTS:
        raise RetrievalDataError(f"unknown Tatoeba layout {layout!r}; valid: {', '.join(TATOEBA_LAYOUTS)}")
    root = data_path(root)
    if root.name != "tatoeba" and (root / "tatoeba").is_dir():
        root = root / "tatoeba"
    iso3 = TATOEBA_ISO3[language]
    laser = (root / f"tatoeba.{iso3}-eng.{iso3}", root / f"tatoeba.{iso3}-eng.eng")
    xtreme = (root / f"{language}-en.{language}", root / f"{language}-en.en")
    if layout == "auto":
        if laser[0].is_file() or laser[1].is_file():
            layout = "laser"
        elif xtreme[0].is_file() or xtreme[1].is_file():
            layout = "xtreme"
        else:
            raise RetrievalDataError(
                f"Tatoeba {language} data not found in {root}: expected LASER's {laser[0].name} and {laser[1].name} "
                f"or XTREME's {xtreme[0].name} and {xtreme[1].name}. {TATOEBA_HINT.format(iso3=iso3, lang=language)}."
            )
    foreign, english = laser if layout == "laser" else xtreme
    for path in (foreign, english):
        if not path.is_file():
            raise _missing(
                path, f"Tatoeba {language} ({layout} layout) file", TATOEBA_HINT.format(iso3=iso3, lang=language)
            )
    return layout, foreign, english


def _read_sentences(path: epath.Path) -> list[str]:
    """One stripped sentence a line; an empty line is an error."""
    sentences = []
    for number, line in _lines(path):
        if not line.strip():
            raise RetrievalDataError(f"{path}:{number}: empty line; Tatoeba files hold one sentence a line")
        sentences.append(line.strip())
    if not sentences:
        raise RetrievalDataError(f"{path} is empty")
    return sentences


def read_index_file(path: PathLike, num_candidates: int | None = None) -> tuple[int, ...]:
    """One candidate index a line (XTREME's Tatoeba label and prediction files `test-{xx}.tsv`)."""
    path = data_path(path)
    if not path.is_file():
        raise RetrievalDataError(f"index file not found: {path}")
    indices = []
    for number, line in _lines(path):
        text = line.strip()
        try:
            index = int(text)
        except ValueError:
            raise RetrievalDataError(f"{path}:{number}: expected one integer index, got {text!r}") from None
        if index < 0 or (num_candidates is not None and index >= num_candidates):
            bound = "" if num_candidates is None else f" (there are {num_candidates} candidates)"
            raise RetrievalDataError(f"{path}:{number}: index {index} is out of range{bound}")
        indices.append(index)
    return tuple(indices)


def read_tatoeba(root: PathLike, language: str, *, layout: str = "auto", labels: PathLike | None = None) -> TatoebaSet:
    """XTREME's Tatoeba task for `language` from LASER's aligned files or XTREME's download (module docstring).

    LASER layout: the English side is sorted as XTREME sorts it and the gold is the permutation (labels= is refused).
    XTREME layout: the English file must already be sorted; the gold comes from `labels` (an XTREME label file, one
    foreign-line index per English line) or is None.
    """
    layout, foreign_path, english_path = tatoeba_paths(root, language, layout)
    foreign = _read_sentences(foreign_path)
    english = _read_sentences(english_path)
    if len(foreign) != len(english):
        raise RetrievalDataError(
            f"Tatoeba {language}: {foreign_path} has {len(foreign)} lines but {english_path} has "
            f"{len(english)}; the two sides must have one line per pair"
        )
    if layout == "laser":
        if labels is not None:
            raise RetrievalDataError(
                f"labels= is for XTREME's sorted files; {foreign_path.parent} holds LASER's "
                f"aligned files, whose gold is computed"
            )
        order = xtreme_english_order(english)
        return TatoebaSet(
            language, tuple(english[i] for i in order), tuple(foreign), tuple(order), source=str(foreign_path.parent)
        )
    for number in range(1, len(english)):
        if english[number] < english[number - 1]:
            raise RetrievalDataError(
                f"{english_path}:{number + 1}: the English side is not sorted ({english[number - 1][:40]!r} comes "
                f"before {english[number][:40]!r}), so it is not the file XTREME's utils_preprocess.py writes; "
                f"use layout='laser' for LASER's aligned files"
            )
    gold = None
    if labels is not None:
        gold = read_index_file(labels, len(foreign))
        if len(gold) != len(english):
            raise RetrievalDataError(
                f"{labels} has {len(gold)} indices but {english_path} has {len(english)} English "
                f"queries; one index per English line is expected"
            )
    return TatoebaSet(language, tuple(english), tuple(foreign), gold, source=str(foreign_path.parent))
