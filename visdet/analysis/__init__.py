"""Evaluation analysis outputs: the confusion matrix (``confusion``), precision-recall curves
(``pr_curves``), the per-class CSV and text table (``per_class_table``), the error gallery
(``gallery``) and the self-contained HTML report (``report_html``). Inputs are plain numpy
arrays, dicts and PIL images; matplotlib is imported only when a plot is drawn."""

from visdet.analysis.confusion import (
    confusion_matrix,
    plot_confusion_matrix,
    row_normalised,
    write_confusion_csv,
)
from visdet.analysis.gallery import GalleryImage, gallery_entries, worst_images
from visdet.analysis.per_class_table import format_per_class_table, write_per_class_csv
from visdet.analysis.pr_curves import plot_pr_curves, pr_curve_points
from visdet.analysis.report_html import write_report_html

__all__ = [
    "GalleryImage",
    "confusion_matrix",
    "format_per_class_table",
    "gallery_entries",
    "plot_confusion_matrix",
    "plot_pr_curves",
    "pr_curve_points",
    "row_normalised",
    "worst_images",
    "write_confusion_csv",
    "write_per_class_csv",
    "write_report_html",
]
