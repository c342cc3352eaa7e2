"""Experiment trackers (visdet/lightning/trackers.py), offline: a tiny run logs to MLflow
(its SQLite store read back through MLflow's client) and W&B (the offline run folder's
records read back) with the config, every metric, the plots and the checkpoints; a sweep's
trials are runs of one experiment; bad input stops with one line."""

import json
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_runs import ROOT, tiny_cfg, tiny_overrides

mlflow = pytest.importorskip("mlflow")
wandb = pytest.importorskip("wandb")

from mlflow.tracking import MlflowClient  # noqa: E402

from visdet.config.validate import ConfigError  # noqa: E402
from visdet.lightning.trackers import flat_config, mlflow_logger, wandb_logger  # noqa: E402
from visdet.runs.job import error_message  # noqa: E402
from visdet.runs.train_detector import train  # noqa: E402


def wandb_records(run_folder: Path) -> list:
    """The protobuf records of an offline W&B run (``run-<id>.wandb``: a 7-byte header, then
    LevelDB-log blocks of 32 KiB whose records are full, or first/middle/last parts)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = next(run_folder.glob("run-*.wandb")).read_bytes()
    assert data[:4] == b":W&B"
    block, pos, parts, out = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(parts)
            out.append(record)
    return out


def _item_key(item) -> str:
    return "/".join(item.nested_key) or item.key


def mlflow_artifacts(client: MlflowClient, run_id: str, folder=None) -> list[str]:
    found = []
    for a in client.list_artifacts(run_id, folder):
        found += mlflow_artifacts(client, run_id, a.path) if a.is_dir else [a.path]
    return found


def test_a_run_logs_config_metrics_plots_and_checkpoints_to_mlflow_and_wandb(tmp_path):
    cfg = tiny_cfg(tmp_path, "trainer.max_epochs=2", "logger=[csv,mlflow,wandb]")
    metrics = train(cfg)
    run = tmp_path / "run"
    ids = json.loads((run / "trackers.json").read_text())

    client = MlflowClient(f"sqlite:///{run / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("visdet-train")
    [found] = client.search_runs([experiment.experiment_id])
    assert found.info.run_id == ids["mlflow"] and found.info.status == "FINISHED"
    params = found.data.params
    assert params["optim.lr"] == "0.01" and params["model.detector.representation_size"] == "64"
    assert params["data.source.num_train"] == "8" and params["logger.mlflow.tracking_uri"] == "null"
    history = client.get_metric_history(found.info.run_id, "val/mAP")
    assert len(history) == 2  # one validation per epoch
    assert found.data.metrics["final/val/mAP"] == pytest.approx(metrics["val/mAP"])
    assert {"train/loss", "val/loss", "lr-SGD", "test/mAP"} <= set(found.data.metrics)
    artifacts = mlflow_artifacts(client, found.info.run_id)
    assert {"augmentation_preview.png", "metrics.json", "config_resolved.yaml"} <= set(artifacts)
    assert "checkpoints/model.safetensors" in artifacts
    assert any(a.startswith("checkpoints/epoch") and a.endswith(".ckpt") for a in artifacts)

    [folder] = (run / "wandb").glob("offline-run-*")
    assert folder.name.endswith(ids["wandb"])
    records = wandb_records(folder)
    kinds = [r.WhichOneof("record_type") for r in records]
    [run_record] = [r.run for r in records if r.HasField("run")]
    assert run_record.display_name == "run" and run_record.project == "visdet"
    config = {u.key: u.value_json for r in records if r.HasField("config") for u in r.config.update}
    assert json.loads(config["optim.lr"]) == 0.01
    logged = [
        {_item_key(i): i.value_json for i in r.history.item}
        for r in records
        if r.HasField("history")
    ]
    val = [float(h["val/mAP"]) for h in logged if "val/mAP" in h]
    assert len(val) == 2 and float(
        next(h["final/val/mAP"] for h in logged if "final/val/mAP" in h)
    ) == (pytest.approx(metrics["val/mAP"]))
    assert any(k.startswith("plots/augmentation_preview/") for h in logged for k in h)  # an image
    artifacts = {
        r.artifact.type: [m.path for m in r.artifact.manifest.contents]
        for r in records
        if r.HasField("artifact")
    }
    assert "augmentation_preview.png" in artifacts["run-outputs"]
    assert "model.safetensors" in artifacts["model"]
    assert "exit" in kinds  # the run was finished


def test_a_resumed_run_continues_its_tracker_runs_and_tags_what_changed(tmp_path):
    train(tiny_cfg(tmp_path, "trainer.max_epochs=1", "test=false", "logger=[mlflow,wandb]"))
    run = tmp_path / "run"
    ids = json.loads((run / "trackers.json").read_text())
    first = ids["mlflow"]
    last = run / "checkpoints" / "last.ckpt"
    train(tiny_cfg(tmp_path, "trainer.max_epochs=2", "test=false", "logger=[mlflow,wandb]",
                   f"ckpt_path={last}"))  # fmt: skip
    assert json.loads((run / "trackers.json").read_text()) == ids
    folders = sorted((run / "wandb").glob("offline-run-*"))
    assert len(folders) == 2 and all(f.name.endswith(ids["wandb"]) for f in folders)
    client = MlflowClient(f"sqlite:///{run / 'mlflow.db'}")
    [found] = client.search_runs([client.get_experiment_by_name("visdet-train").experiment_id])
    assert found.info.run_id == first  # one run, continued
    assert found.data.params["trainer.max_epochs"] == "1"  # MLflow keeps the first value
    assert found.data.tags["resumed.trainer.max_epochs"] == "2"
    assert found.data.tags["resumed.ckpt_path"] == str(last)
    assert len(client.get_metric_history(first, "val/mAP")) == 2  # both epochs' validations


def test_the_resolved_config_is_flat_and_keeps_lists_as_json(tmp_path):
    flat = flat_config(tiny_cfg(tmp_path))
    assert flat["aug.train_sizes"] == "[64]" and flat["optim.lr"] == 0.01
    assert not any(k.startswith("hydra") for k in flat)


def test_a_tracking_uri_that_cannot_be_opened_stops_the_run_with_one_line(tmp_path):
    start = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        mlflow_logger(str(tmp_path), tracking_uri="http://127.0.0.1:9")
    assert time.perf_counter() - start < 30  # no minutes of retries
    assert "logger.mlflow.tracking_uri" in str(e.value) and "http://127.0.0.1:9" in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="nosuchscheme"):
        mlflow_logger(str(tmp_path), tracking_uri="nosuchscheme://x")


def test_the_training_run_does_not_start_and_says_config_error(tmp_path):
    cfg = tiny_cfg(tmp_path, "logger=mlflow", "logger.mlflow.tracking_uri=nosuchscheme://x")
    with pytest.raises(Exception) as e:
        train(cfg)
    message = error_message(e.value)
    assert message.startswith("config error: logger.mlflow.tracking_uri: cannot open")
    assert "\n" not in message
    assert not list((tmp_path / "run").glob("checkpoints/*.ckpt"))


def test_wandb_online_without_credentials_and_bad_modes_are_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    with pytest.raises(ConfigError, match="no W&B credentials .*WANDB_API_KEY"):
        wandb_logger(str(tmp_path), mode="online")
    with pytest.raises(ConfigError, match="logger.wandb.mode must be one of offline, online"):
        wandb_logger(str(tmp_path), mode="dryrun")


@pytest.mark.parametrize("group", ["logger", "trainer"])
def test_unknown_loggers_and_strategies_list_the_options(group):
    from hydra import compose, initialize_config_dir
    from hydra.errors import MissingConfigException

    conf = str(ROOT / "conf")
    with (
        initialize_config_dir(config_dir=conf, version_base="1.3"),
        pytest.raises(MissingConfigException) as e,
    ):
        compose("train", overrides=[f"{group}=nope"])
    assert f"Could not find '{group}/nope'" in str(e.value)
    expected = {
        "logger": ["csv", "mlflow", "tensorboard", "wandb"],
        "trainer": ["fsdp", "deepspeed"],
    }
    options = str(e.value).split(f"Available options in '{group}':")[1]
    assert all(f"\t{name}\n" in options for name in expected[group])


@pytest.mark.slow
def test_a_sweeps_trials_are_runs_of_one_mlflow_experiment(tmp_path):
    args = tiny_overrides(tmp_path, "trainer.max_epochs=1", "test=false")
    run = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", *args, "logger=[mlflow,wandb]",
         "optim.lr=0.01,0.02", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'sweep' / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name == "visdet-train"]
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["sweep/job0", "sweep/job1"]
    assert sorted(r.data.params["optim.lr"] for r in runs) == ["0.01", "0.02"]
    assert all(r.info.status == "FINISHED" and "val/mAP" in r.data.metrics for r in runs)
    folders = sorted((tmp_path / "sweep" / "wandb").glob("offline-run-*"))
    assert len(folders) == 2  # one W&B run per trial, in one group: the sweep's
    runs = [next(r.run for r in wandb_records(f) if r.HasField("run")) for f in folders]
    assert {r.run_group for r in runs} == {"sweep"}
    assert sorted(r.display_name for r in runs) == ["sweep/job0", "sweep/job1"]


@pytest.mark.parametrize("factory, package", [(mlflow_logger, "mlflow"), (wandb_logger, "wandb")])
def test_a_missing_tracker_package_names_the_extra(tmp_path, monkeypatch, factory, package):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a)
    )
    with pytest.raises(
        ConfigError,
        match=rf"logger={package} needs the {package} package: pip install 'visdet\[trackers\]'",
    ):
        factory(str(tmp_path))
