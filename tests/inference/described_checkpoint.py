"""A small real detector (Faster R-CNN R18-FPN-32, 3 classes) with its model description,
saved as a Lightning-style .ckpt and as model.safetensors under tmp_path."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from visdet.config.presets import compose_train_config
from visdet.models.weights.safetensors_file import save_weights

OVERRIDES = ["model=faster_rcnn_r18_fpn", "data.num_classes=3", "neck.out_channels=32"]
MASK_OVERRIDES = [
    "model=mask_rcnn_r18_fpn",
    "data.num_classes=3",
    "neck.out_channels=32",
    "model.detector.mask_layers=[16,16]",
    "model.detector.mask_dim_reduced=16",
]
CLASSES = [{"id": 7, "name": "cat"}, {"id": 9, "name": "dog"}, {"id": 12, "name": "bird"}]
PREPROCESSING = {"min_size": 96, "max_size": 160, "antialias": True}


def make_small_model(overrides=OVERRIDES) -> dict:
    """``{"node": detector config, "state": weights, "description": DESCRIPTION}``; the
    Faster R-CNN of ``OVERRIDES`` or, with ``MASK_OVERRIDES``, a Mask R-CNN."""
    cfg = compose_train_config(overrides)
    node = OmegaConf.to_container(cfg.model.detector, resolve=True)
    torch.manual_seed(0)
    detector = instantiate(node)
    description = {
        "format": "visdet-detector-v1",
        "detector": node,
        "classes": CLASSES,
        "preprocessing": PREPROCESSING,
        "config": {"aug": {"val_size": 96, "max_size": 160}},
    }
    return {"node": node, "state": detector.state_dict(), "description": description}


def build_small(small_model: dict) -> torch.nn.Module:
    detector = instantiate(copy.deepcopy(small_model["node"]))
    detector.load_state_dict(small_model["state"])
    return detector.eval()


def save_ckpt(small_model: dict, path: Path, description: dict | None = None) -> Path:
    state = {"detector." + k: v for k, v in small_model["state"].items()}
    checkpoint = {"state_dict": state, "epoch": 3}
    description = small_model["description"] if description is None else description
    if description:
        checkpoint["visdet"] = description
    torch.save(checkpoint, path)
    return path


def save_safetensors(small_model: dict, path: Path) -> Path:
    return save_weights(small_model["state"], path, {"visdet": small_model["description"]})


def images_of_sizes(sizes, seed: int = 0) -> list[torch.Tensor]:
    """Smooth random RGB images [3, h, w] in [0, 1] (blobs, so the detector sees edges)."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for h, w in sizes:
        coarse = torch.rand(3, max(2, h // 16), max(2, w // 16), generator=generator)
        out.append(torch.nn.functional.interpolate(coarse[None], size=(h, w), mode="bilinear")[0])
    return out
