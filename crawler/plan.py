"""The cost model of an incremental sync: how far to walk before fetching the rest by id.

Once a full walk has finished, only new batches and batches still in flight can change.
New ones sit at the head of the list, above the last walk's head, so the walk from the top
down to there is always made. Batches in flight are refreshed either by walking further
(one request per 100 batches, sequential, refreshing every batch on the page) or by
`GET /batches/{id}` (one request per batch, but concurrent). Both cost requests, which are
what the rate limit counts, so the plan minimises requests:

    cost(d) = d + (in-flight batches below the first d pages)

over every depth d from 0 to the page holding the oldest in-flight batch; on a tie the
shallower plan wins, since requests by id run concurrently. A dense recent in-flight
region is walked; a lone straggler deep in the history is fetched by id.
"""

from __future__ import annotations

from collections.abc import Iterable


def walk_depth(positions: Iterable[int], page_size: int) -> int:
    """Pages to walk below the last head, given the in-flight batches' positions.

    Args:
        positions: each in-flight batch's position in the stored list, newest first
            (0 = the newest stored batch).
        page_size: batches per list page.
    """
    ordered = sorted(positions)
    best_depth, best_cost = 0, len(ordered)
    for covered, position in enumerate(ordered, start=1):
        depth = position // page_size + 1
        cost = depth + len(ordered) - covered
        if cost < best_cost:
            best_depth, best_cost = depth, cost
    return best_depth
