"""Mewsli-X (XTREME-R's entity retrieval): readers for its JSON-lines files, query and candidate texts.

What this follows (google-research dense_representations_for_entity_retrieval/mel/README.md and
mewsli_x/schema.py, copied into google-research/xtreme as third_party/utils_mewslix.py; processors/mewslix.py,
run_retrieval_el.py and scripts/{download,train}_mewslix.sh; Botha et al. 2020 "Entity Linking in 100
Languages"; Ruder et al. 2021, XTREME-R):

- Files (`download/mewslix/` after xtreme's download_mewslix_data.sh, which runs Mewsli-X's get-mewsli-x.sh):
  `candidate_set_entities.jsonl` (1,003,893 entities; descriptions in 50 languages), `wikinews_mentions-{dev,test}.jsonl`
  (evaluation: WikiNews articles in ar de en es fa ja pl ro ta tr uk, each with one or more mentions),
  `wikipedia_pairs-{train,dev}.jsonl` (English fine-tuning pairs). One JSON object per line; no hub or TFDS copy.
- Entity: `entity_id` (WikiData QID), `title`, `description`, `description_language`, `description_url`,
  `sentence_spans` ([{start, end}] into the description). Candidate text (preprocess_entity_description): the
  description's sentences joined by spaces, newlines folded to spaces, double spaces collapsed, stripped.
- Context: `document_title`, `document_url`, `document_id`, `language`, `text`, `sentence_spans`, optional
  `section_title`. Mention: `example_id`, `entity_id`, `mention_span` {start, end, text} with
  text == context.text[start:end]. WikiNews lines are {context, mentions: [...]}; Wikipedia pairs are
  {contextual_mention: {context, mention}, entity}.
- Query text (preprocess_mention, the XTREME-R baseline): only the sentence that holds the mention (a mention
  crossing sentence boundaries is an error there); `{`...`}` already in it become `(`...`)`; the mention is
  marked as ` { mention } ` and the mention plus ": " is put in front, so truncation cannot cut it off; newlines
  become spaces, double spaces are collapsed once, and the result is stripped.
- Scoring: per query language, the mention's single gold entity against the top 20 retrieved ids: reciprocal
  rank within the top 20, which is mAP@20 with one relevant item (utils_mewslix.evaluate). Prediction files
  `mewslix/test-{lang}.json` map `example_id` to the ranked entity ids.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence
from typing import Any

from etils import epath

from stilts_jax.core.paths import PathLike, data_path
from stilts_jax.data.jsonl import json_objects
from stilts_jax.data.ranked_retrieval import DualPair, Query, RankedRetrievalDataError, RetrievalPool

MEWSLIX_LANGUAGES = ("ar", "de", "en", "es", "fa", "ja", "pl", "ro", "ta", "tr", "uk")
CANDIDATES_FILE = "candidate_set_entities.jsonl"
MEWSLIX_HINT = (
    "run `bash scripts/download_mewslix_data.sh` in a checkout of https://github.com/google-research/xtreme "
    "(it writes download/mewslix/ with candidate_set_entities.jsonl, wikinews_mentions-{dev,test}.jsonl and "
    "wikipedia_pairs-{train,dev}.jsonl), and pass that folder (or download/) as the source path"
)
_MARKED = re.compile(r"\{(.*?)\}")


@dataclasses.dataclass(frozen=True)
class Entity:
    entity_id: str
    title: str
    description: str
    language: str
    sentence_spans: tuple[tuple[int, int], ...]


@dataclasses.dataclass(frozen=True)
class Mention:
    example_id: str
    entity_id: str
    language: str
    context: str
    sentence_spans: tuple[tuple[int, int], ...]
    start: int
    end: int
    text: str


def mewslix_path(root: PathLike, name: str) -> epath.Path:
    """`{root}/{name}` or `{root}/mewslix/{name}`, the first present."""
    root = data_path(root)
    for path in (root / name, root / "mewslix" / name):
        if path.is_file():
            return path
    raise RankedRetrievalDataError(f"Mewsli-X file {name} not found in {root} or {root / 'mewslix'}; {MEWSLIX_HINT}")


def _records(path: epath.Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """("file:line", object) for every non-empty line; bad JSON or a non-object is an error naming the line."""
    for _, where, record in json_objects(path, RankedRetrievalDataError):
        yield where, record


def _field(record: dict[str, Any], key: str, where: str, kind: type = str) -> Any:
    if key not in record:
        raise RankedRetrievalDataError(f"{where}: missing field {key!r} (fields: {', '.join(sorted(record))})")
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RankedRetrievalDataError(f"{where}: field {key!r} should be {kind.__name__}, got {value!r:.60}")
    return value


def _spans(record: dict[str, Any], text: str, where: str) -> tuple[tuple[int, int], ...]:
    spans = []
    for i, span in enumerate(_field(record, "sentence_spans", where, list)):
        at = f"{where} sentence_spans[{i}]"
        if not isinstance(span, dict):
            raise RankedRetrievalDataError(f"{at}: expected {{start, end}}, got {span!r:.60}")
        start, end = _field(span, "start", at, int), _field(span, "end", at, int)
        if not 0 <= start < end <= len(text):
            raise RankedRetrievalDataError(f"{at}: [{start}, {end}) does not lie inside the {len(text)} characters")
        spans.append((start, end))
    return tuple(spans)


def _entity(record: dict[str, Any], where: str) -> Entity:
    description = _field(record, "description", where)
    return Entity(
        _field(record, "entity_id", where),
        _field(record, "title", where),
        description,
        _field(record, "description_language", where),
        _spans(record, description, where),
    )


def _mentions(context: dict[str, Any], mentions: Sequence[Any], where: str) -> list[Mention]:
    text = _field(context, "text", f"{where} context")
    if not text:
        raise RankedRetrievalDataError(
            f"{where}: the context text is empty: this is the released `*_no_text` file; get-mewsli-x.sh fills in "
            "the WikiNews article text"
        )
    language = _field(context, "language", f"{where} context")
    spans = _spans(context, text, f"{where} context")
    out = []
    for i, mention in enumerate(mentions):
        at = f"{where} mention {i}"
        if not isinstance(mention, dict):
            raise RankedRetrievalDataError(f"{at}: expected an object")
        span = _field(mention, "mention_span", at, dict)
        start, end, surface = _field(span, "start", at, int), _field(span, "end", at, int), _field(span, "text", at)
        if not (0 <= start < end <= len(text)) or text[start:end] != surface:
            raise RankedRetrievalDataError(
                f"{at}: mention_span [{start}, {end}) {surface!r} does not match the "
                f"context there ({text[start:end]!r:.60})"
            )
        out.append(
            Mention(
                _field(mention, "example_id", at),
                _field(mention, "entity_id", at),
                language,
                text,
                spans,
                start,
                end,
                surface,
            )
        )
    return out


def read_entities(path: PathLike) -> list[Entity]:
    """`candidate_set_entities.jsonl`: one entity per line, ids unique."""
    path, entities, seen = data_path(path), [], set()
    for where, record in _records(path):
        entity = _entity(record, where)
        if entity.entity_id in seen:
            raise RankedRetrievalDataError(f"{where}: entity {entity.entity_id} appears twice")
        seen.add(entity.entity_id)
        entities.append(entity)
    if not entities:
        raise RankedRetrievalDataError(f"{path}: no entities")
    return entities


def read_wikinews_mentions(path: PathLike) -> list[Mention]:
    """`wikinews_mentions-{dev,test}.jsonl`: {context, mentions} per line, flattened to one Mention each; example ids
    (the keys of the prediction files) unique."""
    path, out = data_path(path), []
    first_seen: dict[str, str] = {}
    for where, record in _records(path):
        mentions = _field(record, "mentions", where, list)
        for i, mention in enumerate(_mentions(_field(record, "context", where, dict), mentions, where)):
            _check_unique_example(mention.example_id, f"{where} mention {i}", first_seen)
            out.append(mention)
    if not out:
        raise RankedRetrievalDataError(f"{path}: no mentions")
    return out


def _check_unique_example(example_id: str, where: str, first_seen: dict[str, str]) -> None:
    if example_id in first_seen:
        raise RankedRetrievalDataError(
            f"{where}: example_id {example_id!r} is already used by {first_seen[example_id]}; "
            "predictions are keyed by example_id, so each mention needs its own"
        )
    first_seen[example_id] = where


def read_wikipedia_pairs(path: PathLike) -> list[tuple[Mention, Entity]]:
    """`wikipedia_pairs-{train,dev}.jsonl`: {contextual_mention: {context, mention}, entity} per line."""
    path, out = data_path(path), []
    for where, record in _records(path):
        contextual = _field(record, "contextual_mention", where, dict)
        (mention,) = _mentions(
            _field(contextual, "context", where, dict), [_field(contextual, "mention", where, dict)], where
        )
        entity = _entity(_field(record, "entity", where, dict), f"{where} entity")
        if entity.entity_id != mention.entity_id:
            raise RankedRetrievalDataError(
                f"{where}: the mention links {mention.entity_id} but the entity is {entity.entity_id}"
            )
        out.append((mention, entity))
    if not out:
        raise RankedRetrievalDataError(f"{path}: no pairs")
    return out


def _normalize(text: str) -> str:
    return " ".join(text.splitlines()).replace("  ", " ").strip()


def entity_text(entity: Entity) -> str:
    """The candidate text: the description's sentences joined by spaces, lightly normalised."""
    return _normalize(" ".join(entity.description[s:e] for s, e in entity.sentence_spans))


