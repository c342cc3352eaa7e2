"""Experiment trackers: ``logger=mlflow`` and ``logger=wandb`` beside ``csv`` and
``tensorboard``, several at once (``logger=[csv,mlflow]``).

The factories build Lightning's own loggers, so every metric a module logs reaches them; on
top, ``log_config`` logs the resolved config as parameters when the run starts and
``log_run_files`` logs what the run wrote (plots, reports, metrics, the config, the best
checkpoint and ``model.safetensors``) as artefacts when it ends.

Where runs go by default (no server, nothing online):
- MLflow: a SQLite store ``mlflow.db`` with artefacts under ``mlartifacts/`` in the run
  directory, or in the sweep directory for the jobs of a sweep (``-m``), so a sweep's trials
  are runs of one experiment. (MLflow 3 refuses its plain file store unless
  ``MLFLOW_ALLOW_FILE_STORE=true``; SQLite is what it recommends.) Any tracking URI can be
  given (``logger.mlflow.tracking_uri=http://host:5000``); it is opened before training
  starts, and one that cannot be opened stops the run with one line naming it.
- W&B: offline mode (a run folder ``wandb/offline-run-*`` in the run or sweep directory,
  ``wandb sync`` uploads it later); a sweep's trials share one group.

A resumed run continues its tracker runs: their ids are kept in ``trackers.json`` in the run
directory.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import netrc
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import MLFlowLogger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from visdet.config.launch import is_rank_zero
from visdet.config.validate import ConfigError
from visdet.io.atomic_write import write_text_atomic

IDS_FILE = "trackers.json"
WANDB_MODES = ("offline", "online", "disabled")
# the run's files logged as artefacts (paths relative to the run directory), by suffix
ARTIFACT_SUFFIXES = (".png", ".html", ".csv", ".json", ".yaml", ".log")
# run-directory entries that are not the run's own outputs (tracker stores, Lightning logs)
NOT_ARTIFACTS = {"mlflow.db", "mlartifacts", "wandb", "csv", "tensorboard", ".hydra", IDS_FILE}


@dataclass(frozen=True)
class RunPlace:
    """Where a tracker run of this process goes: ``sweep`` is the sweep directory for a job
    of a Hydra multirun (None otherwise); ``name`` the default run name (``<sweep>/job<N>``
    or the run directory's name)."""

    run_dir: Path
    sweep: Path | None
    name: str

    @property
    def store(self) -> Path:
        """The local store's directory: the sweep's, so a sweep's trials share it, else the
        run's."""
        return self.sweep or self.run_dir


def run_place(save_dir: str | Path) -> RunPlace:
    """The ``RunPlace`` of ``save_dir`` (the run directory); rank zero creates the store."""
    run_dir = Path(save_dir)
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        hc = HydraConfig.get()
        sweep = Path(hc.sweep.dir)
        place = RunPlace(run_dir, sweep, f"{sweep.name}/job{hc.job.num}")
    else:
        place = RunPlace(run_dir, None, run_dir.name)
    if is_rank_zero():
        place.store.mkdir(parents=True, exist_ok=True)
    return place


def _require(package: str, logger: str) -> None:
    if importlib.util.find_spec(package) is None:
        raise ConfigError(
            f"logger={logger} needs the {package} package: pip install 'visdet[trackers]'"
        )


def _saved_id(run_dir: Path, tracker: str) -> str | None:
    path = run_dir / IDS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get(tracker)
    except (OSError, ValueError):
        return None


def save_tracker_ids(loggers: Iterable, run_dir: str | Path) -> None:
    """Rank zero: write ``trackers.json`` (the MLflow run id, the W&B run id) so that a
    resumed run continues the same tracker runs."""
    if not is_rank_zero():
        return
    ids = {}
    for lg in loggers:
        if isinstance(lg, MLFlowLogger):
            ids["mlflow"] = lg.run_id
        elif isinstance(lg, WandbLogger):
            ids["wandb"] = lg.experiment.id
    if ids:
        write_text_atomic(Path(run_dir) / IDS_FILE, json.dumps(ids, indent=1) + "\n")


# -- MLflow ----------------------------------------------------------------------------------
def mlflow_logger(
    save_dir: str,
    experiment_name: str = "visdet",
    run_name: str | None = None,
    tracking_uri: str | None = None,
    tags: dict | None = None,
    log_checkpoints: bool = True,
):
    """Lightning's ``MLFlowLogger``.

    Args:
        save_dir: the run directory; the default store goes there (or in the sweep dir).
        experiment_name: the MLflow experiment (created when missing).
        run_name: the run's name; null: the run directory's name (``<sweep>/job<N>``).
        tracking_uri: null: ``sqlite:///<dir>/mlflow.db``; or any MLflow tracking URI
            (``http://host:5000``, ``sqlite:///path.db``, ``databricks``).
        tags: extra run tags.
        log_checkpoints: log the best checkpoint and ``model.safetensors`` at the end.
    """
    _require("mlflow", "mlflow")
    place = run_place(save_dir)
    uri = tracking_uri or f"sqlite:///{place.store.resolve() / 'mlflow.db'}"
    artifact_location = None if tracking_uri else (place.store.resolve() / "mlartifacts").as_uri()
    if is_rank_zero():
        _check_tracking_uri(uri, experiment_name)
    all_tags = {"visdet.run_dir": str(place.run_dir.resolve()), **(tags or {})}
    if place.sweep:
        all_tags["visdet.sweep"] = str(place.sweep.resolve())
    logger = MLFlowLogger(
        experiment_name=experiment_name,
        run_name=run_name or place.name,
        tracking_uri=uri,
        tags=all_tags,
        artifact_location=artifact_location,
        run_id=_saved_id(place.run_dir, "mlflow"),
    )
    logger.visdet_log_checkpoints = bool(log_checkpoints)
    return logger


@contextlib.contextmanager
def _quick_http() -> Iterator[None]:
    """MLflow retries an unreachable server for minutes by default: fail fast while probing."""
    keys = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: v for k, v in keys.items() if old[k] is None})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)


