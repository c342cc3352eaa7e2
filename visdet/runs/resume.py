"""Where a run resumes from: ``ckpt_path`` (a checkpoint path, or ``last``) and
``resume_if_exists``.

``last`` is the newest checkpoint of this run's output directory: ``checkpoints/last.ckpt``
(written at the end of every training epoch, and of the current step when the run is
stopped by SIGTERM or Ctrl+C) or a ``hpc_ckpt_N.ckpt`` of Lightning's SLURM requeue, the
newer of them. Set ``hydra.run.dir`` to the interrupted run's directory to continue in
place; a run directory given that way (or with ``paths.output_dir``) that holds no
checkpoint is an error naming it. Only when no run directory is given does ``last`` fall
back to the newest ``last.ckpt`` of an earlier run of the same task
(``<paths.log_dir>/<task_name>/runs/*/checkpoints/last.ckpt``), and the log says which run
it took. ``resume_if_exists=true`` resumes this run directory's newest checkpoint when it has
one and starts afresh otherwise (what a requeued SLURM job needs).
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

log = logging.getLogger(__name__)

RUN_DIR_KEYS = ("hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir")


def run_dir_given(cfg: DictConfig) -> bool:
    """Whether the user chose this run's output directory (``hydra.run.dir=...``,
    ``hydra.sweep.dir=...`` or ``paths.output_dir=...``) rather than Hydra naming a new
    one."""
    node = cfg.paths._get_node("output_dir") if hasattr(cfg.paths, "_get_node") else None
    raw = node._value() if node is not None else None
    if isinstance(raw, str) and "${hydra:" not in raw.replace(" ", ""):
        return True
    if HydraConfig.initialized():
        overrides = HydraConfig.get().overrides.hydra
        return any(o.split("=", 1)[0].lstrip("+~") in RUN_DIR_KEYS for o in overrides)
    return False


def own_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest checkpoint a run left in ``output_dir`` to resume from, or None."""
    output_dir = Path(output_dir)
    found = [output_dir / "checkpoints" / "last.ckpt", *output_dir.glob("hpc_ckpt_*.ckpt")]
    found = [p for p in found if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def resolve_ckpt_path(cfg: DictConfig, given: bool | None = None) -> str | None:
    """The checkpoint this run resumes from (None: a fresh start). ``given``: whether the run
    directory was chosen by the user (default: ``run_dir_given(cfg)``)."""
    value = cfg.get("ckpt_path")
    output_dir = Path(cfg.paths.output_dir)
    if value is None:
        own = own_checkpoint(output_dir) if cfg.get("resume_if_exists", False) else None
        if own is not None:
            log.info("resume_if_exists: resuming this run directory, from %s", own)
        elif cfg.get("resume_if_exists", False):
            log.info("resume_if_exists: %s holds no checkpoint: starting afresh", output_dir)
        return None if own is None else str(own)
    if str(value) != "last":
        if not Path(value).is_file():
            raise FileNotFoundError(f"ckpt_path: checkpoint not found: {value}")
        return str(value)
    own = own_checkpoint(output_dir)
    if own is not None:
        log.info("ckpt_path=last: resuming from %s", own)
        return str(own)
    if run_dir_given(cfg) if given is None else given:
        raise FileNotFoundError(
            f"ckpt_path=last: the run directory {output_dir} holds no checkpoint (no "
            f"{Path('checkpoints') / 'last.ckpt'}): is hydra.run.dir right? (without "
            "hydra.run.dir, ckpt_path=last resumes the newest earlier run)"
        )
    runs = Path(cfg.paths.log_dir) / str(cfg.task_name) / "runs"
    earlier = [p for p in runs.glob("*/checkpoints/last.ckpt") if p.parents[1] != output_dir]
    earlier.sort(key=lambda p: p.stat().st_mtime)
    if not earlier:
        raise FileNotFoundError(
            f"ckpt_path=last: no last.ckpt in {output_dir / 'checkpoints'} nor in any earlier "
            f"run under {runs}"
        )
    log.info(
        "ckpt_path=last: no hydra.run.dir given: resuming the newest earlier run, %s, from %s "
        "(into the new directory %s)",
        earlier[-1].parents[1],
        earlier[-1],
        output_dir,
    )
    return str(earlier[-1])
