"""The one-stage detector skeleton RetinaNet, FCOS and ATSS share: backbone -> neck -> a dense
head over pyramid levels -> anchors -> (training) the family's losses or (inference) the
family's per-level scores through the shared dense post-processing.

A family subclasses ``DenseDetector`` and writes two methods: ``losses(outputs, anchors,
targets, anchors_per_level)`` (a dict of ``loss_*`` scalars) and ``level_scores(outputs)``
(class scores in [0, 1] per anchor and class, from the head outputs of one image), plus its
box coder; optionally ``score_factors(outputs)`` (a factor per anchor that multiplies the
scores after the threshold and top-k, MMDetection's centerness scoring). Head outputs are
dicts of [B, N, C] tensors over all N anchors of all levels
(``visdet.models.heads.retinanet_head.flatten_levels``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from visdet.models.backbones.base import Backbone
from visdet.models.detectors.inputs import as_image_list, check_targets
from visdet.models.detectors.transform import DetectionTransform
from visdet.models.heads.dense_candidates import dense_detections
from visdet.ops import AnchorGenerator
from visdet.ops.precision import autocast_off, float32

# torchvision's and MMDetection's pyramid for one-stage detectors (P2 would give too many anchors)
DENSE_LEVELS = ("p3", "p4", "p5", "p6", "p7")


def check_neck_levels(family: str, neck: nn.Module, levels: Sequence[str]) -> None:
    """A ValueError naming the neck and ``levels`` when ``neck`` does not output them all."""
    have = list(getattr(neck, "out_features", ()))
    missing = [lv for lv in levels if lv not in have]
    if missing:
        raise ValueError(
            f"{family}: the head reads neck levels {list(levels)} but neck "
            f"{type(neck).__name__} outputs {have} (missing {missing}); use neck=fpn_p6p7, "
            "pafpn_p6p7 or (ViT) simple_fpn_p6p7, or set the detector's levels"
        )


def check_focal(alpha: float, gamma: float) -> None:
    """A ValueError naming ``focal_alpha`` / ``focal_gamma`` outside [0, 1] / below 0."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"focal_alpha must be in [0, 1], got {alpha}")
    if gamma < 0:
        raise ValueError(f"focal_gamma must be >= 0, got {gamma}")


