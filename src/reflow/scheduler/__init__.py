"""The job scheduler and manager: policies, cron, the priority queue, the job store."""

from reflow.scheduler.cron import CronSchedule, ScheduleError
from reflow.scheduler.manager import JobManager, ScheduleResult, ScheduleStatus
from reflow.scheduler.policies import (
    CronPolicy,
    CustomPolicy,
    DependencyPolicy,
    EventPolicy,
    ImmediatePolicy,
    SchedulePolicy,
)
from reflow.scheduler.queue import JobQueue, QueuedRun, QueueFullError
from reflow.scheduler.store import JobStore

__all__ = [
    "CronPolicy",
    "CronSchedule",
    "CustomPolicy",
    "DependencyPolicy",
    "EventPolicy",
    "ImmediatePolicy",
    "JobManager",
    "JobQueue",
    "JobStore",
    "QueueFullError",
    "QueuedRun",
    "ScheduleError",
    "SchedulePolicy",
    "ScheduleResult",
    "ScheduleStatus",
]
