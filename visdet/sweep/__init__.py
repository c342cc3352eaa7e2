"""Hyperparameter sweeps with ``visdet train -m``: the Hydra callback that tabulates the jobs
(``summary.SweepSummary``); a failing job is recorded by ``visdet.runs.job.run_job`` and the
sweep goes on. See docs/sweeps.md."""

from visdet.sweep.summary import SweepSummary

__all__ = ["SweepSummary"]
