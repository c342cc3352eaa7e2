"""A tiny detector training config (64 px shapes, a few images) for end-to-end tests."""

from pathlib import Path

from hydra import compose, initialize_config_dir

CONF = Path(__file__).parents[1] / "conf"


def tiny_cfg(tmp_path, *extra):
    overrides = [
        f"paths.output_dir={tmp_path / 'run'}",
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
        "model.detector.fpn_channels=32",
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
        *extra,
    ]
    if any(e.startswith("sched=") for e in extra):
        overrides.remove("sched.warmup_steps=2")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides)
