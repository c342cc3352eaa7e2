"""An Optuna study for ``visdet train -m``: sampler, pruner and storage from the sweeper's
config, the trials still to run, stale trials of a killed process, and the results (YAML and
plots) written at the end. Used by the sweeper (visdet.sweep.optuna_sweeper) and, for
pruning, inside each trial's job (visdet.callbacks.optuna_pruning)."""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import IntegrityError, OperationalError

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "random", "cmaes", "nsgaii", "grid")
PRUNERS = ("none", "median", "successive_halving", "hyperband", "threshold")
DB_NAME = "optuna.db"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def _settings(kind: str, spec: Mapping[str, Any] | str | None, default: str):
    """``{"name": x, **kwargs}`` or a bare name -> (name, kwargs)."""
    if spec is None:
        return default, {}
    if isinstance(spec, str):
        return spec, {}
    kwargs = dict(spec)
    return str(kwargs.pop("name", default)), kwargs


def build_sampler(spec: Mapping[str, Any] | str | None, search_space=None):
    """An Optuna sampler from ``hydra.sweeper.sampler``: ``{name: tpe|random|cmaes|nsgaii|grid,
    seed: .., **sampler arguments}``. ``grid`` needs the search space (categorical or
    stepped keys)."""
    name, kwargs = _settings("sampler", spec, "tpe")
    if name not in SAMPLERS:
        raise ValueError(f"hydra.sweeper.sampler.name: unknown sampler {name!r}; one of {SAMPLERS}")
    try:
        if name == "tpe":
            return optuna.samplers.TPESampler(**kwargs)
        if name == "random":
            return optuna.samplers.RandomSampler(**kwargs)
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(**kwargs)
        if name == "nsgaii":
            return optuna.samplers.NSGAIISampler(**kwargs)
        return optuna.samplers.GridSampler(grid_choices(search_space or []), **kwargs)
    except TypeError as e:
        raise ValueError(f"hydra.sweeper.sampler ({name}): {e}") from None


