"""Run an exported detector file (``visdet export ckpt=...``) like a checkpoint.

``load_exported_detector(path)`` reads the file's sidecar (``<file>.visdet.json``: format,
classes, preprocessing, bounds) and returns a ``visdet.inference.Detector`` whose module is an
``ExportedDetectorModule``: ``visdet eval`` and ``visdet predict`` then take ``ckpt=model.onnx``
or ``ckpt=model.pt2`` as they take a ``.ckpt``. The file sees images already resized by the
sidecar's preprocessing (the same ``resize_image`` as the eager detector) and returns boxes in
the pixels of the image it was given.

Backends: ``.onnx`` with onnxruntime (the optional ``export`` extra), any batch size;
``.pt2`` (AOTInductor) with a fixed batch of one, looped over the images.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from visdet.export.detector_graph import OUTPUT_NAMES

SIDECAR_SUFFIX = ".visdet.json"
FORMAT_SUFFIXES = {"onnx": ".onnx", "aotinductor": ".pt2"}
SIDECAR_VERSION = 1

Outputs = tuple[Tensor, Tensor, Tensor, Tensor]


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


def load_backend_runner(path: str | os.PathLike, fmt: str, device: torch.device) -> Callable:
    """``run(images [B, 3, H, W]) -> (boxes, scores, labels, num_detections)`` CPU tensors
    for an exported detector file; ValueError when the file's inputs/outputs are not a visdet
    detector's."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported detector not found: {path}")
    if fmt == "onnx":
        return _onnx_runner(path, device)
    if fmt == "aotinductor":
        return _aoti_runner(path, device)
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


def _onnx_runner(path: Path, device: torch.device) -> Callable:
    session = onnx_session(path, device)
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if inputs != ["images"] or outputs != list(OUTPUT_NAMES):
        raise ValueError(
            f"{path}: not a visdet detector export: inputs {inputs} and outputs {outputs}, "
            f"expected ['images'] and {list(OUTPUT_NAMES)}"
        )

    def run(images: Tensor) -> Outputs:
        feed = {"images": images.detach().to("cpu", torch.float32).contiguous().numpy()}
        return tuple(torch.from_numpy(a) for a in session.run(None, feed))

    return run


def _aoti_runner(path: Path, device: torch.device) -> Callable:
    model = aoti_package(path)

    def run(images: Tensor) -> Outputs:
        parts = []
        for image in images.unbind(0):
            out = model(image[None].to(device, torch.float32).contiguous())
            if not isinstance(out, (list, tuple)) or len(out) != len(OUTPUT_NAMES):
                raise ValueError(f"{path}: not a visdet detector export (it returned no 4-tuple)")
            parts.append([t.cpu() for t in out])
        if not parts:
            return _empty_outputs(0)
        return tuple(torch.cat(ts) for ts in zip(*parts, strict=True))

    return run


def _empty_outputs(k: int) -> Outputs:
    return (
        torch.zeros(0, k, 4),
        torch.zeros(0, k),
        torch.zeros(0, k, dtype=torch.int64),
        torch.zeros(0, dtype=torch.int64),
    )


def trim(outputs: Outputs) -> list[dict[str, Tensor]]:
    """Batched padded outputs -> one dict per image with the first ``num_detections`` rows."""
    boxes, scores, labels, counts = outputs
    return [
        {"boxes": boxes[i, :n], "scores": scores[i, :n], "labels": labels[i, :n].long()}
        for i, n in enumerate(int(c) for c in counts)
    ]


class ExportedDetectorModule(nn.Module):
    """An exported detector file behind the detector contract: ``module(list of [3, H, W])``
    returns one dict per image (``boxes`` xyxy in that image's pixels, ``scores``,
    ``labels``). Consecutive images of one size go through the file as one batch."""

    def __init__(self, run: Callable, num_classes: int, description: str = "") -> None:
        super().__init__()
        self.run = run
        self.num_classes = num_classes
        self.what = description

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        results: list[dict[str, Tensor]] = []
        start = 0
        while start < len(images):
            end = start + 1
            while end < len(images) and images[end].shape == images[start].shape:
                end += 1
            batch = torch.stack([x.to(torch.float32) for x in images[start:end]])
            results += trim(self.run(batch))
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
    run = load_backend_runner(path, meta["format"], checked)
    module = ExportedDetectorModule(run, len(meta["class_names"]), f"{meta['format']}: {path}")
    det = Detector(
        module, meta["class_names"], meta["category_ids"], meta["preprocessing"], checked
    )
    det.description = meta.get("description")
    return det
