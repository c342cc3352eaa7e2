"""What a training process needs to know about how it was launched, at config time.

Under DDP several processes run the same entry point: Lightning's own launcher re-runs the
script for ranks 1..N-1 (pinning them to rank 0's output directory), while ``torchrun`` and
SLURM (``srun``) start every process themselves, each composing its Hydra config
independently. Two OmegaConf resolvers, used by conf/hydra/default.yaml, keep one output
directory per run in every case:

- ``${visdet_run_name:}``: the run directory's name: ``slurm-<job id>[-<step id>]`` under a
  multi-task SLURM job, ``torchrun-<rdzv id>`` under torchrun with a ``--rdzv-id`` (or
  ``--standalone``), else the start time (``%Y-%m-%d_%H-%M-%S``), as for a single process.
- ``${visdet_rank_zero:VALUE}``: VALUE on the global rank-0 process, null elsewhere.
- ``${visdet_hydra_subdir:OUTPUT_DIR}``: Hydra's config copy folder: ``.hydra`` (rank 0
  only), or ``.hydra-<date_time>`` when the run directory already holds one.

``is_rank_zero()`` reads the launchers' environment variables (``RANK``, ``LOCAL_RANK``,
``NODE_RANK``, ``SLURM_PROCID``) before any process group exists: the global rank-0
process is the one where each of them that is set is 0.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from omegaconf import OmegaConf


def is_rank_zero() -> bool:
    """Whether this process is the global rank 0 (True outside distributed training)."""
    ranks = [os.environ.get(v, "") for v in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")]
    return all(r in ("", "0") for r in ranks)


def run_name() -> str:
    env = os.environ
    if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and env.get("SLURM_JOB_ID"):
        step = env.get("SLURM_STEP_ID")
        return f"slurm-{env['SLURM_JOB_ID']}" + (f"-{step}" if step else "")
    run_id = env.get("TORCHELASTIC_RUN_ID", "")
    if run_id and run_id != "none":
        return f"torchrun-{run_id}"
    return time.strftime("%Y-%m-%d_%H-%M-%S")


def rank_zero_value(value):
    return value if is_rank_zero() else None


def hydra_subdir(output_dir: str) -> str | None:
    """Where Hydra writes its config copy in ``output_dir``: ``.hydra``, or, when an earlier
    run in that directory already wrote one, ``.hydra-<date_time>``, so a resumed or
    refused re-run never overwrites the first run's record; None on ranks other than 0."""
    if not is_rank_zero():
        return None
    if not (Path(output_dir) / ".hydra").exists():
        return ".hydra"
    return f".hydra-{time.strftime('%Y-%m-%d_%H-%M-%S')}"


def register_resolvers() -> None:
    """Idempotent: entry points call it before ``hydra.main`` composes the config."""
    if not OmegaConf.has_resolver("visdet_run_name"):
        OmegaConf.register_new_resolver("visdet_run_name", run_name, use_cache=True)
    if not OmegaConf.has_resolver("visdet_rank_zero"):
        OmegaConf.register_new_resolver("visdet_rank_zero", rank_zero_value)
    if not OmegaConf.has_resolver("visdet_hydra_subdir"):
        # cached: Hydra reads output_subdir more than once, after creating the folder
        OmegaConf.register_new_resolver("visdet_hydra_subdir", hydra_subdir, use_cache=True)


def keep_file_logs_on_rank_zero() -> None:
    """On ranks other than 0, detach the root logger's file handlers (Hydra's
    ``<job name>.log``; ``delay: true`` in conf/hydra keeps them from creating the file
    before this runs), so only rank 0 writes the run's log file."""
    if is_rank_zero():
        return
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(handler)
        handler.close()
