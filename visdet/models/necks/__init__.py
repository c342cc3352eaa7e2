"""Necks: map backbone stages to the feature pyramid the heads read."""

from visdet.models.necks.build import neck_for
from visdet.models.necks.fpn import FPN
from visdet.models.necks.pafpn import PAFPN
from visdet.models.necks.simple_pyramid import SimpleFeaturePyramid

__all__ = ["FPN", "PAFPN", "SimpleFeaturePyramid", "neck_for"]