class DenseDetector(nn.Module):
    """See the module docstring.

    ``model(images, targets=None)`` as ``FasterRCNN``: images are a list of Tensor[3, H, W]
    or a Tensor[B, 3, H, W] in [0, 1]; targets one dict per image (``boxes`` [N, 4] xyxy,
    ``labels`` [N] in 1..num_classes). Training returns a dict of scalar losses, eval one dict
    per image (``boxes``, ``scores``, ``labels``) in the input image's pixels.

    Args:
        backbone, neck: a contract backbone and a neck returning (at least) ``levels``.
        head: the dense head (``forward(features) -> dict of [B, N, C]``).
        anchor_generator: anchors per level (one size group per level).
        transform: normalisation, resizing and padding.
        num_classes: object classes (background excluded).
        levels: the neck outputs the head reads, shallowest first.
        score_thresh, nms_thresh, detections_per_img, topk_candidates: post-processing.
    """

    box_coder: object  # the family's coder (decode(deltas, anchors))
    COMPILE_TARGETS = ("backbone", "neck", "head")  # what model.compile=true compiles

    def __init__(self, backbone: Backbone, neck: nn.Module, head: nn.Module,
                 anchor_generator: AnchorGenerator, transform: DetectionTransform,
                 num_classes: int, levels: Sequence[str] = DENSE_LEVELS,
                 score_thresh: float = 0.05, nms_thresh: float = 0.5,
                 detections_per_img: int = 300, topk_candidates: int = 1000) -> None:  # fmt: skip
        super().__init__()
        if len(anchor_generator.sizes) != len(levels):
            raise ValueError(
                f"anchor sizes need one group per level {list(levels)}, got "
                f"{len(anchor_generator.sizes)}"
            )
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.anchor_generator = anchor_generator
        self.transform = transform
        self.num_classes = num_classes
        self.levels = tuple(levels)
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.topk_candidates = topk_candidates

    def _features(self, images: list[Tensor], targets):
        batch, targets = self.transform(images, targets)
        pyramid = self.neck(self.backbone(batch.tensor))
        features = [pyramid[lv] for lv in self.levels]
        return batch, targets, features

    def _anchors(self, batch, features: list[Tensor], dtype) -> list[Tensor]:
        sizes = [tuple(f.shape[-2:]) for f in features]
        return self.anchor_generator(batch.padded_size, sizes, dtype, features[0].device)

    def forward(
        self, images: Tensor | list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ):
        images = as_image_list(images)
        if self.training:
            check_targets(targets, len(images), self.num_classes)
        original_sizes = [(i.shape[-2], i.shape[-1]) for i in images]
        batch, targets, features = self._features(images, targets if self.training else None)
        # mixed precision: the head's convs may run in half precision, the rest in float32
        outputs = float32(self.head(features))
        with autocast_off():
            return self._losses_or_detections(outputs, batch, targets, features, original_sizes)

    def _losses_or_detections(self, outputs, batch, targets, features, original_sizes):
        per_level = self._anchors(batch, features, outputs["bbox_regression"].dtype)
        if self.training:
            return self.losses(outputs, per_level, targets)
        counts = [a.shape[0] for a in per_level]
        detections = []
        for i, size in enumerate(batch.image_sizes):
            image_outputs = {k: v[i] for k, v in outputs.items()}
            scores = self.level_scores(image_outputs).split(counts)
            factors = self.score_factors(image_outputs)
            deltas = outputs["bbox_regression"][i].split(counts)
            detections.append(
                dense_detections(
                    scores,
                    deltas,
                    per_level,
                    size,
                    self.box_coder,
                    self.score_thresh,
                    self.topk_candidates,
                    self.nms_thresh,
                    self.detections_per_img,
                    None if factors is None else factors.split(counts),
                )  # fmt: skip
            )
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)

    def head_outputs(self, images: Tensor | list[Tensor]) -> dict[str, Tensor]:
        """The head's raw outputs for every anchor ([B, N, C] each), before any
        post-processing (the export parity check compares them)."""
        _, _, features = self._features(as_image_list(images), None)
        return dict(self.head(features))

    def losses(self, outputs: dict[str, Tensor], anchors: list[Tensor],
               targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:  # fmt: skip
        """The family's training losses; ``anchors`` per level [A_l, 4] (the same for every
        image of the padded batch)."""
        raise NotImplementedError

    def level_scores(self, outputs: dict[str, Tensor]) -> Tensor:
        """Class scores [N, K] in [0, 1] from one image's head outputs ([N, C] each)."""
        raise NotImplementedError

    def score_factors(self, outputs: dict[str, Tensor]) -> Tensor | None:
        """None, or a factor [N] per anchor multiplied into the scores that pass the threshold
        and the top-k (``visdet.models.heads.dense_candidates``)."""
        return None

    def param_groups(self) -> list[tuple[str, tuple[str, ...]]]:
        """Layer groups for discriminative LRs, shallowest first: the backbone's, then the
        family's (neck, head)."""
        from visdet.models.families import family_of

        groups = [(n, tuple(f"backbone.{p}" for p in ps)) for n, ps in self.backbone.param_groups()]
        return groups + list(family_of(self).head_groups)

    def lora_targets(self) -> tuple[str, tuple[str, ...]]:
        """(pattern of the layers LoRA adapts by default, modules trained fully)."""
        from visdet.models.families import family_of

        family = family_of(self)
        pattern = rf"backbone\.(?:{self.backbone.lora_pattern})|{family.lora_pattern}"
        return pattern, family.lora_train_modules
