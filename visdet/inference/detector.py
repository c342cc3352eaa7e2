"""``Detector``: a trained detector as a plain Python object, from a checkpoint to
predictions in each image's own pixels.

    from visdet import Detector
    det = Detector.from_checkpoint("outputs/train/runs/<run>/checkpoints/best.ckpt")
    [result] = det.predict("photo.jpg", score_thresh=0.5)
    result["boxes"], result["scores"], result["labels"], result["names"]

Preprocessing: each image [3, H, W] in [0, 1] is resized by ``visdet.ops.resize.resize_image``
(``min_size`` short side, ``max_size`` long-side cap, ``antialias``) before the detector, whose
own resize is off, so images are resized exactly once; the detector normalises and pads them.
Boxes are mapped back to the original pixels as validation does (visdet.lightning).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn

from visdet.data.instance_masks import encode_masks
from visdet.inference.description import (
    CheckpointContents,
    build_described_detector,
    check_preprocessing,
    described_num_classes,
    read_checkpoint,
)
from visdet.inference.image_source import to_image_tensor
from visdet.inference.tiling import TileSettings, predict_tiled
from visdet.models.families import predicts_masks
from visdet.ops.paste_masks import masks_at_size
from visdet.ops.resize import resize_image

log = logging.getLogger(__name__)

NO_RESIZE = {"min_size": None, "max_size": 1333, "antialias": False}


class Detector:
    """A detector ready to predict.

    Args:
        detector: an nn.Module following the detector contract (eval: ``detector(list of
            [3, H, W])`` returns one dict per image with ``boxes`` [N, 4] xyxy in that
            input's pixels, ``scores`` [N], ``labels`` [N] in 1..K). Used as it is (moved to
            ``device``, eval mode); ``from_checkpoint`` turns its own resize off.
        class_names: K names; label k is ``class_names[k-1]``.
        category_ids: K original category ids (default 1..K).
        preprocessing: ``{"min_size", "max_size", "antialias"}`` resize before the detector;
            None: no resize (``min_size`` null).
        device: where the detector runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``).

    Attributes: ``detector``, ``class_names``, ``category_ids``, ``num_classes``,
    ``preprocessing``, ``device``, ``description`` (the model description stored in the
    checkpoint ``from_checkpoint`` read, or None).
    """

    def __init__(
        self,
        detector: nn.Module,
        class_names: Sequence[str],
        category_ids: Sequence[int] | None = None,
        preprocessing: Mapping | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if not isinstance(detector, nn.Module):
            raise TypeError(f"detector must be an nn.Module, got {type(detector).__name__}")
        if isinstance(class_names, str) or not all(isinstance(n, str) for n in class_names):
            raise TypeError("class_names must be a list of strings")
        if not class_names:
            raise ValueError("class_names must name at least one class")
        ids = list(range(1, len(class_names) + 1)) if category_ids is None else list(category_ids)
        if len(ids) != len(class_names):
            raise ValueError(f"category_ids has {len(ids)} entries, class_names {len(class_names)}")
        self.device = _checked_device(device)
        self.detector = detector.to(self.device).eval()
        self.class_names = list(class_names)
        self.category_ids = [int(i) for i in ids]
        self.num_classes = len(self.class_names)
        self.preprocessing = check_preprocessing(
            NO_RESIZE if preprocessing is None else preprocessing
        )
        self.description: dict | None = None  # the file's stored model description, if any

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        model: str | None = None,
        num_classes: int | None = None,
        classes: Sequence[str] | None = None,
        device: str | torch.device = "cpu",
        preprocessing: Mapping | None = None,
    ) -> Detector:
        """A Detector from a weights file.

        - A visdet ``.ckpt`` or ``model.safetensors`` with a stored model description: the
          detector, classes (names and original ids) and preprocessing come from the file;
          ``model`` and ``num_classes`` must then be None or agree with it, ``classes``
          (names) likewise (or name the classes when the file lists none).
        - Any other file (a visdet checkpoint of an older version, a bare state dict, a
          torchvision or MMDetection Faster R-CNN file): ``model=<preset>`` (see
          ``visdet.config.presets.model_presets``) and ``num_classes`` are required; the
          detector is ``build_detector(model, num_classes)``, loaded strictly through the
          family's formats (``visdet.models.weights.pretrained``); ``classes`` names the
          classes (default ``class_1`` .. ``class_K``, ids 1..K). Preprocessing: the matched
          format's (torchvision / MMDetection: short side 800, long side 1333, no
          antialiasing); for a visdet file without description, the validation resize of the
          training config's defaults for that preset (``aug.val_size``, ``aug.max_size``,
          antialiased), which is right only for a run trained with the default ``aug``.

        - An exported detector (``.onnx``, ``.pt2`` from ``visdet export ckpt=...``): run
          through its backend (``visdet.export.detector_runner``); classes and preprocessing
          come from its sidecar ``<file>.visdet.json``.

        ``preprocessing`` overrides the resize in every case but the last. The detector's own
        resize is turned off (``detector.transform.resize_images = False``).
        """
        from visdet.export.detector_runner import is_exported_detector, load_exported_detector

        if is_exported_detector(path):
            if model is not None or num_classes is not None or preprocessing is not None:
                raise ValueError(
                    f"ckpt {path} is an exported detector: its sidecar names the classes and "
                    "preprocessing; drop model=, num_classes= and preprocessing="
                )
            det = load_exported_detector(path, device)
            if classes is not None and list(classes) != det.class_names:
                raise ValueError(
                    f"ckpt {path} names its classes {det.class_names}; classes={list(classes)} "
                    "disagrees (drop classes=)"
                )
            return det
        contents = read_checkpoint(path)
        if contents.description is not None:
            detector, names, ids, stored = _from_description(
                path, contents, model, num_classes, classes
            )
        else:
            detector, names, ids, stored = _from_preset(path, contents, model, num_classes, classes)
        transform = getattr(detector, "transform", None)
        if transform is not None and hasattr(transform, "resize_images"):
            transform.resize_images = False
        chosen = stored if preprocessing is None else preprocessing
        det = cls(detector, names, ids, chosen, device)
        det.description = contents.description
        return det

    # -- prediction -------------------------------------------------------------------------
    def predict(
        self,
        images,
        score_thresh: float | None = None,
        batch_size: int = 8,
        tile: TileSettings | Mapping | None = None,
        max_det: int | None = None,
        classes: Sequence[str] | None = None,
        mask_format: str = "bitmap",
    ) -> list[dict]:
        """Detections for one image or a list of images (sizes may differ).

        Each image: a path, a PIL image, a numpy uint8 [H, W, 3] RGB array or a float tensor
        [3, H, W] in [0, 1] (``visdet.inference.image_source.to_image_tensor``).

        Args:
            score_thresh: keep scores >= this; None keeps what the detector returns (its own
                threshold, Faster R-CNN: ``box_score_thresh`` 0.05, still applies first).
            batch_size: images (or tiles) per forward pass.
            tile: sliced inference (``TileSettings`` or a dict ``{size, overlap, full_image,
                nms_thresh}``, see visdet.inference.tiling); None: whole images.
            max_det: keep at most this many detections per image (the highest scores).
            classes: keep only these class names (ValueError for an unknown one).
            mask_format: a mask model's ``masks``: "bitmap" (bool [N, H, W]) or "rle" (a list
                of N COCO RLEs ``{"size": [H, W], "counts": str}``, a few hundred bytes each).

        Returns one dict per image: ``boxes`` float32 [N, 4] xyxy in that image's original
        pixels, ``scores`` float32 [N], ``labels`` int64 [N] in 1..K, ``names`` list[str],
        ``category_ids`` list[int] (the dataset's original ids), sorted by decreasing score,
        on the CPU; a Mask R-CNN adds ``masks`` in the original pixels (its masks resized
        bilinearly, above 0.5), as ``mask_format`` says.
        """
        if mask_format not in ("bitmap", "rle"):
            raise ValueError(f"mask_format must be 'bitmap' or 'rle', got {mask_format!r}")
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        _check_positive_int(batch_size, "batch_size")
        if max_det is not None:
            _check_positive_int(max_det, "max_det")
        if score_thresh is not None and not (
            isinstance(score_thresh, (int, float)) and 0 <= score_thresh <= 1
        ):
            raise ValueError(
                f"score_thresh must be a number in [0, 1] or None, got {score_thresh!r}"
            )
        wanted = self.labels_for(classes)
        settings = TileSettings.from_value(tile)
        self.detector.eval()
        results = []
        for start, chunk in _chunks(items, batch_size):
            tensors = [to_image_tensor(x, f"images[{start + i}]") for i, x in enumerate(chunk)]
            if settings is not None and predicts_masks(self.detector):
                raise ValueError("tile: tiled inference does not merge instance masks yet; "
                                 "predict whole images (tile=None)")  # fmt: skip
            if settings is None:
                preds = self.predict_tensors(tensors, batch_size)
            else:
                run = partial(self.predict_tensors, batch_size=batch_size)
                preds = [predict_tiled(run, t, settings) for t in tensors]
            results += [self._result(p, score_thresh, wanted, max_det) for p in preds]
        if mask_format == "rle":
            for result in results:
                if "masks" in result:
                    result["masks"] = encode_masks(result["masks"])
        return results

    def predict_tensors(self, images: list[Tensor], batch_size: int = 8) -> list[dict]:
        """The detector's raw output for images [3, H, W] in [0, 1]: preprocessed, run in
        batches of ``batch_size``, boxes scaled back to each image's pixels (CPU tensors)."""
        out = []
        for _, chunk in _chunks(images, batch_size):
            inputs = [self.preprocess(image) for image in chunk]
            with torch.inference_mode():
                preds = self.detector(inputs)
            for original, resized, pred in zip(chunk, inputs, preds, strict=True):
                (oh, ow), (ih, iw) = original.shape[-2:], resized.shape[-2:]
                boxes = pred["boxes"] * pred["boxes"].new_tensor(
                    [ow / iw, oh / ih, ow / iw, oh / ih]
                )
                result = {
                    "boxes": boxes.to("cpu", torch.float32).clone(),
                    "scores": pred["scores"].to("cpu", torch.float32).clone(),
                    "labels": pred["labels"].to("cpu", torch.int64).clone(),
                }
                if "masks" in pred:
                    result["masks"] = masks_at_size(pred["masks"], (oh, ow)).cpu()
                out.append(result)
        return out

    def preprocess(self, image: Tensor) -> Tensor:
        """image [3, H, W] in [0, 1] on the device, resized as the detector expects
        (``preprocessing``; the image itself when it asks for no resize)."""
        image = image.to(self.device)
        pre = self.preprocessing
        if pre["min_size"] is None:
            return image
        return resize_image(image, pre["min_size"], pre["max_size"], pre["antialias"])

    def labels_for(self, classes: Sequence[str] | str | None) -> Tensor | None:
        """The labels (1..K, int64) of class names; None for None. ValueError naming the
        known classes for an unknown one."""
        if classes is None:
            return None
        names = [classes] if isinstance(classes, str) else list(classes)
        unknown = [n for n in names if n not in self.class_names]
        if unknown:
            raise ValueError(
                f"classes: unknown class {unknown[0]!r}; known: {', '.join(self.class_names)}"
            )
        return torch.tensor([self.class_names.index(n) + 1 for n in names], dtype=torch.int64)

    def _result(
        self,
        pred: dict[str, Tensor],
        score_thresh: float | None,
        wanted: Tensor | None,
        max_det: int | None,
    ) -> dict:
        boxes, scores, labels = pred["boxes"], pred["scores"], pred["labels"]
        if labels.numel() and (labels.min() < 1 or labels.max() > self.num_classes):
            raise ValueError(
                f"the detector returned labels outside 1..{self.num_classes}: "
                f"{sorted(set(labels.tolist()))[:5]}"
            )
        keep = torch.ones_like(scores, dtype=torch.bool)
        if score_thresh is not None:
            keep &= scores >= score_thresh
        if wanted is not None:
            keep &= torch.isin(labels, wanted)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        order = torch.sort(scores, descending=True, stable=True).indices[:max_det]
        boxes, scores, labels = boxes[order], scores[order], labels[order]
        result = {
            "boxes": boxes,
            "scores": scores,
            "labels": labels,
            "names": [self.class_names[k - 1] for k in labels.tolist()],
            "category_ids": [self.category_ids[k - 1] for k in labels.tolist()],
        }
        if "masks" in pred:
            result["masks"] = pred["masks"][keep][order]
        return result

    def __repr__(self) -> str:
        return (
            f"Detector({type(self.detector).__name__}, {self.num_classes} classes, "
            f"preprocessing={self.preprocessing}, device={self.device})"
        )


# -- from_checkpoint's two paths ---------------------------------------------------------------
def _from_description(path, contents: CheckpointContents, model, num_classes, classes):
    """(detector, names, ids, preprocessing) built from the stored description."""
    description = contents.description
    stored_count = described_num_classes(description)
    if num_classes is not None and stored_count is not None and num_classes != stored_count:
        raise ValueError(
            f"ckpt {path} stores a detector for {stored_count} classes, num_classes="
            f"{num_classes} disagrees; drop num_classes (the file says it)"
        )
    if model is not None:
        _check_preset_agrees(path, model, description, stored_count or num_classes)
    detector = build_described_detector(description, path)
    _load_strictly(detector, contents.state, path)
    stored = description.get("classes") or []
    count = stored_count or getattr(detector, "num_classes", None)
    if stored:
        names = [c["name"] for c in stored]
        ids = [c["id"] for c in stored]
        if classes is not None and list(classes) != names:
            raise ValueError(
                f"ckpt {path} names its classes {names}; classes={list(classes)} disagrees "
                "(drop classes=)"
            )
    else:
        names, ids = _default_classes(path, classes, count)
    return detector, names, ids, dict(description["preprocessing"])


def _check_preset_agrees(path, model: str, description: Mapping, num_classes) -> None:
    """ValueError unless ``model=<preset>`` composes the stored detector config."""
    from omegaconf import OmegaConf

    from visdet.config.presets import compose_train_config, model_presets

    if model not in model_presets():
        raise ValueError(
            f"model: unknown preset {model!r}; available: {', '.join(model_presets())}"
        )
    overrides = [f"model={model}"] + ([f"data.num_classes={num_classes}"] if num_classes else [])
    preset = OmegaConf.to_container(compose_train_config(overrides).model.detector, resolve=True)
    if preset != description["detector"]:
        raise ValueError(
            f"ckpt {path} stores its own detector description, which model={model} does not "
            "match; drop model= (the file says which detector it is)"
        )


def _from_preset(path, contents: CheckpointContents, model, num_classes, classes):
    """(detector, names, ids, preprocessing) for a file without description."""
    from visdet.config.presets import build_detector, compose_train_config, model_presets
    from visdet.models.families import family_of

    if model is None:
        raise ValueError(
            f"ckpt {path} has no stored model description (made by an older visdet or another "
            f"framework): pass model=<preset> and num_classes=N (presets: "
            f"{', '.join(model_presets())})"
        )
    if num_classes is None:
        raise ValueError(
            f"ckpt {path} has no stored model description: model={model} needs num_classes=N"
        )
    _check_positive_int(num_classes, "num_classes")
    detector = build_detector(model, num_classes)
    fmt = _load_strictly(detector, contents.state, path)
    converter = next((c for c in family_of(detector).converters if c.name == fmt), None)
    if converter is not None:
        preprocessing = dict(converter.preprocessing)
    else:
        aug = compose_train_config([f"model={model}"]).aug
        preprocessing = {"min_size": aug.val_size, "max_size": aug.max_size, "antialias": True}
        log.warning(
            "ckpt %s has no stored preprocessing: resizing as the default training config "
            "validates (%s); pass preprocessing= if the run used other sizes",
            path,
            preprocessing,
        )
    names, ids = _default_classes(path, classes, num_classes)
    return detector, names, ids, preprocessing


def _load_strictly(detector: nn.Module, state: dict[str, Tensor], path) -> str:
    """Load ``state`` (any format the detector's family reads); ValueError unless every
    tensor of the detector is loaded. Returns the format name."""
    from visdet.models.weights.pretrained import load_detector_state

    report, fmt = load_detector_state(detector, state, str(path), strict=False, key="ckpt")
    if report.reinitialised:
        raise ValueError(
            f"ckpt {path}: the class layers do not fit this number of classes "
            f"({report.reinitialised[0]}); pass the num_classes the file was trained with"
        )
    if report.missing or report.unexpected:
        raise ValueError(
            f"ckpt {path} ({fmt} format) does not match the detector: missing "
            f"{len(report.missing)} {report.missing[:3]}, unexpected {len(report.unexpected)} "
            f"{report.unexpected[:3]}; is model= the architecture it was trained with?"
        )
    return fmt


def _default_classes(path, classes, count) -> tuple[list[str], list[int]]:
    """``classes`` (names, ids 1..K) or ``class_1`` .. ``class_K``."""
    if count is None:
        raise ValueError(f"ckpt {path} does not say how many classes it has; pass num_classes=N")
    if classes is None:
        return [f"class_{k}" for k in range(1, count + 1)], list(range(1, count + 1))
    names = [classes] if isinstance(classes, str) else list(classes)
    if len(names) != count:
        raise ValueError(f"classes has {len(names)} names, the detector has {count} classes")
    return [str(n) for n in names], list(range(1, count + 1))


def _checked_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device; ValueError for a malformed name or a missing CUDA."""
    try:
        checked = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device: {device!r} is not a device name (cpu, cuda, cuda:1): {e}") from e
    if checked.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device}: CUDA is not available on this machine; use device=cpu")
    return checked


def _check_positive_int(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _chunks(items: list, size: int) -> Iterator[tuple[int, list]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]
