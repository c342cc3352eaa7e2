"""Datasets, datamodules and device-side augmentation."""

from visdet.data.augment import DetectionAugment
from visdet.data.classification_datamodule import ClassificationDataModule
from visdet.data.coco import CocoDetection, load_coco
from visdet.data.datamodule import DetectionDataModule, collate_detection
from visdet.data.image_folder import ImageFolderDataset
from visdet.data.object_crops import ObjectCropDataset, shapes_crops
from visdet.data.repeat_factor import RepeatFactorSampler, epoch_indices, repeat_factors
from visdet.data.sources import AutoSource, CocoSource, ShapesSource, VocSource, YoloSource

__all__ = [
    "AutoSource",
    "ClassificationDataModule",
    "CocoDetection",
    "CocoSource",
    "DetectionAugment",
    "DetectionDataModule",
    "ImageFolderDataset",
    "ObjectCropDataset",
    "RepeatFactorSampler",
    "ShapesSource",
    "VocSource",
    "YoloSource",
    "collate_detection",
    "epoch_indices",
    "load_coco",
    "repeat_factors",
    "shapes_crops",
]
