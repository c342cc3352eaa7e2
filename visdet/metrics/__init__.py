from visdet.metrics.coco_eval import STAT_NAMES, CocoEvaluation, evaluate_coco
from visdet.metrics.coco_map import CocoMeanAP, evaluate_detections
from visdet.metrics.results_file import ResultsFileError, load_results
from visdet.metrics.tide import tide_errors

__all__ = [
    "STAT_NAMES",
    "CocoEvaluation",
    "CocoMeanAP",
    "ResultsFileError",
    "evaluate_coco",
    "evaluate_detections",
    "load_results",
    "tide_errors",
]
