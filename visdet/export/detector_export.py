"""``visdet export ckpt=PATH format=onnx|aotinductor``: a trained detector as one exported
graph from images to detections, checked in three layers before it is moved into place.

Files (in ``output_dir``, ``name`` = ``detector`` by default):

- ``detector.onnx``: input ``images`` [B, 3, H, W] (B dynamic), outputs ``boxes`` [B, K, 4],
  ``scores`` [B, K], ``labels`` [B, K] int64, ``num_detections`` [B] int64 (K = max_det);
  a Mask R-CNN adds ``masks`` [B, K, M, M] float32 (probabilities in each box's frame, pasted
  into the image by the caller: ``visdet.export.detector_runner.paste_masks``).
- ``detector.pt2``: the AOTInductor package, the same outputs for a batch of one.
- ``detector.aotinductor.json``: its runtime spec (WhiskerToolbox format, fixed batch 1).
- ``detector.onnx.visdet.json``, ``detector.pt2.visdet.json`` (one per file): classes, category ids,
  preprocessing, bounds, the checkpoint's model description; ``visdet eval ckpt=detector.onnx``
  reads it.
- ``detector.int8.onnx`` with ``quantize=dynamic`` (onnxruntime's dynamic int8 weights).
- ``export_report.json``: the parity layers per format, timings, latencies (a mask model's
  layer (b) adds the masks' max difference, layer (c) the mask AP).

The exported graph gets images already resized by the checkpoint's preprocessing (short side
``min_size``, long side at most ``max_size``: ``visdet.ops.resize.resize_image``, which the
runner applies; see docs/deployment.md for why the resize is not inside); normalisation,
padding, both stages, NMS and clipping are inside. Everything is written to a staging folder
first; only when every layer of every format passes are the files moved into place, so a failed
export leaves the user's existing files as they were.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import Tensor

from visdet.bench.measure import time_ms
from visdet.export.detector_graph import (
    MASK_OUTPUT_NAMES,
    MIN_SIDE,
    OUTPUT_NAMES,
    BatchOfOneGraph,
    DetectorGraph,
    HeadGraph,
    check_bounds,
    export_aoti,
    export_heads_onnx,
    export_onnx,
)
from visdet.export.detector_parity import Layer, compare_detections, compare_heads
from visdet.export.detector_runner import (
    FORMAT_SUFFIXES,
    SIDECAR_VERSION,
    ExportedDetectorModule,
    aoti_package,
    load_backend_runner,
    onnx_session,
    sidecar_path,
    trim,
)
from visdet.export.exporter import ExportVerificationError
from visdet.export.spec import BatchMode, ModelSpec, TensorSlot, write_spec
from visdet.io.atomic_write import write_bytes_atomic, write_text_atomic
from visdet.ops.resize import resize_to

log = logging.getLogger(__name__)

QUANTIZE = (None, "dynamic")


@dataclass
class FormatResult:
    """One format's export: its files (staged, then final), timings and parity layers."""

    format: str
    files: list[Path]
    export_s: float = 0.0
    layers: list[Layer] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)
    ap: dict[str, float] | None = None  # layer (c): "ap" (box), "segm_ap" (a mask model's)
    eval_ms_per_image: float | None = None  # layer (c)'s pass over the validation split

    @property
    def passed(self) -> bool:
        return all(layer.passed for layer in self.layers)


