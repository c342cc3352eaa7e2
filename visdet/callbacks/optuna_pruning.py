"""Optuna pruning inside a sweep's trial: after every validation the trial reports its
``optimized_metric`` to the study, and when the study's pruner says the trial is hopeless
training stops there. The trial then ends normally (test, weights, metrics.json), writes
``trial_pruned.json`` in its run directory and is recorded as pruned by the sweeper
(visdet.sweep.optuna_sweeper) and in the sweep summary.

``visdet train -m`` adds it to every trial of visdet's Optuna sweeper (``from_environment``:
the sweeper tells each job its storage, study and trial number); the pruner is built from
the job's ``hydra.sweeper.pruner``, the same settings as the sweeper's.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import lightning as L

from visdet.io.atomic_write import write_text_atomic
from visdet.sweep.job_files import ENV_STORAGE, ENV_STUDY, ENV_TRIAL, PRUNED_ATTR, PRUNED_FILE

log = logging.getLogger(__name__)


class OptunaPruning(L.Callback):
    """Report ``monitor`` after each validation to trial ``trial_number`` of ``study_name``
    in ``storage``; stop training when the pruner prunes it.

    Args:
        monitor: the logged metric reported (e.g. ``val/mAP``); a validation without it
            reports nothing.
        storage: Optuna storage URL of the study.
        study_name: the study.
        trial_number: the trial this run is.
        pruner: an Optuna pruner (the study's, as configured for the sweep).
        output_dir: where ``trial_pruned.json`` goes.
    """

    def __init__(
        self, monitor: str, storage: str, study_name: str, trial_number: int, pruner, output_dir
    ) -> None:
        import optuna

        from visdet.sweep.study import open_storage

        study = optuna.load_study(
            study_name=study_name, storage=open_storage(storage, heartbeat_s=None), pruner=pruner
        )
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(
            study._study_id, trial_number
        )
        self.trial = optuna.trial.Trial(study, trial_id)
        self.monitor, self.output_dir = monitor, Path(output_dir)
        self.pruned_at: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.pruned_at is not None:
            return
        value = trainer.callback_metrics.get(self.monitor)
        prune = False
        step = trainer.current_epoch
        if trainer.is_global_zero and value is not None and math.isfinite(float(value)):
            self.trial.report(float(value), step)
            prune = self.trial.should_prune()
            if prune:
                self.trial.set_user_attr(PRUNED_ATTR, step)
                record = {"trial": self.trial.number, "epoch": step, self.monitor: float(value)}
                write_text_atomic(self.output_dir / PRUNED_FILE, json.dumps(record, indent=2))
                log.info(
                    "trial %d pruned after epoch %d (%s=%.4f)",
                    self.trial.number, step, self.monitor, float(value),
                )  # fmt: skip
        if trainer.strategy.broadcast(prune, src=0):
            self.pruned_at = step
            trainer.should_stop = True


def from_environment(cfg, output_dir) -> OptunaPruning | None:
    """The pruning callback of a trial of visdet's Optuna sweeper (None outside one, or when
    its pruner is ``none``)."""
    if ENV_TRIAL not in os.environ:
        return None
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from visdet.sweep.study import build_pruner

    if not HydraConfig.initialized():
        return None
    spec = HydraConfig.get().sweeper.get("pruner")
    spec = OmegaConf.to_container(spec) if OmegaConf.is_config(spec) else spec
    pruner = build_pruner(spec)
    if type(pruner).__name__ == "NopPruner":
        return None
    monitor = cfg.get("optimized_metric", "val/mAP")
    if not isinstance(monitor, str):
        monitor = monitor[0]
    return OptunaPruning(
        monitor,
        os.environ[ENV_STORAGE],
        os.environ[ENV_STUDY],
        int(os.environ[ENV_TRIAL]),
        pruner,
        output_dir,
    )