def _check_tracking_uri(uri: str, experiment_name: str) -> None:
    """Open the store before training starts; one line naming the URI when it cannot be."""
    from mlflow.tracking import MlflowClient

    quiet = logging.getLogger("alembic")  # MLflow creating a new SQLite store logs each step
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        with _quick_http():
            MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment_name)
    except Exception as e:  # whatever the store raises: name the URI, say why, stop
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"logger.mlflow.tracking_uri: cannot open MLflow tracking URI {uri!r}: "
            f"{type(e).__name__}: {why[:300]}"
        ) from None
    finally:
        quiet.setLevel(level)


# -- Weights & Biases ------------------------------------------------------------------------
def wandb_logger(
    save_dir: str,
    project: str = "visdet",
    name: str | None = None,
    mode: str = "offline",
    entity: str | None = None,
    group: str | None = None,
    tags: list | None = None,
    log_checkpoints: bool = True,
):
    """Lightning's ``WandbLogger``.

    Args:
        save_dir: the run directory; the run folder ``wandb/`` goes there (or in the sweep dir).
        project: the W&B project.
        name: the run's name; null: the run directory's name (``<sweep>/job<N>``).
        mode: ``offline`` (default: nothing leaves the machine; ``wandb sync`` later),
            ``online`` (needs ``WANDB_API_KEY`` or ``wandb login``) or ``disabled``.
        entity: the W&B team or user (online).
        group: the run group; null: the sweep directory's name in a sweep.
        tags: run tags.
        log_checkpoints: log the best checkpoint and ``model.safetensors`` at the end.
    """
    if mode not in WANDB_MODES:
        raise ConfigError(
            f"logger.wandb.mode must be one of {', '.join(WANDB_MODES)}, got {mode!r}"
        )
    _require("wandb", "wandb")
    import wandb

    if mode == "online" and not _wandb_credentials():
        raise ConfigError(
            "logger.wandb.mode=online: no W&B credentials (set WANDB_API_KEY or run "
            "`wandb login`), or use logger.wandb.mode=offline"
        )
    place = run_place(save_dir)
    os.environ.setdefault("WANDB_SILENT", "true")
    if wandb.run is not None:  # an earlier job of this process (a sweep) left its run open
        wandb.finish()
    run_id = _saved_id(place.run_dir, "wandb")
    logger = WandbLogger(
        name=name or place.name,
        save_dir=str(place.store),
        project=project,
        entity=entity,
        group=group or (place.sweep.name if place.sweep else None),
        tags=list(tags) if tags else None,
        mode=mode,
        id=run_id,
        resume="allow" if run_id else None,
        config={"visdet_run_dir": str(place.run_dir.resolve())},
    )
    logger.visdet_log_checkpoints = bool(log_checkpoints)
    return logger


def _wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host or "api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