def grid_choices(space) -> dict[str, list]:
    """Every value of each searched key, for the grid sampler."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    choices = {}
    for p in space:
        d = p.distribution
        if isinstance(d, CategoricalDistribution):
            choices[p.name] = list(d.choices)
        elif isinstance(d, IntDistribution | FloatDistribution) and d.step and not d.log:
            n = round((d.high - d.low) / d.step)
            choices[p.name] = [d.low + i * d.step for i in range(n + 1)]
        else:
            raise ValueError(
                f"hydra.sweeper.sampler: the grid sampler needs choice() or range() for "
                f"{p.name}, got a continuous interval"
            )
    return choices


def build_pruner(spec: Mapping[str, Any] | str | None):
    """An Optuna pruner from ``hydra.sweeper.pruner``: ``{name: none|median|
    successive_halving|hyperband|threshold, **pruner arguments}`` (``none``: no pruning;
    ``threshold``: prune below ``lower`` / above ``upper``)."""
    name, kwargs = _settings("pruner", spec, "none")
    if name not in PRUNERS:
        raise ValueError(f"hydra.sweeper.pruner.name: unknown pruner {name!r}; one of {PRUNERS}")
    classes = {
        "none": optuna.pruners.NopPruner,
        "median": optuna.pruners.MedianPruner,
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "threshold": optuna.pruners.ThresholdPruner,
    }
    try:
        return classes[name](**kwargs)
    except TypeError as e:
        raise ValueError(f"hydra.sweeper.pruner ({name}): {e}") from None


def storage_url(storage: str | None, sweep_dir: str | Path) -> str:
    """The study's storage URL: ``hydra.sweeper.storage`` or, when null, an SQLite file in
    the sweep directory (absolute, so jobs in other working directories find it)."""
    if storage:
        return str(storage)
    path = Path(sweep_dir).absolute() / DB_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def open_storage(url: str, heartbeat_s: int | None = 60, max_retry: int = 1, attempts: int = 5):
    """The Optuna storage behind ``url``. RDB URLs (sqlite, postgresql, mysql) get a
    heartbeat: a trial whose process died (no heartbeat for 2 intervals) is marked failed and
    run again once (``max_retry``) with the same parameters. Other URLs (``journal:`` files)
    go to Optuna as they are. Processes that start on a new database at the same moment race
    to create its tables; the loser waits and opens it again (``attempts`` times). A URL that
    cannot be opened raises ValueError naming it."""
    for attempt in range(attempts):
        try:
            return _open_storage(url, heartbeat_s, max_retry)
        except (IntegrityError, OperationalError) as e:  # another process creates the tables
            error = e
            if attempt < attempts - 1:
                time.sleep(0.2 * 2**attempt)
        except Exception as e:  # SQLAlchemy's errors for bad URLs, drivers, paths
            error = e
            break
    reason = str(error).splitlines()[0] if str(error) else ""
    raise ValueError(
        f"hydra.sweeper.storage: cannot open {url!r}: {type(error).__name__}: {reason}"
    ) from None


def _open_storage(url: str, heartbeat_s: int | None, max_retry: int):
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(url[len("journal:") :]))
    if not heartbeat_s:
        return RDBStorage(url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeats: since Optuna 2.8
        return RDBStorage(
            url,
            heartbeat_interval=heartbeat_s,
            grace_period=2 * heartbeat_s,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry),
        )


def open_study(
    storage, study_name: str, directions: Sequence[str], sampler=None, pruner=None
) -> optuna.Study:
    """Create the study or load it when it exists (a resumed or shared sweep); its
    directions must match."""
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        directions=list(directions),
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    have = [d.name.lower() for d in study.directions]
    if have != [d.lower() for d in directions]:
        raise ValueError(
            f"hydra.sweeper.direction: study {study_name!r} in this storage optimises {have}, "
            f"not {list(directions)} (use another study_name)"
        )
    return study


def tell(study: optuna.Study, trial, values=None, state: TrialState | None = None) -> None:
    """``study.tell``; the grid sampler's stop when its grid is done (which Optuna raises
    outside ``study.optimize``) is not an error."""
    try:
        study.tell(trial, values, state=state)
    except RuntimeError as e:
        if "Study.stop" not in str(e):
            raise


def grid_size(sampler, space) -> int | None:
    """How many trials the grid sampler's grid over ``space`` holds (None for other
    samplers)."""
    if not isinstance(sampler, optuna.samplers.GridSampler):
        return None
    return math.prod(len(v) for v in grid_choices(space).values())


def counted_trials(study: optuna.Study) -> int:
    """Trials that count toward ``n_trials``: finished (complete, pruned, failed) and running
    ones, without failed trials that were retried (a killed process's trial runs again)."""
    trials = study.get_trials(deepcopy=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        retried = {RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in trials}
    retried.discard(None)
    counted = 0
    for t in trials:
        if t.state == TrialState.FAIL and t.number in retried:
            continue
        counted += t.state in (*FINISHED, TrialState.RUNNING)
    return counted


def fail_stale_trials(study: optuna.Study) -> None:
    """Mark trials of dead processes (no heartbeat) failed; each is retried once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # a no-op without heartbeats


def trial_row(t: FrozenTrial) -> dict[str, Any]:
    return {
        "number": t.number,
        "state": t.state.name.lower(),
        "values": t.values,
        "params": t.params,
        "last_step": t.last_step,
    }


def results(study: optuna.Study) -> dict[str, Any]:
    """What ``optimization_results.yaml`` holds: best trial (single objective) or the Pareto
    front, and counts of trials by state."""
    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    out: dict[str, Any] = {
        "name": "optuna",
        "study_name": study.study_name,
        "directions": [d.name.lower() for d in study.directions],
        "trials": {k: v for k, v in counts.items() if v},
    }
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    if not completed:
        return out
    if len(study.directions) == 1:
        best = study.best_trial
        out.update(best_trial=best.number, best_params=best.params, best_value=best.value)
    else:
        out["solutions"] = [
            {"trial": t.number, "params": t.params, "values": t.values} for t in study.best_trials
        ]
    return out


def write_plots(study: optuna.Study, out_dir: Path, target_names: Sequence[str]) -> list[Path]:
    """PNG plots of the study in ``out_dir``: optimisation history (every objective; failed
    and pruned trials are listed in the summary) and parameter importances when at least two
    trials completed and a parameter varies; a Pareto front for two objectives. Returns the
    files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    written = []
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        return written
    n_obj = len(study.directions)

    def save(ax, name: str) -> None:
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(8, 5)
        fig.tight_layout()
        path = out_dir / name
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        for i in range(n_obj):
            target = None if n_obj == 1 else (lambda t, i=i: t.values[i])
            label = target_names[i] if i < len(target_names) else f"objective {i}"
            ax = ovm.plot_optimization_history(study, target=target, target_name=label)
            suffix = "" if n_obj == 1 else f"_{i}"
            save(ax, f"optimization_history{suffix}.png")
        varying = {
            k
            for t in completed
            for k in t.params
            if len({str(u.params.get(k)) for u in completed}) > 1
        }
        if len(completed) >= 2 and varying:
            target = None if n_obj == 1 else (lambda t: t.values[0])
            label = target_names[0] if target_names else "objective"
            try:
                ax = ovm.plot_param_importances(study, target=target, target_name=label)
                save(ax, "param_importances.png")
            except (ValueError, RuntimeError) as e:  # e.g. all values equal
                log.warning("parameter importances not plotted: %s", e)
        if n_obj == 2:
            ax = ovm.plot_pareto_front(study, target_names=list(target_names[:2]) or None)
            save(ax, "pareto_front.png")
    return written
