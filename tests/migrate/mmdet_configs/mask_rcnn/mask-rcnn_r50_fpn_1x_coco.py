# mirrors mmdetection configs/mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py (3.x); the dataset is
# coco_detection with masks (coco_instance in MMDetection)
_base_ = [
    "../_base_/models/mask-rcnn_r50_fpn.py",
    "../_base_/datasets/coco_detection.py",
    "../_base_/schedules/schedule_1x.py",
    "../_base_/default_runtime.py",
]
optim_wrapper = dict(type="AmpOptimWrapper", clip_grad=dict(max_norm=35, norm_type=2))
