from visdet.metrics.coco_map import CocoMeanAP, evaluate_detections

__all__ = ["CocoMeanAP", "evaluate_detections"]
