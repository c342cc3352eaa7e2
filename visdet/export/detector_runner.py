"""Run an exported detector file (``visdet export ckpt=...``) like a checkpoint.

``load_exported_detector(path)`` reads the file's sidecar (``<file>.visdet.json``: format,
classes, preprocessing, bounds) and returns a ``visdet.inference.Detector`` whose module is an
``ExportedDetectorModule``: ``visdet eval`` and ``visdet predict`` then take ``ckpt=model.onnx``
or ``ckpt=model.pt2`` as they take a ``.ckpt``. The file sees images already resized by the
sidecar's preprocessing (the same ``resize_image`` as the eager detector) and returns boxes in
the pixels of the image it was given.

Backends: ``.onnx`` with onnxruntime (the optional ``export`` extra), any batch size;
``.pt2`` (AOTInductor) with a fixed batch of one, looped over the images.

A Mask R-CNN's file adds ``masks`` [B, K, M, M] (probabilities in each box's frame); the
module pastes them into the image it gave the file (``paste_masks``, with the sidecar's
``masks`` settings: the eager detector's ``mask_paste`` and ``mask_threshold``), so its
detections carry ``masks`` [N, 1, H, W] as ``MaskRCNN.forward``'s do and ``visdet eval``
evaluates segm of an exported file as of a checkpoint.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from visdet.export.detector_graph import MASK_OUTPUT_NAMES, OUTPUT_NAMES

SIDECAR_SUFFIX = ".visdet.json"
FORMAT_SUFFIXES = {"onnx": ".onnx", "aotinductor": ".pt2"}
SIDECAR_VERSION = 1

Outputs = tuple[Tensor, ...]  # boxes, scores, labels, num_detections[, masks]


def sidecar_path(path: str | os.PathLike) -> Path:
    """``detector.onnx`` -> ``detector.onnx.visdet.json`` (the metadata next to an exported
    file; one per file, so ``detector.onnx`` and ``detector.pt2`` can share a folder)."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def is_exported_detector(path: str | os.PathLike) -> bool:
    """True for a file visdet eval/predict should run as an exported detector: an ``.onnx``
    or ``.pt2`` file, or any file with a sidecar."""
    path = Path(path)
    return path.suffix.lower() in FORMAT_SUFFIXES.values() or sidecar_path(path).is_file()


def read_sidecar(path: str | os.PathLike) -> dict:
    """The sidecar of the exported file ``path``; ValueError naming the file when it is
    missing or not visdet's."""
    side = sidecar_path(path)
    if not side.is_file():
        raise FileNotFoundError(
            f"ckpt {path}: no {side.name} next to it (visdet export writes one with the classes "
            "and preprocessing); export the checkpoint with visdet export ckpt=... format=..."
        )
    try:
        meta = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{side}: not a readable JSON file ({e})") from e
    missing = [
        k for k in ("format", "class_names", "category_ids", "preprocessing", "max_det")
        if not isinstance(meta, dict) or k not in meta
    ]  # fmt: skip
    if missing or meta.get("visdet_export") != SIDECAR_VERSION:
        raise ValueError(
            f"{side}: not a visdet detector export sidecar (missing {missing or 'visdet_export'})"
        )
    if meta["format"] not in FORMAT_SUFFIXES:
        raise ValueError(
            f"{side}: format must be one of {list(FORMAT_SUFFIXES)}, got {meta['format']!r}"
        )
    return meta


def load_backend_runner(path: str | os.PathLike, fmt: str, device: torch.device,
                        masks: bool = False) -> Callable:  # fmt: skip
    """``run(images [B, 3, H, W]) -> (boxes, scores, labels, num_detections)`` CPU tensors
    for an exported detector file, and ``masks`` [B, K, M, M] with ``masks`` (a mask
    detector's file); ValueError when the file's inputs/outputs are not a visdet detector's."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported detector not found: {path}")
    names = MASK_OUTPUT_NAMES if masks else OUTPUT_NAMES
    if fmt == "onnx":
        return _onnx_runner(path, device, names)
    if fmt == "aotinductor":
        return _aoti_runner(path, device, names)
    raise ValueError(f"format must be one of {list(FORMAT_SUFFIXES)}, got {fmt!r}")


def onnx_session(path: Path, device: torch.device):
    """An onnxruntime session for ``path`` (CUDA first when ``device`` is CUDA and onnxruntime
    has it); ValueError when onnxruntime cannot load the file."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError(
            f"running {path.name} needs onnxruntime: pip install 'visdet[export]'"
        ) from e
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types for a bad file
        raise ValueError(f"{path}: onnxruntime cannot load it ({str(e).splitlines()[0]})") from e


