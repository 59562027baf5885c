"""What the dual-encoder tasks (LAReQA, Mewsli-X) read into: training pairs and ranked-retrieval pools.

A pool is one candidate set shared by every query (LAReQA: the answer sentences of all 11 languages; Mewsli-X:
the ~1M entity descriptions) and the queries of each language with the ids of their relevant candidates.
"""

from __future__ import annotations

import dataclasses

from stilts_jax.core.errors import InputError


class RankedRetrievalDataError(InputError):
    pass


@dataclasses.dataclass(frozen=True)
class DualPair:
    """One English training pair: a query and its positive candidate (text, optional context, id)."""

    query: str
    candidate: str
    candidate_context: str | None
    candidate_id: str  # pairs sharing it are not used as each other's in-batch negatives


@dataclasses.dataclass(frozen=True)
class Query:
    id: str  # the key of the XTREME-R prediction file
    text: str
    relevant: frozenset[str]  # candidate ids


@dataclasses.dataclass(frozen=True)
class RetrievalPool:
    """Queries per language, searched against one pool of candidates."""

    queries: dict[str, tuple[Query, ...]]
    candidate_ids: tuple[str, ...]
    candidate_texts: tuple[str, ...]
    candidate_contexts: tuple[str, ...] | None  # LAReQA encodes (sentence, paragraph) pairs; None for Mewsli-X
    source: str

    def __post_init__(self) -> None:
        if len(self.candidate_ids) != len(self.candidate_texts):
            raise ValueError(f"{len(self.candidate_ids)} candidate ids but {len(self.candidate_texts)} texts")
        if self.candidate_contexts is not None and len(self.candidate_contexts) != len(self.candidate_ids):
            raise ValueError(f"{len(self.candidate_ids)} candidate ids but {len(self.candidate_contexts)} contexts")
        if len(set(self.candidate_ids)) != len(self.candidate_ids):
            raise RankedRetrievalDataError(f"{self.source}: candidate ids are not unique")
        known = set(self.candidate_ids)
        for language, queries in self.queries.items():
            for query in queries:
                missing = query.relevant - known
                if missing:
                    raise RankedRetrievalDataError(
                        f"{self.source}: query {query.id!r} ({language}) has relevant candidate(s) "
                        f"{sorted(missing)[:3]} that are not in the candidate pool"
                    )
