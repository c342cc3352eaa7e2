"""Hyperparameter sweeps with ``train.py -m``: the task function that keeps a sweep going when
a job fails (``job.run_job``) and the Hydra callback that tabulates the jobs
(``summary.SweepSummary``). See docs/sweeps.md."""

from visdet.sweep.job import run_job
from visdet.sweep.summary import SweepSummary

__all__ = ["SweepSummary", "run_job"]
