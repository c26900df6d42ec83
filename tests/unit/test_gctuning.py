"""Full collections are held back only while batches run, and the collector's settings come back."""

from __future__ import annotations

import gc
import threading

from common.gctuning import HELD_BACK, YOUNG_THRESHOLD, full_collections_deferred


def test_thresholds_are_restored_after_nested_and_concurrent_holds() -> None:
    before = gc.get_threshold()
    inside: list[tuple[int, int, int]] = []
    release = threading.Event()
    entered = threading.Event()

    def other_batch() -> None:
        with full_collections_deferred():
            entered.set()
            release.wait(5)

    with full_collections_deferred():
        thread = threading.Thread(target=other_batch)
        thread.start()
        assert entered.wait(5)
        with full_collections_deferred():
            inside.append(gc.get_threshold())
    # the first holder left while the other thread's batch still runs: still held back
    assert gc.get_threshold()[2] == HELD_BACK
    release.set()
    thread.join(5)
    assert gc.get_threshold() == before
    assert inside == [(max(before[0], YOUNG_THRESHOLD), before[1], HELD_BACK)]
    assert gc.isenabled()


def test_thresholds_are_restored_when_the_block_raises() -> None:
    before = gc.get_threshold()
    try:
        with full_collections_deferred():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
