# mirrors mmdetection configs/faster_rcnn/faster-rcnn_r50-caffe_fpn_ms-1x_coco.py and its
# -person variant (3.x): caffe backbone, multi-scale training, one class, a start checkpoint
_base_ = "./faster-rcnn_r50_fpn_1x_coco.py"
model = dict(
    data_preprocessor=dict(
        type="DetDataPreprocessor",
        mean=[103.530, 116.280, 123.675],
        std=[1.0, 1.0, 1.0],
        bgr_to_rgb=False,
        pad_size_divisor=32,
    ),
    backbone=dict(
        norm_cfg=dict(requires_grad=False),
        norm_eval=True,
        style="caffe",
        init_cfg=dict(type="Pretrained", checkpoint="open-mmlab://detectron2/resnet50_caffe"),
    ),
    roi_head=dict(bbox_head=dict(num_classes=1)),
)
train_pipeline = [
    dict(type="LoadImageFromFile", backend_args=_base_.backend_args),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(
        type="RandomChoiceResize",
        scales=[(1333, 640), (1333, 672), (1333, 704), (1333, 736), (1333, 768), (1333, 800)],
        keep_ratio=True,
    ),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackDetInputs"),
]
_base_.train_dataloader.dataset.pipeline = train_pipeline
metainfo = {"classes": ("person",), "palette": [(220, 20, 60)]}
train_dataloader = dict(dataset=dict(metainfo=metainfo))
val_dataloader = dict(dataset=dict(metainfo=metainfo))
load_from = "https://download.openmmlab.com/mmdetection/v2.0/faster_rcnn/faster_rcnn_r50_caffe_fpn_mstrain_3x_coco.pth"  # noqa
