"""Where a run resumes from: ``ckpt_path`` (a checkpoint path, or ``last``).

``last`` is the ``checkpoints/last.ckpt`` of this run's output directory (set
``hydra.run.dir`` to the interrupted run's directory to continue in place) or, when there
is none, the newest ``last.ckpt`` of an earlier run of the same task
(``<paths.log_dir>/<task_name>/runs/*/checkpoints/last.ckpt``). ``last.ckpt`` is written
at the end of every training epoch (conf/callbacks: ``last_checkpoint``), so a killed run
loses at most the epoch it was in.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

log = logging.getLogger(__name__)


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    value = cfg.get("ckpt_path")
    if value is None:
        return None
    if str(value) != "last":
        if not Path(value).is_file():
            raise FileNotFoundError(f"ckpt_path: checkpoint not found: {value}")
        return str(value)
    own = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if own.is_file():
        log.info("ckpt_path=last: resuming from %s", own)
        return str(own)
    runs = Path(cfg.paths.log_dir) / str(cfg.task_name) / "runs"
    earlier = sorted(runs.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not earlier:
        raise FileNotFoundError(
            f"ckpt_path=last: no last.ckpt in {own.parent} nor in any earlier run under {runs}"
        )
    log.info("ckpt_path=last: resuming the most recent run, from %s", earlier[-1])
    return str(earlier[-1])
