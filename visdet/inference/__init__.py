"""Inference: a trained detector as a Python object (``Detector``), image sources, sliced
(tiled) prediction."""

from visdet.inference.detector import Detector
from visdet.inference.tiling import TileSettings

__all__ = ["Detector", "TileSettings"]
