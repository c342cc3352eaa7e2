"""Device-side batch augmentation for detection (run in ``on_after_batch_transfer``).

Training, in this order, on each batch:

1. Size: each image is resized (the detectors' own resize, visdet.ops.resize_image,
   antialiased when shrinking) so its short side is the batch's training size ``S`` (drawn
   from ``train_sizes`` once per batch, from ``(size_seed, step)`` when the caller passes the
   training step, so every DDP process resizes its batch of that step to the same size; long
   side capped at ``max_size``), or, with ``large_scale_jitter``, scaled by a random factor
   and cropped / padded to ``S`` x ``S`` (visdet.data.scale_jitter).
2. With ``mosaic`` or ``mixup``, the resized batch joins a buffer of recent samples
   (visdet.data.sample_buffer) that provides the partners: ``mosaic`` puts four images on an
   ``S`` x ``S`` canvas (visdet.data.mosaic), ``mixup`` blends in one more (visdet.data.mixup).
   Both switch off for their ``off_last_epochs`` last epochs (``set_epoch``).
3. Kornia, on each group of same-size images as one batch: horizontal flip, random resized
   crop, random affine, colour jitter, photometric distortion. Boxes follow the geometric
   transforms (the four corners through Kornia's matrix, in pixel-centre coordinates).

After every geometric step boxes are clipped to the image and kept when both sides are at
least ``min_box_size`` and at least ``min_visible`` of their moved area is inside
(visdet.data.boxes_in_view); labels stay in sync. Validation: only the deterministic resize to
``val_size``.

Instance masks (targets from ``data.masks=true``): the RLEs are rasterised on the batch's
device first (visdet.data.instance_masks), then resized with their image (nearest neighbour)
and moved by Kornia's geometric ops with the images' own draw (its ``mask`` data key:
nearest neighbour, colour ops skipped), crowd regions with them; masks are kept or dropped with
their boxes, and the pasting of mosaic copies them with their pixels. After a rotation or shear
(which turns a box's corners into a loose hull) the boxes are re-derived from the moved masks
(their tight bounds, as Ultralytics does from segments); an object whose mask left the image is
dropped. Large-scale jitter and mixup do not move masks yet and refuse such data.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

import kornia.augmentation as K
import torch
from torch import Tensor, nn

from visdet.data.augment_settings import (
    CropSettings,
    JitterSettings,
    MixupSettings,
    MosaicSettings,
    PhotometricSettings,
    parse,
)
from visdet.data.boxes_in_view import boxes_in_view, clip_boxes, mask_boxes, select
from visdet.data.instance_masks import rasterize_targets
from visdet.data.mixup import draw_lambda, mixup
from visdet.data.mosaic import draw_center, mosaic
from visdet.data.sample_buffer import SampleBuffer
from visdet.data.scale_jitter import large_scale_jitter
from visdet.ops.boxes import scale_boxes
from visdet.ops.resize import resize_image, resize_masks

log = logging.getLogger(__name__)


def resize_image_and_boxes(
    image: Tensor, boxes: Tensor, short: int, max_size: int, antialias: bool = True
) -> tuple[Tensor, Tensor]:
    """Resize so the short side is ``short`` (long side at most ``max_size``) with the
    detectors' own resize (visdet.ops.resize_image); boxes are scaled with the image."""
    h, w = image.shape[-2:]
    out = resize_image(image, short, max_size, antialias)
    if out is image:
        return image, boxes
    nh, nw = out.shape[-2:]
    return out, scale_boxes(boxes, nw / w, nh / h)


def map_boxes(boxes: Tensor, matrix: Tensor) -> Tensor:
    """Axis-aligned hull [N, 4] of boxes [N, 4] (continuous pixel coordinates) mapped by a
    3x3 matrix that acts on pixel-centre coordinates (Kornia's convention); not clipped."""
    if boxes.numel() == 0:
        return boxes
    x1, y1, x2, y2 = boxes.unbind(1)
    corners = torch.stack([torch.stack(c, 1) for c in ((x1, y1), (x2, y1), (x1, y2), (x2, y2))], 1)
    pts = corners - 0.5
    pts = pts @ matrix[:2, :2].T + matrix[:2, 2]
    pts = pts + 0.5
    return torch.cat([pts.min(1).values, pts.max(1).values], 1)


