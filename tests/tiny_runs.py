"""A tiny detector training config (64 px shapes, a few images) for end-to-end tests, and
``train.py`` run as a subprocess (as users and launchers run it)."""

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

ROOT = Path(__file__).parents[1]
CONF = ROOT / "conf"


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def tiny_overrides(tmp_path, *extra):
    """Command-line overrides of the tiny run (data under ``tmp_path/data``), then ``extra``;
    an ``extra`` that sets a key of the tiny list replaces that entry. No output directory:
    ``tiny_cfg`` adds one, a ``train.py`` subprocess gets Hydra's."""
    overrides = [
        f"paths.data_dir={tmp_path / 'data'}",
        "data.source.num_train=8",
        "data.source.num_val=4",
        "data.source.image_size=64",
        "+data.source.min_object_size=12",
        "+data.source.max_object_size=40",
        "data.batch_size=4",
        "data.num_workers=0",
        "aug.train_sizes=[64]",
        "aug.val_size=64",
        "neck.out_channels=32",
        "model.detector.representation_size=64",
        "model.detector.rpn_pre_nms_top_n_test=100",
        "model.detector.rpn_post_nms_top_n_test=50",
        "trainer.max_epochs=3",
        "trainer.check_val_every_n_epoch=1",
        "trainer.accelerator=cpu",
        "trainer.log_every_n_steps=1",
        "sched.warmup_steps=2",
        "optim.lr=0.01",
        "~callbacks.progress_bar",
        "+trainer.enable_progress_bar=false",
        "analysis=false",  # the evaluation report: tests/test_train.py turns it on
    ]
    if any(e.startswith("sched=") for e in extra):
        overrides.remove("sched.warmup_steps=2")
    replaced = {_key(e) for e in extra}
    return [o for o in overrides if _key(o) not in replaced] + list(extra)


def tiny_cfg(tmp_path, *extra):
    overrides = [f"paths.output_dir={tmp_path / 'run'}", *tiny_overrides(tmp_path, *extra)]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides)


def run_train_py(args, cwd=ROOT, launcher=(), pythonpath=None, timeout=300, module=None):
    """``python [launcher...] train.py args...`` (``python -m module args...`` when ``module``
    names another entry point); ``pythonpath`` makes test-only callbacks importable in the
    run; a TORCHELASTIC_RUN_ID of the calling environment is not passed on."""
    env = {k: v for k, v in os.environ.items() if k != "TORCHELASTIC_RUN_ID"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [
            sys.executable,
            *launcher,
            *(["-m", module] if module else [str(ROOT / "train.py")]),
            *args,
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