def aoti_package(path: Path):
    """The loaded AOTInductor package ``path``; ValueError when it is not one."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            return torch._inductor.aoti_load_package(str(path))
        except Exception as e:  # the loader raises RuntimeError subclasses for a bad package
            raise ValueError(f"{path}: not an AOTInductor package ({e})") from e


def _onnx_runner(path: Path, device: torch.device, names: tuple[str, ...]) -> Callable:
    session = onnx_session(path, device)
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if inputs != ["images"] or outputs != list(names):
        raise ValueError(
            f"{path}: not a visdet detector export: inputs {inputs} and outputs {outputs}, "
            f"expected ['images'] and {list(names)}"
        )

    def run(images: Tensor) -> Outputs:
        feed = {"images": images.detach().to("cpu", torch.float32).contiguous().numpy()}
        return tuple(torch.from_numpy(a) for a in session.run(None, feed))

    return run


def _aoti_runner(path: Path, device: torch.device, names: tuple[str, ...]) -> Callable:
    model = aoti_package(path)

    def run(images: Tensor) -> Outputs:
        parts = []
        for image in images.unbind(0):
            out = model(image[None].to(device, torch.float32).contiguous())
            if not isinstance(out, (list, tuple)) or len(out) != len(names):
                raise ValueError(
                    f"{path}: not a visdet detector export (it returned no {len(names)}-tuple "
                    f"{', '.join(names)})"
                )
            parts.append([t.cpu() for t in out])
        if not parts:
            return _empty_outputs(0, len(names))
        return tuple(torch.cat(ts) for ts in zip(*parts, strict=True))

    return run


def _empty_outputs(k: int, count: int = 4) -> Outputs:
    empty = (
        torch.zeros(0, k, 4),
        torch.zeros(0, k),
        torch.zeros(0, k, dtype=torch.int64),
        torch.zeros(0, dtype=torch.int64),
    )
    return empty if count == 4 else (*empty, torch.zeros(0, k, 0, 0))


def trim(outputs: Outputs) -> list[dict[str, Tensor]]:
    """Batched padded outputs -> one dict per image with the first ``num_detections`` rows
    (``masks`` [n, M, M] too when the outputs have them)."""
    boxes, scores, labels, counts, *masks = outputs
    found = [
        {"boxes": boxes[i, :n], "scores": scores[i, :n], "labels": labels[i, :n].long()}
        for i, n in enumerate(int(c) for c in counts)
    ]
    if masks:
        for det, image_masks in zip(found, masks[0], strict=True):
            det["masks"] = image_masks[: len(det["scores"])]
    return found


def paste_masks(masks: Tensor, boxes: Tensor, image_size: tuple[int, int],
                paste: str = "torchvision", threshold: float | None = None) -> Tensor:  # fmt: skip
    """An exported file's masks [N, M, M] (probabilities in the frames of ``boxes`` [N, 4],
    xyxy in the pixels of the image of ``image_size`` (h, w) the file was given) pasted into
    that image: [N, 1, h, w], probabilities, or bool above ``threshold``. ``paste`` is the
    rule (``MaskRCNN``'s ``mask_paste``: "torchvision" or "grid_sample"); with the eager
    detector's ``mask_paste`` and ``mask_threshold`` it gives ``MaskRCNN.forward``'s masks."""
    from visdet.models.detectors.mask_rcnn import MASK_PASTES

    if paste not in MASK_PASTES:
        raise ValueError(f"paste must be one of {list(MASK_PASTES)}, got {paste!r}")
    return MASK_PASTES[paste](masks, boxes, tuple(image_size), threshold=threshold)[:, None]


class ExportedDetectorModule(nn.Module):
    """An exported detector file behind the detector contract: ``module(list of [3, H, W])``
    returns one dict per image (``boxes`` xyxy in that image's pixels, ``scores``,
    ``labels``). Consecutive images of one size go through the file as one batch.

    ``masks``: None for a boxes-only file; for a mask detector's file the sidecar's ``masks``
    settings (``{"paste": ..., "threshold": ...}``): each image's ``masks`` [N, M, M] are
    pasted into it (``paste_masks``), giving ``masks`` [N, 1, H, W]."""

    def __init__(self, run: Callable, num_classes: int, description: str = "",
                 masks: dict | None = None) -> None:  # fmt: skip
        super().__init__()
        self.run = run
        self.num_classes = num_classes
        self.what = description
        self.mask_settings = None if masks is None else {
            "paste": masks.get("paste", "torchvision"), "threshold": masks.get("threshold")
        }  # fmt: skip
        # read by visdet.models.families.predicts_masks (segm evaluation, tiling's check)
        self.predicts_masks = masks is not None

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        results: list[dict[str, Tensor]] = []
        start = 0
        while start < len(images):
            end = start + 1
            while end < len(images) and images[end].shape == images[start].shape:
                end += 1
            batch = torch.stack([x.to(torch.float32) for x in images[start:end]])
            outputs = self.run(batch)
            names = MASK_OUTPUT_NAMES if self.predicts_masks else OUTPUT_NAMES
            if len(outputs) != len(names):
                raise ValueError(
                    f"{self.what or 'the exported file'}: {len(outputs)} outputs, expected "
                    f"{len(names)} ({', '.join(names)})"
                )
            found = trim(outputs)
            size = tuple(batch.shape[-2:])
            if self.predicts_masks:
                for det in found:
                    det["masks"] = paste_masks(det["masks"], det["boxes"], size,
                                               **self.mask_settings)  # fmt: skip
            results += found
            start = end
        return results

    def extra_repr(self) -> str:
        return self.what


def load_exported_detector(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """A ``visdet.inference.Detector`` running the exported file ``path`` (see the module
    docstring); its ``description`` is the checkpoint's stored model description."""
    from visdet.inference.detector import Detector, _checked_device

    path = Path(path)
    meta = read_sidecar(path)
    suffix = FORMAT_SUFFIXES[meta["format"]]
    if path.suffix.lower() != suffix:
        raise ValueError(
            f"ckpt {path}: its sidecar says format {meta['format']} ({suffix} files), "
            f"not {path.suffix or '(no extension)'}"
        )
    checked = _checked_device(device)
    masks = meta.get("masks")
    if masks is not None and not isinstance(masks, dict):
        raise ValueError(
            f"{sidecar_path(path)}: masks must be null or {{paste, threshold}}, got {masks!r}"
        )
    run = load_backend_runner(path, meta["format"], checked, masks=masks is not None)
    module = ExportedDetectorModule(run, len(meta["class_names"]), f"{meta['format']}: {path}",
                                    masks)  # fmt: skip
    det = Detector(
        module, meta["class_names"], meta["category_ids"], meta["preprocessing"], checked
    )
    det.description = meta.get("description")
    return det