def transform_boxes(boxes: Tensor, matrix: Tensor, size: tuple[int, int]) -> Tensor:
    """``map_boxes`` clipped to ``size`` (height, width)."""
    return clip_boxes(map_boxes(boxes, matrix), size) if boxes.numel() else boxes


class DetectionAugment(nn.Module):
    """See the module docstring.

    Args:
        train_sizes: short-side sizes to draw from in training (scale jitter).
        val_size: short side in validation.
        max_size: cap on the long side.
        hflip: probability of a horizontal flip.
        color_jitter: (brightness, contrast, saturation, hue) or None.
        color_jitter_p: probability of colour jitter.
        affine: kwargs of kornia RandomAffine (degrees, translate, scale, shear, p) or None.
        min_box_size: boxes narrower or lower than this after augmentation are dropped.
        size_seed: seeds the per-step draw of the training size (with the step number).
        mosaic: ``{p, center, off_last_epochs}`` (visdet.data.augment_settings) or None.
        mixup: ``{p, alpha, off_last_epochs}`` or None.
        large_scale_jitter: ``{scale, p}`` or None.
        random_resized_crop: ``{scale, ratio, p}`` or None.
        photometric: ``{brightness, contrast, saturation, hue, p}`` or None.
        min_visible: boxes with less of their moved area inside the image are dropped.
        fill: the value (images are in [0, 1]) of canvas pixels no image covers.
        buffer_size: how many recent samples mosaic and mixup draw their partners from.
    """

    def __init__(
        self,
        train_sizes: Sequence[int] = (128,),
        val_size: int = 128,
        max_size: int = 1333,
        hflip: float = 0.5,
        color_jitter: Sequence[float] | None = (0.2, 0.2, 0.2, 0.02),
        color_jitter_p: float = 0.8,
        affine: dict | None = None,
        min_box_size: float = 2.0,
        size_seed: int | None = 0,
        mosaic: dict | None = None,
        mixup: dict | None = None,
        large_scale_jitter: dict | None = None,
        random_resized_crop: dict | None = None,
        photometric: dict | None = None,
        min_visible: float = 0.0,
        fill: float = 114 / 255,
        buffer_size: int = 16,
    ) -> None:
        super().__init__()
        if not train_sizes or any(s < 1 for s in train_sizes) or val_size < 1 or max_size < 1:
            raise ValueError(
                f"aug: sizes must be positive, got train_sizes={list(train_sizes)}, "
                f"val_size={val_size}, max_size={max_size}"
            )
        if not 0 <= hflip <= 1:
            raise ValueError(f"aug.hflip must be a probability in [0, 1], got {hflip}")
        if not 0 <= min_visible <= 1:
            raise ValueError(f"aug.min_visible must be a fraction in [0, 1], got {min_visible}")
        self.train_sizes = tuple(int(s) for s in train_sizes)
        self.val_size = val_size
        self.max_size = max_size
        self.min_box_size = min_box_size
        self.min_visible = float(min_visible)
        self.fill = float(fill)
        self.size_seed = size_seed or 0
        self.size_override: int | None = None  # set by e.g. a progressive-resizing schedule
        self.mosaic = parse(MosaicSettings, "mosaic", mosaic)
        self.mixup = parse(MixupSettings, "mixup", mixup)
        self.jitter = parse(JitterSettings, "large_scale_jitter", large_scale_jitter)
        self.crop = parse(CropSettings, "random_resized_crop", random_resized_crop)
        photometric = parse(PhotometricSettings, "photometric", photometric)
        self.buffer = SampleBuffer(buffer_size) if (self.mosaic or self.mixup) else None
        self.mosaic_on = self.mosaic is not None
        self.mixup_on = self.mixup is not None
        before: list[nn.Module] = [K.RandomHorizontalFlip(p=hflip)] if hflip > 0 else []
        after: list[nn.Module] = [K.RandomAffine(**dict(affine))] if affine else []
        if color_jitter is not None:
            if len(color_jitter) != 4:
                raise ValueError(
                    "aug.color_jitter must be (brightness, contrast, saturation, "
                    f"hue), got {list(color_jitter)}"
                )
            after.append(K.ColorJitter(*color_jitter, p=color_jitter_p))
        if photometric is not None:
            after += photometric_ops(photometric)
        # registered modules, so .to(device) moves them with the detector module
        self.ops_before, self.ops_after = nn.ModuleList(before), nn.ModuleList(after)
        # per image size (the crop's output size); a plain dict: the crop has no state, and
        # its lazily built entries must not change the checkpoint's keys
        self.crop_sequences: dict[tuple[int, int], K.AugmentationSequential] = {}
        if self.crop is None and (before or after):
            self.kornia = K.AugmentationSequential(*before, *after, data_keys=["input"])
        else:
            self.kornia = None  # with a crop: built per image size on first use

    def train_size(self, step: int | None = None) -> int:
        """The training short side: ``size_override`` when set; else drawn from
        ``train_sizes`` by a generator seeded with (``size_seed``, ``step``), or from
        Python's global generator when no step is given."""
        if self.size_override is not None:
            return self.size_override
        if step is None:
            return random.choice(self.train_sizes)
        return random.Random(f"{self.size_seed}:{step}").choice(self.train_sizes)

    def set_epoch(self, epoch: int, max_epochs: int | None) -> None:
        """Switch mosaic and mixup off for their ``off_last_epochs`` last epochs (called at
        the start of each training epoch, 0-based ``epoch``)."""
        for name, settings in (("mosaic", self.mosaic), ("mixup", self.mixup)):
            if settings is None or settings.off_last_epochs == 0:
                continue
            if max_epochs is None or max_epochs < 0:
                raise ValueError(
                    f"aug.{name}.off_last_epochs={settings.off_last_epochs} needs "
                    "trainer.max_epochs (the run has no fixed number of epochs)"
                )
            on = epoch < max_epochs - settings.off_last_epochs
            if on != getattr(self, f"{name}_on"):
                log.info("aug.%s %s from epoch %d", name, "on" if on else "off", epoch)
            setattr(self, f"{name}_on", on)

    def forward(
        self, images: list[Tensor], targets: list[dict], train: bool, step: int | None = None
    ) -> tuple[list[Tensor], list[dict]]:
        short = self.train_size(step) if train else self.val_size
        rasterize_targets(targets, images[0].device if images else None)
        if train and any("masks" in t for t in targets):
            self._check_mask_support()
        out_images, out_targets = [], []
        for img, tgt in zip(images, targets, strict=True):
            if train and self.jitter is not None and float(torch.rand(())) < self.jitter.p:
                img, tgt = large_scale_jitter(
                    img, tgt, short, self.jitter.scale, self.fill, self.min_box_size,
                    self.min_visible,
                )  # fmt: skip
            else:
                img, boxes = resize_image_and_boxes(img, tgt["boxes"], short, self.max_size)
                tgt = {**tgt, "boxes": boxes}
                if "masks" in tgt:  # nearest neighbour, to the image's new size
                    size = tuple(img.shape[-2:])
                    tgt["masks"] = resize_masks(tgt["masks"], size)
                    tgt["crowd"] = resize_masks(tgt["crowd"][None], size)[0]
            out_images.append(img)
            out_targets.append(tgt)
        if train and self.buffer is not None and (self.mosaic_on or self.mixup_on):
            self._mix(out_images, out_targets, short)
        if train and (len(self.ops_before) or len(self.ops_after) or self.crop is not None):
            self._augment_groups(out_images, out_targets)
        for img, tgt in zip(out_images, out_targets, strict=True):
            tgt["input_size"] = (int(img.shape[-2]), int(img.shape[-1]))
        return out_images, out_targets

    def _check_mask_support(self) -> None:
        """Instance masks follow resizing, flips, affine, crops, mosaic and colour ops; these
        augmentations do not move them yet."""
        active = [name for name, on in (("large_scale_jitter", self.jitter is not None),
                                        ("mixup", self.mixup_on)) if on]  # fmt: skip
        if active:
            raise ValueError(
                f"aug.{active[0]} does not transform instance masks yet (the data has "
                f"data.masks=true); switch it off for mask training: aug.{active[0]}=null"
            )

    def _mix(self, images: list[Tensor], targets: list[dict], short: int) -> None:
        """Mosaic and mixup with partners from the buffer (the batch included)."""
        self.buffer.extend(images, targets)
        for i, (img, tgt) in enumerate(zip(list(images), list(targets), strict=True)):
            if self.mosaic_on and float(torch.rand(())) < self.mosaic.p:
                tiles = [(img, tgt), *self.buffer.draw(3, exclude=img)]
                center = draw_center(short, self.mosaic.center)
                img, tgt = mosaic(
                    tiles, short, center, self.fill, self.min_box_size, self.min_visible
                )
            if self.mixup_on and float(torch.rand(())) < self.mixup.p:
                ((partner, partner_tgt),) = self.buffer.draw(1, exclude=images[i])
                lam = draw_lambda(self.mixup.alpha)
                img, tgt = mixup(img, tgt, partner, partner_tgt, lam, self.fill)
            images[i], targets[i] = img, tgt

    def _sequence(self, size: tuple[int, int]) -> K.AugmentationSequential:
        if self.kornia is not None:
            return self.kornia
        key = (int(size[0]), int(size[1]))
        if key not in self.crop_sequences:
            crop = K.RandomResizedCrop(
                size, scale=self.crop.scale, ratio=self.crop.ratio, p=self.crop.p
            )
            self.crop_sequences[key] = K.AugmentationSequential(
                *self.ops_before, crop, *self.ops_after, data_keys=["input"]
            )
        return self.crop_sequences[key]

    def _move_masks(self, sequence, targets: list[dict], size, dtype) -> None:
        """Apply the geometric part of the images' last draw (``sequence._params``) to the
        targets' masks and crowd regions: Kornia's ``mask`` data key, nearest neighbour,
        colour ops skipped."""
        stack, counts = _stack_masks(targets, size, dtype)
        moved = sequence(stack, params=sequence._params, data_keys=["mask"]) > 0.5
        for j, t in enumerate(targets):
            t["masks"] = moved[j, : counts[j]].to(torch.uint8)
            t["crowd"] = moved[j, counts[j]].to(torch.uint8)

    def _augment_groups(self, images: list[Tensor], targets: list[dict]) -> None:
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(tuple(img.shape[-2:]), []).append(i)
        for size, idx in groups.items():
            sequence = self._sequence(size)
            batch = sequence(torch.stack([images[i] for i in idx]))
            matrices = sequence.transform_matrix
            if "masks" in targets[idx[0]]:
                self._move_masks(sequence, [targets[i] for i in idx], size, batch.dtype)
            for j, i in enumerate(idx):
                images[i] = batch[j]
                m = matrices[j] if matrices is not None else torch.eye(3, device=batch.device)
                moved = map_boxes(targets[i]["boxes"], m.to(batch.dtype))
                boxes, keep = boxes_in_view(moved, size, self.min_box_size, self.min_visible)
                if "masks" in targets[i]:
                    boxes, keep = self._boxes_of_masks(targets[i]["masks"], boxes, keep, m)
                targets[i] = select(targets[i], boxes, keep)

    def _boxes_of_masks(self, masks: Tensor, boxes: Tensor, keep: Tensor, matrix: Tensor):
        """Objects whose moved mask is empty are dropped; after a rotation or shear
        (off-diagonal ``matrix`` terms) each box becomes its mask's tight box."""
        tight, nonempty = mask_boxes(masks.bool())
        keep = keep & nonempty
        if bool((matrix[:2, :2] - torch.diag(torch.diagonal(matrix[:2, :2]))).abs().max() > 1e-6):
            boxes = torch.where(nonempty[:, None], tight.to(boxes.dtype), boxes)
            w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            keep &= (w >= self.min_box_size) & (h >= self.min_box_size)
        return boxes, keep


def _stack_masks(targets: list[dict], size, dtype) -> tuple[Tensor, list[int]]:
    """[B, max N + 1, H, W]: each target's masks then its crowd region, zero-padded."""
    counts = [len(t["masks"]) for t in targets]
    device = targets[0]["masks"].device
    stack = torch.zeros((len(targets), max(counts) + 1, *size), dtype=dtype, device=device)
    for j, t in enumerate(targets):
        stack[j, : counts[j]] = t["masks"]
        stack[j, counts[j]] = t["crowd"]
    return stack, counts


def photometric_ops(settings: PhotometricSettings) -> list[nn.Module]:
    """Kornia's brightness, contrast, saturation and hue ops of ``settings``, each with p."""
    ops: list[nn.Module] = []
    if settings.brightness is not None:
        ops.append(K.RandomBrightness(settings.brightness, p=settings.p))
    if settings.contrast is not None:
        ops.append(K.RandomContrast(settings.contrast, p=settings.p))
    if settings.saturation is not None:
        ops.append(K.RandomSaturation(settings.saturation, p=settings.p))
    if settings.hue is not None:
        ops.append(K.RandomHue(settings.hue, p=settings.p))
    return ops
