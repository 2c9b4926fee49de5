"""Multi-entity retrieval (contract C): the answers of a :class:`~sidecar.multi_request.
MultiRequest`, with the single-entity form's cache, statuses, reasons and metrics.

Per entity the distinct keys are looked up in the cache (the same (view, key) entries as
single-entity requests, shared with them); what is missing for every entity is then read
in **one** store call (:meth:`~sidecar.retrieval.StoreReader.read_groups`: one round trip,
one read for the circuit breaker, one time budget covering every (key, view) pair), and
filled, admitted to the cache and answered as :class:`~sidecar.retrieval.Retriever` does.
Each ``entities`` item gets ``{"entities": <the item as sent>, "features": {...}}`` with the
requested features in request order; an item sent twice is answered twice. The response is
degraded (``X-Featurestore-Degraded: 1``) when any answer is ``STORE_UNAVAILABLE``.
"""

from __future__ import annotations

import logging
from typing import Any, Final, cast

import orjson

from featurestore.online.store import ReadGroup
from sidecar.fragments import (
    KIND_LABELS,
    KINDS,
    PRESENT,
    REASON_KINDS,
    CachedRecord,
    Fragment,
)
from sidecar.multi_request import MultiRequest, ServicePlan
from sidecar.retrieval import Retriever

__all__ = ["MultiRetriever"]

log = logging.getLogger("sidecar")

_RESULT: Final = b'{"entities":%b,"features":{%b}},'
_NULL_KIND: Final = REASON_KINDS["NULL"] + 1  # MISSING, reason NULL


def _request_time(
    service: ServicePlan,
    stored: list[Fragment],
    request_values: dict[str, Any],
    tally: list[int],
) -> list[Fragment]:
    """The service's request-time features of one item: each expression (compiled once)
    over the stored features' values as served (a DEFAULT's value counts, a MISSING one is
    null) and the item's request values (a field not sent is null). ``PRESENT`` when the
    value is not null, else ``MISSING`` with reason ``NULL``; the timestamp is null."""
    answers = orjson.loads(b"{" + b",".join(stored) + b"}")
    values = {name: answer["value"] for name, answer in answers.items()}
    out: list[Fragment] = []
    for name, evaluate in service.request_features:
        try:
            value = evaluate(values, request_values)
        except Exception:  # a bug: the inputs were checked against their declared types
            log.exception("request-time feature %s of %s failed", name, service.name)
            value = None
        if value is None:
            answer: dict[str, Any] = {
                "value": None, "timestamp": None, "status": "MISSING", "reason": "NULL"
            }  # fmt: skip
            tally[_NULL_KIND] += 1
        else:
            answer = {"value": value, "timestamp": None, "status": "PRESENT"}
            tally[PRESENT] += 1
        out.append(orjson.dumps({name: answer})[1:-1])
    return out


class MultiRetriever:
    """Answers multi-entity requests with a :class:`Retriever`'s reader, cache and metrics."""

    def __init__(self, retriever: Retriever) -> None:
        self.retriever = retriever

    async def answers(self, request: MultiRequest) -> tuple[list[list[list[CachedRecord]]], bool]:
        """Per selection, per view, per distinct key of its entity: the answer record; and
        whether the response is degraded."""
        retriever = self.retriever
        metrics = retriever.metrics
        now = retriever.now()
        now_s = int(now.timestamp())
        shape = request.shape
        use_cache = retriever._use_cache
        lookups: list[tuple[list[list[Any]], list[list[int]], list[int]]] = []
        reads: list[ReadGroup] = []
        read_of: list[int] = []
        hits = misses = 0
        for g, (selection, unique) in enumerate(zip(shape.selections, request.keys, strict=True)):
            views = selection.views
            columns, missing = retriever._cached(views, unique)
            missed = sum(map(len, missing))
            hits += len(unique) * len(views) - missed
            misses += missed
            miss_at: list[int] = sorted(set().union(*missing)) if missed else []
            lookups.append((columns, missing, miss_at))
            if missed:
                reads.append(
                    ReadGroup(
                        selection.entity.name,
                        [unique[k] for k in miss_at],
                        [selection.view_reads[v] for v, m in enumerate(missing) if m],
                    )
                )
                read_of.append(g)
        if use_cache:
            if hits:
                metrics.cache_hits.inc(hits)
            if misses:
                metrics.cache_misses.inc(misses)

        degraded = False
        if reads:
            answer = await retriever.reader.read_groups(reads, now)
            if answer is None:
                degraded = True  # the slots stay MISS: answered as unavailable below
            else:
                for g, rows in zip(read_of, cast(list[Any], answer), strict=True):
                    selection = shape.selections[g]
                    columns, missing, miss_at = lookups[g]
                    degraded |= retriever._fill(
                        selection.entity,
                        columns,
                        missing,
                        miss_at,
                        request.keys[g],
                        selection.views,
                        rows,
                    )

        answers = [
            retriever._answers(selection, columns, now, now_s)
            for selection, (columns, _, _) in zip(shape.selections, lookups, strict=True)
        ]
        return answers, degraded

    async def retrieve(self, request: MultiRequest) -> tuple[bytes, bool]:
        """The JSON response body and whether it is degraded."""
        answers, degraded = await self.answers(request)
        shape = request.shape
        tally = [0] * len(KIND_LABELS)
        dumps = orjson.dumps
        out = [shape.head]
        service = request.service
        for i, raw in enumerate(request.raw):
            fragments = self.fragments(request, answers, i, tally)
            if service is not None and service.request_features:
                assert request.request_data is not None
                fragments += _request_time(service, fragments, request.request_data[i], tally)
            out.append(_RESULT % (dumps(raw), b",".join(fragments)))
        out[-1] = out[-1][:-1] + b"]}"
        self.retriever.metrics.feature_statuses(zip(KIND_LABELS, tally, strict=True))
        if degraded:
            self.retriever.metrics.degraded_responses.inc()
        return b"".join(out), degraded

    @staticmethod
    def fragments(
        request: MultiRequest,
        answers: list[list[list[CachedRecord]]],
        item: int,
        tally: list[int],
    ) -> list[Fragment]:
        """The answer fragments of the ``item``-th ``entities`` item, in request order; each
        answer's kind counted in ``tally``."""
        shape = request.shape
        out: list[Fragment] = []
        for g, pos, index in shape.wanted:
            entry = answers[g][pos][request.rows[g][item]]
            out.append(shape.selections[g].renderers[pos].parts(entry)[index])
            tally[entry[KINDS][index]] += 1
        return out
