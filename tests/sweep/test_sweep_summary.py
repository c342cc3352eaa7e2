"""The sweep summary table: parameters -> metric, failures listed, best job marked."""

import csv
import json

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from visdet.runs.job import ERROR_FILE
from visdet.sweep.summary import (
    RESULT_FILE,
    best_job,
    direction,
    job_record,
    markdown_table,
    swept_keys,
    table_rows,
    write_summary,
)


def record(job, value, lr, status="completed", error=None, extra=()):
    return {
        "job": job,
        "status": status,
        "metric": "val/mAP",
        "value": value,
        "params": {},
        "overrides": ["data.batch_size=4", f"optim.lr={lr}", *extra],
        "output_dir": f"/sweep/{job}",
        "error": error,
    }


RECORDS = [
    record(0, 0.25, 0.01),
    record(1, None, 0.02, status="failed", error="config error: ValueError: bad"),
    record(2, 0.5, 0.0123456789),
]


def test_best_job_follows_the_direction_and_skips_failed_jobs():
    assert best_job(RECORDS) == 2
    assert best_job(RECORDS, "minimize") == 0
    assert best_job(RECORDS[1:2]) is None


def test_rows_hold_the_varying_parameters_the_metric_and_the_status():
    rows = table_rows(RECORDS)
    # data.batch_size is the same in every job: not a column
    assert rows[0] == ["job", "optim.lr", "val/mAP", "status", "best", "error"]
    assert rows[1] == ["0", "0.01", "0.2500", "completed", "", ""]
    assert rows[2] == ["1", "0.02", "nan", "failed", "", "config error: ValueError: bad"]
    assert rows[3] == ["2", "0.0123456789", "0.5000", "completed", "*", ""]
    # a key swept on purpose stays a column even when all jobs share its value
    same = [dict(r, params={"data.batch_size": "4"}) for r in RECORDS]
    assert table_rows(same)[0][:3] == ["job", "data.batch_size", "optim.lr"]
    # a key present in some jobs only is a column
    rows = table_rows([RECORDS[0], record(3, 0.1, 0.01, extra=["aug=strong"])])
    assert rows[0][:3] == ["job", "aug", "val/mAP"] and rows[1][1] == "" and rows[2][1] == "strong"


def test_markdown_table_is_aligned_and_shortens_numbers():
    lines = markdown_table(RECORDS).splitlines()
    assert len(lines) == 5 and len({len(line) for line in lines}) == 1
    assert lines[0].split("|")[1:3] == [" job ", " optim.lr "]
    assert "| 0.01235 " in lines[4] and "| *    |" in lines[4]


def test_write_summary_reads_the_job_records_of_the_sweep_dir(tmp_path):
    for r in RECORDS:
        (tmp_path / str(r["job"])).mkdir()
        (tmp_path / str(r["job"]) / RESULT_FILE).write_text(json.dumps(r))
    assert write_summary(tmp_path) == RECORDS
    with open(tmp_path / "sweep_summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["job"] for r in rows] == ["0", "1", "2"]
    assert [r["val/mAP"] for r in rows] == ["0.25", "nan", "0.5"]  # full precision
    assert [r["best"] for r in rows] == ["", "", "*"]
    assert rows[1]["status"] == "failed" and rows[1]["error"] == "config error: ValueError: bad"
    assert rows[2]["output_dir"] == "/sweep/2"
    md = (tmp_path / "sweep_summary.md").read_text()
    assert "3 jobs, 1 failed, 0 pruned; best (maximize): job 2" in md


def test_swept_keys_and_direction_come_from_the_config():
    cfg = OmegaConf.create(
        {
            "hydra": {
                "sweeper": {"params": {"optim.weight_decay": "interval(0, 1)"}},
                "overrides": {"task": ["optim.lr=0.01,0.02", "+a.b=range(1,3)", "seed=1"]},
            }
        }
    )
    assert swept_keys(cfg) == ["optim.weight_decay", "optim.lr", "a.b"]
    assert direction(cfg) == "maximize"
    cfg.hydra.sweeper.direction = "minimize"
    assert direction(cfg) == "minimize"
    cfg.hydra.sweeper.direction = ["maximize", "minimize"]
    assert direction(cfg) == "maximize"


def finished_job(tmp_path, value, status=JobStatus.COMPLETED):
    hydra_cfg = OmegaConf.create({"hydra": {"job": {"num": 3}}})
    return JobReturn(
        overrides=["optim.lr=0.1", "seed=1"],
        hydra_cfg=hydra_cfg,
        status=status,
        _return_value=value,
    )


def test_job_record_status_value_and_error(tmp_path):
    train_cfg = OmegaConf.create({"optimized_metric": "val/mAP"})
    r = job_record(train_cfg, finished_job(tmp_path, 0.5), tmp_path, ["optim.lr"])
    assert (r["job"], r["status"], r["value"], r["error"]) == (3, "completed", 0.5, None)
    assert r["params"] == {"optim.lr": "0.1"} and r["metric"] == "val/mAP"
    # no value from a run that has an optimized_metric: failed (a failed Optuna trial)
    r = job_record(train_cfg, finished_job(tmp_path, None), tmp_path, [])
    assert (r["status"], r["value"], r["error"]) == ("failed", None, "val/mAP absent or nan")
    # a tool without optimized_metric (bench, export) returns nothing and completes
    r = job_record(OmegaConf.create({}), finished_job(tmp_path, None), tmp_path, [])
    assert (r["status"], r["metric"], r["error"]) == ("completed", "value", None)
    # an exception that escaped the task function
    error = RuntimeError("boom")
    r = job_record(train_cfg, finished_job(tmp_path, error, JobStatus.FAILED), tmp_path, [])
    assert (r["status"], r["error"]) == ("failed", "RuntimeError: boom")
    # the task function recorded the failure
    (tmp_path / ERROR_FILE).write_text(json.dumps({"short_message": "config error: bad"}))
    r = job_record(train_cfg, finished_job(tmp_path, None), tmp_path, [])
    assert (r["status"], r["error"]) == ("failed", "config error: bad")
