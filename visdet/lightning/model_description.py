"""What a detector checkpoint says about itself (``checkpoint["visdet"]`` and the ``visdet``
metadata of ``model.safetensors``), so the file alone rebuilds and runs the detector:

    {"format": "visdet-detector-v1",
     "detector": {...},       # the resolved model.detector config (_target_, backbone, neck)
     "classes": [{"id": <the dataset's category id>, "name": "..."}, ...],  # label k = [k-1]
     "preprocessing": {"min_size": 128, "max_size": 1333, "antialias": true},
     "config": {...}}         # the whole resolved run config (data, aug, optim, ...)

``preprocessing`` is the validation resize of the run (``aug.val_size``, ``aug.max_size``:
``visdet.ops.resize.resize_image`` with antialiasing, before the detector; ``min_size`` null:
no resize); the detector normalises and pads itself. Read by ``visdet.inference``.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

FORMAT = "visdet-detector-v1"


def describe(cfg: DictConfig) -> dict:
    """The description of the detector a training config builds (classes come later, from
    the data: ``with_classes``)."""
    resolved = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    config = OmegaConf.to_container(resolved, resolve=True)
    aug = config.get("aug") or {}
    return {
        "format": FORMAT,
        "detector": config["model"]["detector"],
        "classes": [],
        "preprocessing": {
            "min_size": aug.get("val_size"),
            "max_size": aug.get("max_size", 1333),
            "antialias": True,
        },
        "config": config,
    }


def dataset_classes(dataset) -> list[dict]:
    """``[{"id": category id, "name": name}]`` of a detection dataset (label k = item k-1)."""
    if dataset is None:
        return []
    return [
        {"id": int(c), "name": str(n)}
        for c, n in zip(dataset.cat_ids, dataset.class_names, strict=True)
    ]


def with_classes(description: dict, datamodule) -> dict:
    """``description`` with the classes of the datamodule's validation set."""
    classes = dataset_classes(getattr(datamodule, "val_set", None))
    return {**description, "classes": classes or description.get("classes", [])}