def mention_text(mention: Mention) -> str:
    """The query text: `mention: left { mention } right` over the one sentence holding the mention."""
    holder = next(((s, e) for s, e in mention.sentence_spans if s <= mention.start and mention.end <= e), None)
    if holder is None:
        raise RankedRetrievalDataError(
            f"mention {mention.example_id} [{mention.start}, {mention.end}) is in no single "
            "sentence of its context (it crosses a sentence break, or the context has none)"
        )
    start, end = holder
    left = _MARKED.sub(r"(\1)", mention.context[start : mention.start])
    right = _MARKED.sub(r"(\1)", mention.context[mention.end : end])
    return _normalize(f"{mention.text}: {left} {{ {mention.text} }} {right}")


def wikipedia_training_pairs(pairs: Sequence[tuple[Mention, Entity]]) -> list[DualPair]:
    return [DualPair(mention_text(m), entity_text(e), None, e.entity_id) for m, e in pairs]


def wikipedia_dev_pool(pairs: Sequence[tuple[Mention, Entity]], source: str) -> RetrievalPool:
    """English dev mentions against the distinct entities of the dev pairs (model selection by mAP@20); the mentions'
    example ids key the ranking, so a repeated one is an error."""
    first_seen: dict[str, str] = {}
    for i, (mention, _) in enumerate(pairs):
        _check_unique_example(mention.example_id, f"{source}: pair {i + 1}", first_seen)
    entities: dict[str, Entity] = {}
    for _, entity in pairs:
        entities.setdefault(entity.entity_id, entity)
    queries = tuple(Query(m.example_id, mention_text(m), frozenset({m.entity_id})) for m, _ in pairs)
    return RetrievalPool(
        {"en": queries}, tuple(entities), tuple(entity_text(e) for e in entities.values()), None, source
    )


def read_mewslix(root: PathLike, split: str, languages: Sequence[str]) -> RetrievalPool:
    """WikiNews mentions of `split` (dev or test) in `languages` against the whole candidate set."""
    if split not in ("dev", "test"):
        raise RankedRetrievalDataError(f"Mewsli-X evaluation split must be dev or test, got {split!r}")
    entities = read_entities(mewslix_path(root, CANDIDATES_FILE))
    mentions_path = mewslix_path(root, f"wikinews_mentions-{split}.jsonl")
    by_language: dict[str, list[Query]] = {lang: [] for lang in languages}
    for mention in read_wikinews_mentions(mentions_path):
        if mention.language in by_language:
            by_language[mention.language].append(
                Query(mention.example_id, mention_text(mention), frozenset({mention.entity_id}))
            )
    empty = [lang for lang, queries in by_language.items() if not queries]
    if empty:
        raise RankedRetrievalDataError(f"{mentions_path}: no mentions in language(s) {', '.join(empty)}")
    return RetrievalPool(
        {lang: tuple(q) for lang, q in by_language.items()},
        tuple(e.entity_id for e in entities),
        tuple(entity_text(e) for e in entities),
        None,
        f"Mewsli-X {split} in {root}",
    )
