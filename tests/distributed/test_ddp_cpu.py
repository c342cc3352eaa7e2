"""DDP with 2 CPU processes (gloo), through ``train.py trainer=ddp_cpu``: one output
directory, files from rank zero only, the same training size on both processes at each
step, disjoint data shards, every validation image evaluated exactly once, and a process
that dies ends the run with an error instead of a hang."""

import json
from pathlib import Path

import pytest
from tiny_runs import run_train_py, tiny_overrides

NUM_TRAIN, NUM_VAL = 8, 5  # 8 as in tiny_runs; 5 validation images: uneven shards (3 + 2)


def run_ddp(tmp_path, *extra, timeout=300):
    overrides = tiny_overrides(
        tmp_path,
        "trainer=ddp_cpu",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"data.source.num_val={NUM_VAL}",
        "data.batch_size=2",
        "aug.train_sizes=[64,96,128]",
        "trainer.max_epochs=2",
        "+callbacks.probe._target_=ddp_probe.DDPProbe",
        f"+callbacks.probe.out_dir={tmp_path / 'probe'}",
        *extra,
    )
    return run_train_py(overrides, cwd=tmp_path, pythonpath=Path(__file__).parent, timeout=timeout)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ddp")
    proc = run_ddp(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    probes = {r: json.loads((tmp_path / "probe" / f"rank{r}.json").read_text()) for r in (0, 1)}
    return tmp_path, proc, probes


def steps(probe, stage):
    return [r for r in probe["records"] if r["stage"] == stage]


@pytest.mark.slow  # a subprocess run of several seconds: make test-full
def test_two_processes_train_in_one_output_directory(ddp_run):
    tmp_path, proc, probes = ddp_run
    assert {p["world_size"] for p in probes.values()} == {2}
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2
    # 8 images / 2 processes / batch 2 = 2 steps per epoch (gradients are averaged)
    assert metrics["global_step"] == 4
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert proc.stdout.count("final: val/mAP=") == 1  # the summary is printed by rank 0 only
    # one run directory, nothing written per process beside rank 0's files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "probe", "run"]
    assert not list(run.glob("*process_1*")), sorted(p.name for p in run.iterdir())
    assert len(list((run / "csv").iterdir())) == 1


def test_every_process_uses_the_same_training_size_at_each_step(ddp_run):
    _, _, probes = ddp_run
    per_rank = [{r["step"]: r["sizes"] for r in steps(probes[k], "train")} for k in (0, 1)]
    assert per_rank[0].keys() == per_rank[1].keys() and len(per_rank[0]) == 4
    sizes_seen = set()
    for step, sizes in per_rank[0].items():
        assert sizes == per_rank[1][step]
        sizes_seen.add(sizes[0][0])
    assert len(sizes_seen) > 1  # the draw does vary across steps


def test_training_shards_are_disjoint_and_cover_the_data(ddp_run):
    _, _, probes = ddp_run
    for epoch in (0, 1):
        ids = [
            [i for r in steps(probes[k], "train") if r["epoch"] == epoch for i in r["ids"]]
            for k in (0, 1)
        ]
        assert len(ids[0]) == len(ids[1]) == NUM_TRAIN // 2
        assert not set(ids[0]) & set(ids[1])
        assert len(set(ids[0]) | set(ids[1])) == NUM_TRAIN


def test_validation_sees_every_image_exactly_once(ddp_run):
    tmp_path, _, probes = ddp_run
    for epoch in (0, 1):
        ids = [
            i
            for k in (0, 1)
            for r in steps(probes[k], "val")
            if r["epoch"] == epoch
            for i in r["ids"]
        ]
        assert sorted(ids) == sorted(set(ids)) and len(ids) == NUM_VAL
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val/num_images"] == NUM_VAL  # what the COCO evaluation counted


@pytest.mark.slow  # a subprocess run of several seconds: make test-full
def test_a_dying_process_ends_the_run_with_an_error(tmp_path):
    proc = run_ddp(tmp_path, "+callbacks.probe.fail_rank=1", "+callbacks.probe.fail_step=1")
    assert proc.returncode != 0
    assert "simulated failure of rank 1" in proc.stderr
