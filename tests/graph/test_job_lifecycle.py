"""The job lifecycle is the state machine of seed §3.1.2, exactly."""

from __future__ import annotations

import itertools

import pytest

from reflow import InvalidTransitionError, Job, JobStatus, JobType
from reflow.testing import TestingSink, TestingSource

ALLOWED = {
    (JobStatus.CREATED, JobStatus.SCHEDULED),
    (JobStatus.SCHEDULED, JobStatus.RUNNING),
    (JobStatus.RUNNING, JobStatus.PAUSED),
    (JobStatus.PAUSED, JobStatus.RUNNING),
    (JobStatus.RUNNING, JobStatus.COMPLETED),
    (JobStatus.RUNNING, JobStatus.FAILED),
    (JobStatus.FAILED, JobStatus.RUNNING),
    (JobStatus.RUNNING, JobStatus.CANCELLED),
}


def _job() -> Job:
    return Job.builder().name("j").source(TestingSource([1])).sink(TestingSink()).build()


def _at(status: JobStatus) -> Job:
    job = _job()
    path = {
        JobStatus.CREATED: [],
        JobStatus.SCHEDULED: [JobStatus.SCHEDULED],
        JobStatus.RUNNING: [JobStatus.SCHEDULED, JobStatus.RUNNING],
        JobStatus.PAUSED: [JobStatus.SCHEDULED, JobStatus.RUNNING, JobStatus.PAUSED],
        JobStatus.COMPLETED: [JobStatus.SCHEDULED, JobStatus.RUNNING, JobStatus.COMPLETED],
        JobStatus.FAILED: [JobStatus.SCHEDULED, JobStatus.RUNNING, JobStatus.FAILED],
        JobStatus.CANCELLED: [JobStatus.SCHEDULED, JobStatus.RUNNING, JobStatus.CANCELLED],
    }[status]
    for step in path:
        job.transition(step)
    return job


@pytest.mark.parametrize("source,target", list(itertools.product(JobStatus, JobStatus)))
def test_every_pair_of_states(source: JobStatus, target: JobStatus) -> None:
    job = _at(source)
    if (source, target) in ALLOWED:
        job.transition(target)
        assert job.status is target
    else:
        with pytest.raises(InvalidTransitionError, match=f"cannot go from {source.value}"):
            job.transition(target)
        assert job.status is source


def test_metadata_and_timestamps() -> None:
    job = _job()
    assert job.job_id.startswith("job-")
    assert job.job_name == "j"
    assert job.job_type is JobType.BATCH  # every source is bounded
    assert job.start_time is None and job.end_time is None
    job.schedule()
    job.start()
    assert job.start_time is not None
    job.fail("boom")
    assert job.error == "boom" and job.end_time is not None
    job.retry()
    assert job.error is None
    job.complete()
    assert [s for s, _ in job.history] == [
        JobStatus.CREATED,
        JobStatus.SCHEDULED,
        JobStatus.RUNNING,
        JobStatus.FAILED,
        JobStatus.RUNNING,
        JobStatus.COMPLETED,
    ]


def test_unbounded_source_makes_a_streaming_job() -> None:
    job = Job.builder().source(TestingSource([], bounded=False)).sink(TestingSink()).build()
    assert job.job_type is JobType.STREAMING