@dataclass(frozen=True)
class ExportSettings:
    """What ``export_detector`` is asked to do (conf/export.yaml, ``detector:``)."""

    formats: tuple[str, ...] = ("onnx", "aotinductor")
    name: str = "detector"
    max_det: int = 100
    size: tuple[int, int] = (MIN_SIDE, 1344)
    verify_batch_sizes: tuple[int, ...] = (1, 2, 4)
    verify_sizes: tuple[tuple[int, int], ...] | None = None
    rtol: float = 1e-3
    atol: float = 1e-5
    iou_min: float = 0.99
    score_atol: float = 1e-3
    mask_atol: float = 1e-3
    ap_tolerance: float = 0.1
    split: str = "val"
    eval_images: int | None = None
    quantize: str | None = None

    def __post_init__(self) -> None:
        formats = (self.formats,) if isinstance(self.formats, str) else tuple(self.formats)
        bad = [f for f in formats if f not in FORMAT_SUFFIXES]
        if not formats or bad:
            hint = (
                " (TorchScript cannot hold a detector's data-dependent post-processing, and "
                "torch deprecates torch.jit for torch.export; aotinductor is the libtorch format)"
                if "torchscript" in bad else ""
            )  # fmt: skip
            raise ValueError(
                f"format must be one or more of {list(FORMAT_SUFFIXES)}, got "
                f"{bad[0] if bad else list(formats)!r}{hint}"
            )
        object.__setattr__(self, "formats", tuple(dict.fromkeys(formats)))
        if isinstance(self.max_det, bool) or not isinstance(self.max_det, int) or self.max_det < 1:
            raise ValueError(f"max_det must be an integer >= 1, got {self.max_det!r}")
        object.__setattr__(self, "size", check_bounds("size", self.size, MIN_SIDE))
        batches = tuple(int(b) for b in self.verify_batch_sizes)
        if not batches or min(batches) < 1:
            raise ValueError(f"verify_batch_sizes must be integers >= 1, got {list(batches)}")
        object.__setattr__(self, "verify_batch_sizes", batches)
        if self.verify_sizes is not None:
            sizes = tuple((int(h), int(w)) for h, w in self.verify_sizes)
            lo, hi = self.size
            outside = [s for s in sizes if not (lo <= min(s) and max(s) <= hi)]
            if not sizes or outside:
                raise ValueError(
                    f"verify_sizes must be [h, w] pairs within size {list(self.size)}, got "
                    f"{[list(s) for s in (outside or sizes)]}"
                )
            object.__setattr__(self, "verify_sizes", sizes)
        if self.quantize not in QUANTIZE:
            raise ValueError(f"quantize must be null or 'dynamic', got {self.quantize!r}")
        if self.quantize and "onnx" not in self.formats:
            raise ValueError("quantize=dynamic quantizes the ONNX file: add onnx to format")
        if self.eval_images is not None and int(self.eval_images) < 1:
            raise ValueError(f"eval_images must be null or >= 1, got {self.eval_images!r}")


