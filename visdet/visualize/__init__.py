"""Drawing predictions on images."""

from visdet.visualize.draw import class_color, draw_boxes

__all__ = ["class_color", "draw_boxes"]
