# mirrors mmdetection 2.x configs/retinanet/retinanet_r18_fpn_1x_coco.py
_base_ = [
    "../_base_/models/retinanet_r50_fpn.py",
    "../_base_/datasets/coco_detection_v2.py",
    "../_base_/schedules/schedule_1x_v2.py",
    "../_base_/default_runtime_v2.py",
]
model = dict(
    backbone=dict(depth=18, init_cfg=dict(type="Pretrained", checkpoint="torchvision://resnet18")),
    neck=dict(in_channels=[64, 128, 256, 512]),
)
optimizer = dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=0.0001)
data = dict(samples_per_gpu=8)
