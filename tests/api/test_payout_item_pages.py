"""A payout's itemsConnection pages its items (rows and packed blocks together) exactly as the
keyset pages over rows did: the same items, cursors, page info and totalCount, both ways."""
from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from api.graphql.base import Window
from api.graphql.payouts import item_page
from ledger import payout_items
from ledger.payout_items import ItemColumns, ItemRow


@st.composite
def payout(draw):
    """Items of one payout (some blocks of consecutive ids, some rows, ids in any layout) and a window."""
    ids = draw(st.lists(st.integers(1, 400), min_size=0, max_size=60, unique=True))
    in_block = draw(st.lists(st.booleans(), min_size=len(ids), max_size=len(ids)))
    rows, blocks = [], []
    run: list[int] = []
    for i in sorted(ids) + [None]:
        if i is not None and in_block[ids.index(i)] and (not run or run[-1] + 1 == i):
            run.append(i)
            continue
        if run:
            n = len(run)
            blocks.append(payout_items.Block(9, run[0], ["OUTCOME"] * n, [f"M{x % 3}" for x in run], run,
                                             [x * 10 for x in run], run, [0] * n, run))
            run = []
        if i is not None:
            if in_block[ids.index(i)]:
                run = [i]
            else:
                rows.append(ItemRow(i, 9, "OUTCOME", None, i, None, f"M{i % 3}", i, 0, i))
    # a cursor is usually an item's own id
    cursor = st.none() | st.integers(0, 410) | (st.sampled_from(sorted(ids)) if ids else st.none())
    window = Window(draw(st.integers(0, 5)), draw(cursor), draw(cursor), draw(st.booleans()))
    return ItemColumns(9, draw(st.permutations(rows)), draw(st.permutations(blocks))), window


def reference(items: list[ItemRow], metric: str | None, window: Window):
    """child_page's keyset page over rows, as SQL would give it."""
    rows = sorted(x for x in items if metric is None or x.metric_code == metric)
    inside = [x for x in rows if (window.after is None or x.id > window.after)
              and (window.before is None or x.id < window.before)]
    page = inside[::-1][:window.size + 1] if window.backward else inside[:window.size + 1]
    if window.backward:
        page = page[:window.size][::-1]
        more, beyond = len(inside) > window.size, window.before is not None and any(x.id >= window.before for x in rows)
        return [x.id for x in page], (beyond, more), len(rows)
    more, beyond = len(inside) > window.size, window.after is not None and any(x.id <= window.after for x in rows)
    return [x.id for x in page[:window.size]], (more, beyond), len(rows)


@settings(max_examples=300, deadline=None)
@given(payout(), st.sampled_from((None, "M0", "M1")))
def test_a_page_of_items_is_the_keyset_page_over_rows(paged, metric):
    items, window = paged
    rows = items.rows()
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    page = item_page(items, metric, window, lambda x: x)
    info = page.page_info
    assert ([x.id for x in page.node_list], (info.has_next_page, info.has_previous_page),
            asyncio.run(page.counter())) == reference(rows, metric, window)
    assert page.keys == [x.id for x in page.node_list]
