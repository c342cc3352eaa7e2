"""visdet's Optuna sweeper for ``visdet train -m`` (Hydra's Sweeper interface, Optuna >= 4).

Each trial is one Hydra job launched by the configured launcher (basic: one after another in
this process; joblib/submitit: in parallel, on a SLURM cluster). The study lives in a storage
(by default ``optuna.db``, SQLite, in the sweep directory), so a killed sweep started again
with the same storage and study name resumes, and several sweep processes started with the
same storage and study name share the study: each asks the study for new trials until it
holds ``n_trials``. Trials report ``optimized_metric`` after each validation
(visdet.callbacks.optuna_pruning) and a pruner stops hopeless ones. Hydra only loads
sweepers from the ``hydra_plugins`` package: hydra_plugins/visdet_optuna_sweeper registers
this class. See docs/sweeps.md.
"""

from __future__ import annotations

import logging
import math
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from visdet.io.atomic_write import write_text_atomic
from visdet.sweep import study as studies
from visdet.sweep.job_files import ENV_STORAGE, ENV_STUDY, ENV_TRIAL, PRUNED_ATTR
from visdet.sweep.search_space import build_search_space, override_value, sample

log = logging.getLogger(__name__)


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class OptunaSweeper(Sweeper):
    """Optuna search over ``params`` / ``search_space`` (visdet.sweep.search_space).

    Args:
        direction: ``maximize`` / ``minimize``, or one per objective (several objectives:
            ``optimized_metric`` is a list of metric names of the same length).
        storage: an Optuna storage URL (``sqlite:///path.db``, ``postgresql://...``,
            ``journal:path.log``); null: ``sqlite:///<sweep dir>/optuna.db``.
        study_name: the study in that storage; an existing one is loaded (resume, sharing).
        n_trials: how many trials the study should hold (completed, pruned, failed and
            running, all processes together); a resumed sweep runs only what is missing.
        n_jobs: trials launched at once (the launcher runs them; basic: one after another).
        max_failure_rate: stop when more than this share of a batch failed (1.0: never).
        sampler: ``{name: tpe|random|cmaes|nsgaii|grid, seed, ...}``.
        pruner: ``{name: none|median|successive_halving|hyperband, ...}``.
        params: the search space in Hydra's override syntax.
        search_space: the search space as mappings (conditions: ``when``).
        heartbeat_s: RDB storages: a running trial's heartbeat interval; a trial without a
            heartbeat for twice that (its process was killed) is failed and retried once.
    """

    def __init__(
        self,
        direction: str | Sequence[str] = "maximize",
        storage: str | None = None,
        study_name: str = "visdet",
        n_trials: int = 20,
        n_jobs: int = 1,
        max_failure_rate: float = 1.0,
        sampler: Any = None,
        pruner: Any = None,
        params: Any = None,
        search_space: Any = None,
        heartbeat_s: int = 60,
    ) -> None:
        as_list = _plain(direction)
        self.directions = [as_list] if isinstance(as_list, str) else list(as_list)
        self.storage, self.study_name = storage, str(study_name)
        self.n_trials, self.n_jobs = int(n_trials), int(n_jobs)
        self.max_failure_rate = float(max_failure_rate)
        self.sampler_spec = _plain(sampler)
        self.pruner_spec = _plain(pruner)
        self.params, self.search_space = _plain(params), _plain(search_space)
        self.heartbeat_s = heartbeat_s
        self.config: DictConfig | None = None
        self.launcher = None
        self.job_idx = 0

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context, self.job_idx = config, hydra_context, 0
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    # -- the study -------------------------------------------------------------------------
    def open(self, arguments: Sequence[str]):
        """(study, search space, fixed overrides) for this sweep; every setting checked
        before the first trial."""
        for d in self.directions:
            if d not in ("maximize", "minimize"):
                raise ValueError(f"hydra.sweeper.direction: maximize or minimize, got {d!r}")
        if self.n_trials < 1 or self.n_jobs < 1:
            raise ValueError(
                f"hydra.sweeper.n_trials and n_jobs must be >= 1, got {self.n_trials}, "
                f"{self.n_jobs}"
            )
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise ValueError(
                f"hydra.sweeper.max_failure_rate must be in [0, 1], got {self.max_failure_rate}"
            )
        space, fixed = build_search_space(self.params, self.search_space, arguments)
        sampler = studies.build_sampler(self.sampler_spec, space)
        pruner = studies.build_pruner(self.pruner_spec)
        if len(self.directions) > 1 and not isinstance(pruner, optuna.pruners.NopPruner):
            raise ValueError(
                "hydra.sweeper.pruner: pruning needs a single objective, "
                f"direction has {len(self.directions)}"
            )
        metrics = self.metric_names()
        if len(metrics) != len(self.directions):
            raise ValueError(
                f"optimized_metric has {len(metrics)} names ({metrics}) but "
                f"hydra.sweeper.direction has {len(self.directions)}"
            )
        self.url = studies.storage_url(self.storage, self.config.hydra.sweep.dir)
        storage = studies.open_storage(self.url, self.heartbeat_s)
        study = studies.open_study(storage, self.study_name, self.directions, sampler, pruner)
        grid = studies.grid_size(sampler, space)
        if grid is not None and grid < self.n_trials:
            log.info("n_trials %d -> %d: the grid's size", self.n_trials, grid)
            self.n_trials = grid
        return study, space, fixed

    def metric_names(self) -> list[str]:
        names = self.config.get("optimized_metric") if self.config is not None else None
        names = OmegaConf.to_container(names) if OmegaConf.is_config(names) else names
        if names is None:
            return ["value"] * len(self.directions)
        return [names] if isinstance(names, str) else [str(n) for n in names]

    def trial_overrides(self, trial, space, fixed) -> list[str]:
        values = sample(trial, space, fixed)
        overrides = [f"{k}={override_value(v)}" for k, v in values.items()]
        overrides += [f"{k}={v}" for k, v in fixed.items()]
        env = "++hydra.job.env_set"  # added, or replaced when the job's config has it
        return [
            *overrides,
            f"hydra.sweep.subdir={trial.number}",
            f"{env}.{ENV_STORAGE}={_quoted(self.url)}",
            f"{env}.{ENV_STUDY}={_quoted(self.study_name)}",
            f"{env}.{ENV_TRIAL}={trial.number}",
        ]

    # -- the sweep -------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        assert self.config is not None and self.launcher is not None
        try:
            study, space, fixed = self.open(arguments)
        except ValueError as e:  # a setting of the sweep: one line, no traceback
            raise SystemExit(f"sweep not started: {e}") from None
        studies.fail_stale_trials(study)
        done_before = studies.counted_trials(study)
        log.info(
            "Optuna %s: study %r in %s, %d/%d trials there already, sampler %s, pruner %s",
            optuna.__version__,
            self.study_name,
            self.url,
            done_before,
            self.n_trials,
            type(study.sampler).__name__,
            type(study.pruner).__name__,
        )
        returns: list[JobReturn] = []
        while True:
            studies.fail_stale_trials(study)
            to_go = self.n_trials - studies.counted_trials(study)
            if to_go <= 0:
                break
            with warnings.catch_warnings():
                # Optuna expects heartbeats with study.optimize; _Heartbeat records them here
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                trials = [study.ask() for _ in range(min(self.n_jobs, to_go))]
            batch = [self.trial_overrides(t, space, fixed) for t in trials]
            self.validate_batch_is_legal(batch)
            with _Heartbeat(study, trials, self.heartbeat_s):
                launched = self.launcher.launch(batch, initial_job_idx=self.job_idx)
            self.job_idx += len(launched)
            failures = [self.tell(study, t, r) for t, r in zip(trials, launched, strict=True)]
            returns += launched
            n_failed = sum(f is not None for f in failures)
            if n_failed / len(launched) > self.max_failure_rate:
                raise RuntimeError(
                    f"{n_failed} of {len(launched)} trials failed (hydra.sweeper."
                    f"max_failure_rate={self.max_failure_rate}): {failures}"
                )
        self.finish(study)
        return returns

    def tell(self, study: optuna.Study, trial, ret: JobReturn) -> str | None:
        """Record a finished trial: pruned (its job said so), completed with its values, or
        failed. Returns the failure's reason (None otherwise)."""
        frozen = study._storage.get_trial(trial._trial_id)
        if frozen.state.is_finished():  # failed as stale by another process meanwhile
            return None if frozen.state != TrialState.FAIL else "failed as stale"
        if PRUNED_ATTR in frozen.user_attrs:
            studies.tell(study, trial, state=TrialState.PRUNED)
            log.info("trial %d pruned at step %s", trial.number, frozen.user_attrs[PRUNED_ATTR])
            return None
        reason = None
        values = None
        if ret.status != JobStatus.COMPLETED:
            reason = f"{type(ret._return_value).__name__}: {ret._return_value}"
        else:
            values = _finite_values(ret.return_value, len(self.directions))
            if values is None:
                reason = f"the job returned {ret.return_value!r}, not {self.metric_names()}"
        if reason is None:
            studies.tell(study, trial, values)
            return None
        studies.tell(study, trial, state=TrialState.FAIL)
        log.warning("trial %d failed: %s", trial.number, reason)
        return reason

    def finish(self, study: optuna.Study) -> None:
        """optimization_results.yaml and the plots, in the sweep directory."""
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        summary = studies.results(study)
        write_text_atomic(
            sweep_dir / "optimization_results.yaml", OmegaConf.to_yaml(OmegaConf.create(summary))
        )
        if "best_value" in summary:
            log.info("best trial %d: %s = %s", summary["best_trial"], summary["best_params"],
                     summary["best_value"])  # fmt: skip
        try:
            plots = studies.write_plots(study, sweep_dir, self.metric_names())
        except Exception as e:  # a plot must never lose the sweep's results
            log.warning("sweep plots not written: %s: %s", type(e).__name__, e)
            plots = []
        for path in plots:
            log.info("plot: %s", path)


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _finite_values(value: Any, n: int) -> list[float] | None:
    """The job's return value as ``n`` finite floats, or None."""
    items = value if isinstance(value, list | tuple) else [value]
    if len(items) != n:
        return None
    try:
        floats = [float(v) for v in items]
    except (TypeError, ValueError):
        return None
    return floats if all(math.isfinite(v) for v in floats) else None


class _Heartbeat:
    """Records the heartbeat of ``trials`` every ``interval`` seconds while their jobs run,
    so that other processes (and a restarted sweep) can tell a live trial from one whose
    process was killed. Only RDB storages with a heartbeat keep one."""

    def __init__(self, study: optuna.Study, trials, interval: int | None) -> None:
        storage = study._storage  # an RDBStorage, wrapped in Optuna's cache
        beats = hasattr(storage, "record_heartbeat") and storage.get_heartbeat_interval()
        self.storage = storage if interval and beats else None
        self.ids = [t._trial_id for t in trials]
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.beat, daemon=True, name="optuna-heartbeat")

    def beat(self) -> None:
        while True:
            for trial_id in self.ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as e:  # a busy database: try again next interval
                    log.debug("heartbeat of trial %d not recorded: %s", trial_id, e)
            if self.stop.wait(self.interval):
                return

    def __enter__(self):
        if self.storage is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
