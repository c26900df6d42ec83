"""The fast path's job class (worker.lean_job): the result handover keeps what it is handed."""

from __future__ import annotations

import fakeredis

from common import keys
from worker.lean_job import LeanJob
from worker.publish import ResultPublisher, ResultWrite


def test_a_publisher_hands_its_last_results_to_the_job_that_offers_a_handover(
    fake_client: fakeredis.FakeRedis,
) -> None:
    job = LeanJob("j1", connection=fake_client)
    job.result_handover = job.hand_over
    publisher = ResultPublisher.for_job(job, "b1", 0, 60, "w")
    publisher.add_rows([[0, None, "add", [1, 2], {}, 1, 3, 0.1]], 0, {})
    publisher.finish()
    assert isinstance(job.handed_over, ResultWrite)
    assert job.handed_over.stream.endswith("b1:results")
    assert fake_client.keys("*") == []  # nothing written: the success script writes it


def test_without_a_handover_the_publisher_writes_at_once(fake_client: fakeredis.FakeRedis) -> None:
    job = LeanJob("j2", connection=fake_client)
    publisher = ResultPublisher.for_job(job, "b2", 0, 60, "w")
    publisher.add_rows([[0, None, "add", [1, 2], {}, 1, 3, 0.1]], 0, {})
    publisher.finish()
    assert job.handed_over is None
    assert fake_client.xlen(keys.results_key("b2")) == 1
