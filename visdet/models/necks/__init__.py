"""Necks: map backbone stages to the feature pyramid the heads read."""

from visdet.models.necks.build import neck_for
from visdet.models.necks.fpn import FPN

__all__ = ["FPN", "neck_for"]