def export_detector(ckpt: str | os.PathLike, output_dir: str | os.PathLike,
                    settings: ExportSettings, seed: int = 0) -> dict:  # fmt: skip
    """Export ``ckpt`` in each of ``settings.formats``, check the three parity layers and,
    when all pass, move the files into ``output_dir``. Returns the report (also written to
    ``export_report.json``); raises ``ExportVerificationError`` naming the failed layer
    (nothing of this export is left in ``output_dir`` then)."""
    from visdet.inference import Detector
    from visdet.runs.evaluate import eval_dataset

    output_dir = Path(output_dir)
    _check_writable(output_dir)
    eager = Detector.from_checkpoint(ckpt)
    if eager.description is None:
        raise ValueError(
            f"ckpt {ckpt} has no stored model description: export a visdet .ckpt or "
            "model.safetensors of a training run"
        )
    cfg = OmegaConf.create({"ckpt": str(ckpt), "data": None, "split": settings.split})
    dataset = eval_dataset(cfg, eager)
    graph = DetectorGraph(eager.detector, settings.max_det).eval()
    heads = HeadGraph(eager.detector)
    torch.manual_seed(seed)
    cases = parity_cases(eager, dataset, settings)
    with torch.no_grad():  # the eager side of layer (b), the same for every format
        raw = [graph(batch) for _, batch in cases]
    references = [trim(outputs) for outputs in raw]
    masks = mask_meta(eager.detector, raw[0]) if graph.masks else None
    eager_latency = latencies(graph, cases)
    # the largest case traces the graph: a coarsest feature map of 1 pixel (P7 of a 128 px
    # image) would be specialised to a constant by torch.export
    example = max(cases, key=lambda c: min(c[1].shape[-2:]))[1][:1]
    staging = Path(tempfile.mkdtemp(prefix=f".{settings.name}-export-", dir=output_dir))
    results: list[FormatResult] = []
    try:
        eager_ap, eager_ms = dataset_ap(eager, dataset, settings)
        for fmt in settings.formats:
            results.append(
                export_format(
                    fmt,
                    graph,
                    heads,
                    example,
                    cases,
                    references,
                    staging,
                    eager,
                    dataset,
                    settings,
                    ckpt,
                    masks,
                )  # fmt: skip
            )
            _ap_layer(results[-1], eager_ap, settings.ap_tolerance)
        if settings.quantize:
            results.append(quantize_onnx(staging, eager, dataset, settings, eager_ap, ckpt,
                                         cases, masks))  # fmt: skip
        report = build_report(ckpt, settings, eager_ap, eager_ms, eager_latency, results)
        print(format_report(report), flush=True)
        failed = [(r, layer) for r in results for layer in r.layers
                  if not layer.passed and r.format != "onnx-int8"]  # fmt: skip
        if failed:
            r, layer = failed[0]
            raise ExportVerificationError(
                f"{r.format} export failed its parity check, {layer.failure}; nothing was "
                f"written to {output_dir}"
            )
        for r in results:
            for path in r.files:
                os.replace(path, output_dir / path.name)
        write_text_atomic(output_dir / "export_report.json", json.dumps(report, indent=2) + "\n")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _check_writable(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ValueError(f"export.output_dir {output_dir} cannot be written: {e}") from e


# -- the inputs of the parity check -----------------------------------------------------------
def parity_cases(eager, dataset, settings: ExportSettings) -> list[tuple[str, Tensor]]:
    """(name, images [B, 3, H, W]) for every verify batch size at two sizes: the size the
    first validation image has after preprocessing and a second one (or ``verify_sizes``).
    Images are validation images resized to the case's size; the last image of the largest
    batch is flat grey (no detections, usually)."""
    count = max(settings.verify_batch_sizes)
    pictures = []
    for i in range(min(count, len(dataset))):
        item = dataset[i]
        if isinstance(item, tuple):  # not a SkippedImage
            pictures.append(eager.preprocess(item[0]))
    if not pictures:
        raise ValueError(f"the {settings.split} split has no readable image for the parity check")
    while len(pictures) < count:
        pictures.append(pictures[len(pictures) % max(1, len(pictures))].flip(-1))
    sizes = settings.verify_sizes or _default_sizes(tuple(pictures[0].shape[-2:]), settings.size)
    cases = []
    for h, w in sizes:
        resized = [resize_to(p, (h, w)) for p in pictures]
        resized[-1] = torch.full_like(resized[-1], 0.5)
        for b in settings.verify_batch_sizes:
            cases.append((f"batch {b} at {h}x{w}", torch.stack(resized[:b])))
    return cases


def _default_sizes(first: tuple[int, int], bounds: tuple[int, int]) -> list[tuple[int, int]]:
    lo, hi = bounds
    second = tuple(min(hi, max(lo, s + d)) for s, d in zip(first, (32, 64), strict=True))
    if second == first:
        second = tuple(min(hi, max(lo, s - d)) for s, d in zip(first, (32, 64), strict=True))
    return [tuple(min(hi, max(lo, s)) for s in first), second]


# -- one format ------------------------------------------------------------------------------
def export_format(fmt, graph, heads, example, cases, references, staging, eager, dataset,
                  settings, ckpt, masks=None):  # fmt: skip
    """Export the detector and its head graph in ``fmt`` into ``staging`` and run layers (a)
    and (b) and the AP of (c) on them; ``masks``: a mask model's ``mask_meta``."""
    name = settings.name
    path = staging / f"{name}{FORMAT_SUFFIXES[fmt]}"
    heads_path = staging / f".{name}.heads{FORMAT_SUFFIXES[fmt]}"  # checked, never shipped
    start = time.perf_counter()
    log.info("exporting %s (%s)", path.name, fmt)
    if fmt == "onnx":
        # the one-image graph is kept in staging: quantize=dynamic quantizes it, not the batch
        # Loop (onnxruntime does not quantize weights a subgraph reads from outside)
        one_image = staging / f".{name}.one_image.onnx"
        export_onnx(graph, example[0], str(one_image), settings.size, batched=False)
        _write_batched(one_image, path)
        export_heads_onnx(heads, example, str(heads_path), settings.size)
    else:
        export_aoti(BatchOfOneGraph(graph), example, str(path), settings.size)
        export_aoti(heads, example, str(heads_path), settings.size)
    result = FormatResult(fmt, [path], time.perf_counter() - start)
    run = load_backend_runner(path, fmt, torch.device("cpu"), masks=masks is not None)
    run_heads = _heads_runner(heads_path, fmt)
    # every size: a validation image and the flat one
    images = [im for _, batch in cases if len(batch) == len(cases[-1][1]) for im in batch[-2:]]
    result.layers.append(compare_heads(run_heads, heads, images, heads.names, settings.rtol,
                                       settings.atol))  # fmt: skip
    detection_cases = [
        (case_name, batch, reference, run(batch))
        for (case_name, batch), reference in zip(cases, references, strict=True)
    ]
    result.layers.append(compare_detections(detection_cases, settings.iou_min,
                                            settings.score_atol, settings.mask_atol))  # fmt: skip
    result.latency_ms = latencies(run, cases)
    exported = _detector_on(run, eager, masks)
    result.ap, result.eval_ms_per_image = dataset_ap(exported, dataset, settings)
    if fmt == "aotinductor":
        spec = staging / f"{name}.aotinductor.json"
        write_spec(runtime_spec(eager, settings, path.name, masks), spec)
        result.files.append(spec)
    result.files.append(write_sidecar(path, fmt, eager, settings, ckpt, masks))
    return result


def mask_meta(detector, outputs) -> dict:
    """A mask model's sidecar entry ``masks``: the mask size M of its graph's ``outputs``
    (the fifth, [B, K, M, M]) and how the caller pastes them (the detector's ``mask_paste``
    and ``mask_threshold``, as ``paste_masks`` takes them)."""
    return {
        "size": int(outputs[4].shape[-1]),
        "paste": getattr(detector, "mask_paste", "torchvision"),
        "threshold": detector.mask_threshold,
    }


def _write_batched(one_image: Path, path: Path) -> None:
    """The one-image ONNX file ``one_image`` wrapped in the batch Loop, written to ``path``."""
    import onnx

    from visdet.export.onnx_batch import batch_over_images

    model = batch_over_images(onnx.load(str(one_image)))
    write_bytes_atomic(path, model.SerializeToString())


def _heads_runner(path: Path, fmt: str):
    if fmt == "onnx":
        session = onnx_session(path, torch.device("cpu"))
        return lambda x: [torch.from_numpy(a) for a in session.run(None, {"images": x.numpy()})]
    model = aoti_package(path)
    return lambda x: list(model(x.contiguous()))


def _detector_on(run, eager, masks=None):
    """A Detector running ``run`` with ``eager``'s classes and preprocessing (pasting its
    masks with ``masks``' settings)."""
    from visdet.inference import Detector

    module = ExportedDetectorModule(run, eager.num_classes, masks=masks)
    det = Detector(module, eager.class_names, eager.category_ids, eager.preprocessing)
    det.description = eager.description
    return det


def latencies(fn, cases) -> dict[str, float]:
    """Milliseconds per call of ``fn`` for each case (median of 3 after one warm-up call)."""
    out = {}
    for case_name, batch in cases:
        with torch.no_grad():
            stats = time_ms(lambda batch=batch: fn(batch), repeats=3, warmup=1)
        out[case_name] = round(stats["median"], 1)
    return out


# -- layer (c) ---------------------------------------------------------------------------------
def dataset_ap(detector, dataset, settings: ExportSettings) -> tuple[dict[str, float], float]:
    """({"ap": COCO box AP in points, and "segm_ap": mask AP for a detector that predicts
    masks}, ms per image) of ``detector`` on ``dataset`` (its first ``eval_images`` images
    when set)."""
    from torch.utils.data import Subset

    from visdet.metrics.coco_eval import evaluate_coco
    from visdet.models.families import predicts_masks
    from visdet.runs.evaluate import predict_dataset

    subset = dataset
    if settings.eval_images is not None and settings.eval_images < len(dataset):
        subset = Subset(dataset, range(settings.eval_images))
        subset.coco = dataset.coco  # predict_dataset reads nothing else of it
        subset.cat_ids = dataset.cat_ids
    start = time.perf_counter()
    # one image per call: an exported file runs mixed-size images unpadded, and a padded
    # eager batch shifts the numbers (raccoon, 40 images: AP 1.44 at batch 4, 1.95 alone)
    cfg = OmegaConf.create({"batch_size": 1, "num_workers": 0})
    results = predict_dataset(detector, subset, cfg)
    ms = (time.perf_counter() - start) * 1000 / max(1, len(subset))
    ids = list(dataset.image_ids[: len(subset)]) if subset is not dataset else None
    types = {"ap": "bbox"}
    if predicts_masks(detector.detector):
        types["segm_ap"] = "segm"
    aps = {}
    for key, iou_type in types.items():
        ap = evaluate_coco(dataset.coco, results, iou_type, image_ids=ids).stats["AP"]
        aps[key] = round(100 * max(ap, 0.0), 3)
    return aps, round(ms, 2)


def _ap_diff(ap: float | None, eager_ap: float) -> float | None:
    return None if ap is None else round(abs(ap - eager_ap), 3)


def _ap_layer(result: FormatResult, eager_ap: dict[str, float], tolerance: float | None) -> None:
    """Layer (c) (box AP, and mask AP for a mask model); ``tolerance`` None: reported only
    (quantized files)."""
    got = result.ap or {}
    measured, failures = {}, []
    for key, what in (("ap", "COCO AP"), ("segm_ap", "COCO mask AP")):
        if key not in eager_ap:
            continue
        diff = _ap_diff(got.get(key), eager_ap[key])
        measured |= {key: got.get(key), f"eager_{key}": eager_ap[key], f"{key}_diff": diff}
        if diff is None:
            failures.append(f"{what}: not measured")
        elif tolerance is not None and diff > tolerance:
            failures.append(
                f"{what}: {got[key]:.3f} against eager {eager_ap[key]:.3f}, a difference of "
                f"{diff:.3f} points (at most {tolerance:g} allowed)"
            )
    measured["tolerance"] = tolerance
    failure = "; ".join(f"layer (c) {f}" for f in failures)
    result.layers.append(Layer("c: COCO AP", not failures, measured, [], failure))


# -- int8 --------------------------------------------------------------------------------------
def quantize_onnx(staging: Path, eager, dataset, settings: ExportSettings, eager_ap: dict,
                  ckpt, cases, masks=None):  # fmt: skip
    """``<name>.int8.onnx``: onnxruntime's dynamic quantization (int8 weights of the MatMul
    and Gemm layers, activations quantized per call) of the checked ONNX file; its AP change
    is reported (layer c, informational: quantization is expected to move numbers)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = staging / f".{settings.name}.one_image.onnx"
    quantized = staging / f".{settings.name}.one_image.int8.onnx"
    target = staging / f"{settings.name}.int8.onnx"
    start = time.perf_counter()
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs every tensor it skips on the root logger
    try:
        quantize_dynamic(
            str(source),
            str(quantized),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
        )
    finally:
        root.setLevel(level)
    _write_batched(quantized, target)
    result = FormatResult("onnx-int8", [target], time.perf_counter() - start)
    run = load_backend_runner(target, "onnx", torch.device("cpu"), masks=masks is not None)
    exported = _detector_on(run, eager, masks)
    result.ap, result.eval_ms_per_image = dataset_ap(exported, dataset, settings)
    _ap_layer(result, eager_ap, None)
    result.latency_ms = latencies(run, cases)
    result.files.append(write_sidecar(target, "onnx", eager, settings, ckpt, masks))
    return result


# -- metadata ------------------------------------------------------------------------------------
def write_sidecar(path: Path, fmt: str, eager, settings: ExportSettings, ckpt,
                  masks: dict | None = None) -> Path:  # fmt: skip
    """``<file>.visdet.json``; ``masks``: a mask model's ``mask_meta`` (the file's fifth
    output ``masks`` and how ``visdet.export.detector_runner.paste_masks`` pastes it)."""
    meta = {
        "visdet_export": SIDECAR_VERSION,
        "format": fmt,
        "file": path.name,
        "inputs": {"images": "float32 [B, 3, H, W] RGB in [0, 1], resized by preprocessing"},
        "outputs": list(MASK_OUTPUT_NAMES if masks else OUTPUT_NAMES),
        "batch": "dynamic" if fmt == "onnx" else 1,
        "size": list(settings.size),
        "max_det": settings.max_det,
        "class_names": eager.class_names,
        "category_ids": eager.category_ids,
        "preprocessing": dict(eager.preprocessing),
        "description": eager.description,
        "checkpoint": str(Path(ckpt).resolve()),
    }
    if masks is not None:
        meta["masks"] = dict(masks)
    side = sidecar_path(path)
    write_text_atomic(side, json.dumps(meta, indent=2, default=str) + "\n")
    return side


def runtime_spec(eager, settings: ExportSettings, weights: str,
                 masks: dict | None = None) -> ModelSpec:  # fmt: skip
    """The WhiskerToolbox runtime spec of the AOTInductor detector (batch of one); a mask
    model (``masks``: its ``mask_meta``) adds the output ``masks``."""
    lo, hi = settings.size
    k = settings.max_det
    pre = eager.preprocessing
    family = (eager.description or {}).get("family", "detector")
    resize = (
        f"resized so the short side is {pre['min_size']} and the long side at most "
        f"{pre['max_size']} (bilinear{', antialiased' if pre['antialias'] else ''})"
        if pre["min_size"] else "at its own size"
    )  # fmt: skip
    names = ", ".join(eager.class_names)
    mask_slots = () if masks is None else (
        TensorSlot("masks", (k, masks["size"], masks["size"]),
                   description="float32 mask probabilities in each box's frame, to paste into "
                               "the image; rows past num_detections are 0"),
    )  # fmt: skip
    return ModelSpec(
        model_id=f"visdet_{family}_detector",
        display_name=f"visdet {family} detector ({eager.num_classes} classes)",
        description=f"Detects {names}. Labels 1..{eager.num_classes} in that order.",
        inputs=(
            TensorSlot(
                "images",
                (3, lo, lo),
                description=f"RGB image, float32 in [0, 1], {resize}; height and width {lo}..{hi}",
            ),
        ),  # fmt: skip
        outputs=(
            TensorSlot("boxes", (k, 4), description="xyxy in the input's pixels"),
            TensorSlot("scores", (k,), description="rows past num_detections are 0"),
            TensorSlot("labels", (k,), description=f"int64 class 1..{eager.num_classes}"),
            TensorSlot("num_detections", (1,), description="int64 valid rows"),
            *mask_slots,
        ),
        weights_path=weights,
        backend="aotinductor",
        batch_mode=BatchMode("fixed", 1, 1, 1),
    )


# -- the report --------------------------------------------------------------------------------
def build_report(ckpt, settings: ExportSettings, eager_ap, eager_ms, eager_latency,
                 results) -> dict:  # fmt: skip
    return {
        "checkpoint": str(ckpt),
        "max_det": settings.max_det,
        "size": list(settings.size),
        "eager": {**eager_ap, "eval_ms_per_image": eager_ms, "latency_ms": eager_latency},
        "formats": [
            {
                "format": r.format,
                "files": [p.name for p in r.files],
                "export_s": round(r.export_s, 1),
                "passed": r.passed,
                "layers": [layer.to_json() for layer in r.layers],
                "latency_ms": r.latency_ms,
                "eval_ms_per_image": r.eval_ms_per_image,
            }
            for r in results
        ],
    }


def format_report(report: dict) -> str:
    """The printed parity table: one row per format and layer, then the latencies."""
    lines = [f"{'format':<12} {'layer':<16} {'result':<6} measured"]
    for r in report["formats"]:
        for layer in r["layers"]:
            lines.append(
                f"{r['format']:<12} {layer['layer']:<16} {_verdict(layer):<6} {_measured(layer)}"
            )
    eager = report["eager"]
    speeds = [f"{r['format']} {r['eval_ms_per_image']:.1f}" for r in report["formats"]]
    mask_ap = f", mask AP {eager['segm_ap']:.3f}" if "segm_ap" in eager else ""
    lines.append(
        f"eager COCO AP {eager['ap']:.3f}{mask_ap}; validation pass, ms per image: eager "
        f"{eager['eval_ms_per_image']:.1f}, " + ", ".join(speeds)
    )
    lines.append(f"{'format':<12} {'case':<26} {'exported ms':>11} {'eager ms':>9}")
    for r in report["formats"]:
        for case, ms in r["latency_ms"].items():
            ref = eager["latency_ms"][case]
            lines.append(f"{r['format']:<12} {case:<26} {ms:>11.1f} {ref:>9.1f}")
    return "\n".join(lines)


def _verdict(layer: dict) -> str:
    if layer.get("tolerance", 0) is None:
        return "info"
    return "pass" if layer["passed"] else "FAIL"


def _measured(layer: dict) -> str:
    if layer["layer"].startswith("a"):
        tol = f"rtol {layer['rtol']:g}, atol {layer['atol']:g}"
        return f"max |diff| {layer['max_abs_diff']:.2e} ({tol})"
    if layer["layer"].startswith("b"):
        bad = sum(c.get("unmatched", 0) for c in layer["cases"])
        masks = (f", max mask diff {layer['max_mask_diff']:.1e}" if "max_mask_diff" in layer
                 else "")  # fmt: skip
        return (f"{len(layer['cases'])} cases, {bad} unmatched, min IoU {layer['min_iou']:.5f}, "
                f"max score diff {layer['max_score_diff']:.1e}{masks}")  # fmt: skip
    text = f"AP {layer['ap']:.3f} vs eager {layer['eager_ap']:.3f} (diff {layer['ap_diff']:.3f})"
    if "segm_ap" in layer:
        text += (f", mask AP {layer['segm_ap']:.3f} vs eager {layer['eager_segm_ap']:.3f} "
                 f"(diff {layer['segm_ap_diff']:.3f})")  # fmt: skip
    return text


def parse_settings(cfg: dict, formats: Sequence[str] | str | None) -> ExportSettings:
    """ExportSettings from the ``detector:`` config block and the ``format`` key."""
    values = dict(cfg)
    if formats is not None:
        values["formats"] = formats
    unknown = set(values) - set(ExportSettings.__dataclass_fields__)
    if unknown:
        raise ValueError(
            f"detector: unknown key {sorted(unknown)[0]!r}; expected one of "
            f"{sorted(ExportSettings.__dataclass_fields__)}"
        )
    for key in ("size", "verify_batch_sizes"):
        if key in values and values[key] is not None:
            values[key] = tuple(values[key])
    if values.get("verify_sizes") is not None:
        values["verify_sizes"] = tuple(tuple(s) for s in values["verify_sizes"])
    return ExportSettings(**values)
