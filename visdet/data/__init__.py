"""Datasets, datamodules and device-side augmentation."""

from visdet.data.augment import DetectionAugment
from visdet.data.coco import CocoDetection, load_coco
from visdet.data.datamodule import DetectionDataModule, collate_detection
from visdet.data.sources import CocoSource, ShapesSource

__all__ = [
    "CocoDetection",
    "CocoSource",
    "DetectionAugment",
    "DetectionDataModule",
    "ShapesSource",
    "collate_detection",
    "load_coco",
]