# -- what every tracker receives -------------------------------------------------------------
def flat_config(cfg: DictConfig) -> dict[str, object]:
    """The resolved config (without ``hydra``) as ``{"model.detector.x": value}``."""
    resolved = OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True
    )
    flat: dict[str, object] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            flat[prefix] = node if isinstance(node, (int, float, str, bool)) else json.dumps(node)

    walk(resolved, "")
    return flat


def log_config(loggers: Iterable, cfg: DictConfig) -> None:
    """Every logger gets the resolved config as hyper-parameters (MLflow: parameters; W&B:
    the run config; CSV: hparams.yaml; TensorBoard: hparams)."""
    flat = flat_config(cfg)
    for lg in loggers:
        if isinstance(lg, MLFlowLogger):
            _log_mlflow_params(lg, flat)
        else:
            lg.log_hyperparams(flat)


def _log_mlflow_params(lg: MLFlowLogger, flat: dict[str, object]) -> None:
    """MLflow parameters cannot change once logged: a resumed run logs the keys its run
    does not have yet, and each value that changed (``ckpt_path``, ``trainer.max_epochs``,
    ...) as the tag ``resumed.<key>``."""
    if not is_rank_zero():
        return
    logged = lg.experiment.get_run(lg.run_id).data.params
    shown = {k: str(v)[:250] for k, v in flat.items()}  # how MLFlowLogger writes them
    lg.log_hyperparams({k: v for k, v in flat.items() if k not in logged})
    for key, value in shown.items():
        if key in logged and logged[key] != value:
            lg.experiment.set_tag(lg.run_id, f"resumed.{key}", value)


def run_files(run_dir: Path) -> list[Path]:
    """The run's own outputs worth keeping with the tracker run: plots, reports, CSV tables,
    metrics and the resolved config (checkpoints are separate)."""
    found = []
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir)
        if rel.parts[0] in NOT_ARTIFACTS or rel.parts[0] == "checkpoints" or not path.is_file():
            continue
        if path.suffix in ARTIFACT_SUFFIXES and not path.name.startswith("."):
            found.append(path)
    return found


def close_trackers(
    loggers: Iterable, run_dir: str | Path, metrics: dict, best_checkpoint: str | None
) -> None:
    """At the end of a run (rank zero): the final metrics (``final/<name>``) and the run's
    files as artefacts of each MLflow / W&B logger (checkpoints when the logger says so),
    then the tracker runs are ended (the W&B run is finished, so the next run of this
    process, e.g. a sweep's next trial, gets its own)."""
    if not is_rank_zero():
        return
    run_dir = Path(run_dir)
    files = run_files(run_dir)
    checkpoints = [Path(best_checkpoint)] if best_checkpoint else []
    checkpoints += [p for p in [run_dir / "checkpoints" / "model.safetensors"] if p.is_file()]
    numbers = {
        f"final/{k}": float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
    }
    for lg in loggers:
        if not isinstance(lg, MLFlowLogger | WandbLogger):
            continue
        ckpts = checkpoints if getattr(lg, "visdet_log_checkpoints", True) else []
        if numbers:
            lg.log_metrics(numbers)
        if isinstance(lg, MLFlowLogger):
            _mlflow_files(lg, run_dir, files, ckpts)
            lg.experiment.set_terminated(lg.run_id, "FINISHED")
        else:
            _wandb_files(lg, run_dir, files, ckpts)
            lg.experiment.finish()


def _mlflow_files(lg, run_dir: Path, files: list[Path], checkpoints: list[Path]) -> None:
    for path in files:
        folder = path.parent.relative_to(run_dir).as_posix()
        lg.experiment.log_artifact(lg.run_id, str(path), None if folder == "." else folder)
    for path in checkpoints:
        lg.experiment.log_artifact(lg.run_id, str(path), "checkpoints")


def _wandb_files(lg, run_dir: Path, files: list[Path], checkpoints: list[Path]) -> None:
    import wandb

    run = lg.experiment
    images = {
        f"plots/{p.relative_to(run_dir).with_suffix('').as_posix()}": wandb.Image(str(p))
        for p in files
        if p.suffix == ".png"
    }
    if images:
        run.log(images)
    outputs = wandb.Artifact(f"run-{run.id}-outputs", type="run-outputs")
    for path in files:
        outputs.add_file(str(path), name=path.relative_to(run_dir).as_posix())
    run.log_artifact(outputs)
    if checkpoints:
        model = wandb.Artifact(f"model-{run.id}", type="model")
        for path in checkpoints:
            model.add_file(str(path), name=path.name)
        run.log_artifact(model, aliases=["best"])
