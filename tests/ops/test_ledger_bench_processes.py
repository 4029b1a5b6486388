"""The ledger bench's multi-process variant (`python -m ops.bench.ledger`: `group commit, 2 processes`)
measures what `uvicorn --workers 2` does: two posting processes sharing one writer, the one holding the
writer seat making both processes' postings. Run here for a second, on PostgreSQL."""
from __future__ import annotations

import pytest

from tests.conftest import require_postgres


@pytest.mark.parametrize("shared", [True, False])
def test_two_posting_processes_share_one_writer_or_each_post_their_own(shared):
    require_postgres()
    from ops.bench import ledger as bench
    from tests.ledger.chain_checks import chain_length_if_whole
    with bench.ledgers_on("postgresql") as make:
        lg = make("processes")
        ids = bench.setup_accounts(lg, 20)
        figures = bench.posting_workers(lg, ids, 4, 2, 1.0, "test", shared=shared)
        posted = sum(f["postings"] for f in figures)
        # every posting answered is in one whole chain (with each worker's warm-up posting)
        assert posted > 0
        assert chain_length_if_whole(lg.db) == posted + 2
        sent = sorted(f["sent"] for f in figures)
        if shared:
            # one process held the seat and made its own; the other sent every one of its postings to it
            writer, other = sorted(figures, key=lambda f: f["sent"])
            assert writer["sent"] == 0 and other["sent"] == other["postings"] + 1  # (+ its warm-up)
        else:
            assert sent == [0, 0]
