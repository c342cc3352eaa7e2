"""Readers of other dataset layouts (YOLO, Pascal VOC) into a COCO instances dict, so that
everything downstream (CocoDetection, evaluation) reads one format."""

from visdet.data.formats.format_read import FormatRead
from visdet.data.formats.voc import read_voc
from visdet.data.formats.yolo import read_yolo

__all__ = ["FormatRead", "read_voc", "read_yolo"]
