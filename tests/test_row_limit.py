"""The driver's estimate of where a round's needed rows end (generation/row_limit.py)."""

from __future__ import annotations

import math

from sungen_ray.generation.row_limit import MARGIN, RowLimit, rows_to_go


def test_rows_to_go_follows_the_slowest_short_label():
    # label 0 needs 10 more and keeps 1 row in 2; label 1 needs 10 more and keeps 4 in 5; each is
    # half the stream: label 0 needs 10 * 2 / 0.5 = 40 rows, label 1 only 25
    assert rows_to_go([10, 10], kept=[50, 80], prompts=[100, 100], shares=[0.5, 0.5]) == math.ceil(40 * MARGIN)
    # a full label does not count, however poor its yield
    assert rows_to_go([0, 10], kept=[1, 80], prompts=[100, 100], shares=[0.5, 0.5]) == math.ceil(25 * MARGIN)
    assert rows_to_go([0, 0], kept=[1, 1], prompts=[9, 9], shares=[0.5, 0.5]) == 0


def test_no_estimate_while_a_short_label_has_kept_nothing():
    assert rows_to_go([5, 5], kept=[0, 3], prompts=[4, 4], shares=[0.5, 0.5]) is None
    assert rows_to_go([5, 5], kept=[0, 3], prompts=[0, 4], shares=[0.5, 0.5]) is None


def test_the_limit_is_a_batch_boundary_sent_only_when_it_moves():
    sent = []
    limit = RowLimit(send=sent.append, first_row=1000, batch_size=8, shares=[0.5, 0.5])
    limit.update(1016, need=[0, 4], kept=[8, 4], prompts=[8, 8])  # 4 * 2 / 0.5 * 1.15 = 19 rows to go
    assert sent == [1000 + 8 * math.ceil((16 + 19) / 8)] == [1040]
    limit.update(1024, need=[0, 2], kept=[12, 6], prompts=[12, 12])  # 10 rows to go: still 1040
    assert sent == [1040]
    limit.update(1032, need=[0, 2], kept=[16, 6], prompts=[16, 16])  # 13 rows to go past 1032: 1048
    assert sent == [1040, 1048]
    limit.update(1040, need=[3, 0], kept=[0, 20], prompts=[20, 20])  # no estimate: nothing sent
    assert sent == [1040, 1048]


def test_a_stream_that_read_all_below_its_limit_and_is_short_gets_a_higher_one():
    # The replicas hold every batch past the limit, so a limit that never moves past what was read
    # would stall the stream: any shortfall must send a limit beyond the rows read.
    sent = []
    limit = RowLimit(send=sent.append, first_row=0, batch_size=64, shares=[0.3, 0.7])
    for read in range(64, 64 * 20, 64):
        limit.update(read, need=[1, 1], kept=[5, 5], prompts=[500, 500])
        assert sent[-1] > read


def test_a_batch_cut_short_by_a_resume_still_lets_the_next_one_through():
    # A resumed pass skips the row ids it consumed before, so the last batch read may end before
    # its batch boundary (here rows 8-12 of batch 8-15). A limit counted from row 13 would fall on
    # 16 and hold batch 16-23, the very batch the driver waits for.
    sent = []
    limit = RowLimit(send=sent.append, first_row=0, batch_size=8, shares=[0.5, 0.5])
    limit.update(13, need=[0, 1], kept=[6, 6], prompts=[6, 7])  # ceil(1 * 7/6 / 0.5 * 1.15) = 3 rows to go
    assert sent == [24]
