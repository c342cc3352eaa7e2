"""A detector as one graph from images to fixed-size detections (issue 16's output contract),
and its ``torch.export`` program with a dynamic batch and image size.

``DetectorGraph(detector, max_det)`` maps images float32 [B, 3, H, W] in [0, 1] to
``boxes`` [B, K, 4] (xyxy in the input's pixels), ``scores`` [B, K], ``labels`` [B, K] int64
and ``num_detections`` [B] int64, K = ``max_det``; rows past ``num_detections`` are zero. A
detector that predicts masks (Mask R-CNN, ``visdet.models.families.predicts_masks``) adds a
fifth output ``masks`` [B, K, M, M] float32: each detection's class mask probabilities in its
box's frame (``MaskRCNN.unpasted``), not pasted into the image: the caller pastes them
(``visdet.export.detector_runner.paste_masks``), as pasting's output size is the image's and
its loop over the boxes is data-dependent. ``output_names(detector)`` names the outputs. The
detector's own normalisation (and resize, when it has one) runs inside. Each image goes through
the detector alone, so the data-dependent sizes inside (proposals, NMS survivors) never meet
across images; when exported, the per-image function is mapped over the batch
(``torch._higher_order_ops.map``), so the batch size stays dynamic. NMS inside is
``visdet.ops.nms_graph`` (exact greedy NMS). The ONNX file (``export_onnx``) takes the
one-image graph and adds the batch at the ONNX level (an ONNX Loop over the images,
``visdet.export.onnx_batch``): torch.onnx cannot convert the batch map.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn
from torch.export import Dim, ExportedProgram

from visdet.io.atomic_write import write_bytes_atomic
from visdet.models.families import predicts_masks

# the smallest image side of an exported detector: below it torch.export specialises the
# coarsest feature maps (1 pixel) to constants
MIN_SIDE = 65


OUTPUT_NAMES = ("boxes", "scores", "labels", "num_detections")
MASK_OUTPUT_NAMES = (*OUTPUT_NAMES, "masks")


def output_names(detector: nn.Module) -> tuple[str, ...]:
    """The exported graph's outputs for ``detector``: ``OUTPUT_NAMES``, plus ``masks`` for a
    detector that predicts masks."""
    return MASK_OUTPUT_NAMES if predicts_masks(detector) else OUTPUT_NAMES


class DetectorGraph(nn.Module):
    """See the module docstring."""

    def __init__(self, detector: nn.Module, max_det: int = 100) -> None:
        super().__init__()
        if isinstance(max_det, bool) or not isinstance(max_det, int) or max_det < 1:
            raise ValueError(f"max_det must be an integer >= 1, got {max_det!r}")
        self.masks = predicts_masks(detector)
        if self.masks and not callable(getattr(detector, "unpasted", None)):
            raise ValueError(
                f"{type(detector).__name__} predicts masks but has no unpasted() method giving "
                "them before pasting ([D, M, M]): its masks cannot be exported"
            )
        self.detector = detector.eval()
        self.max_det = max_det
        self.output_names = output_names(detector)

    def one_image(self, image: Tensor) -> tuple[Tensor, ...]:
        """image [3, H, W] -> (boxes [K, 4], scores [K], labels [K], num_detections []), and
        masks [K, M, M] for a mask detector."""
        found = (self.detector.unpasted if self.masks else self.detector)([image])[0]
        k = self.max_det
        n = min(found["boxes"].shape[0], k)
        boxes = found["boxes"].new_zeros(k, 4)
        scores = found["scores"].new_zeros(k)
        labels = found["labels"].new_zeros(k)
        boxes[:n] = found["boxes"][:n]
        scores[:n] = found["scores"][:n]
        labels[:n] = found["labels"][:n]
        out = (boxes, scores, labels, torch.scalar_tensor(n, dtype=torch.int64))
        if not self.masks:
            return out
        found_masks = found["masks"].to(torch.float32)
        masks = found_masks.new_zeros(k, *found_masks.shape[1:])
        masks[:n] = found_masks[:n]
        return (*out, masks)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {list(images.shape)}")
        if torch.compiler.is_exporting():
            return torch._higher_order_ops.map(self.one_image, images)
        outs = [self.one_image(image) for image in images.unbind(0)]
        return tuple(torch.stack(parts) for parts in zip(*outs, strict=True))


class OneImageGraph(nn.Module):
    """``DetectorGraph.one_image`` as a module: image [3, H, W] -> (boxes [K, 4], scores [K],
    labels [K], num_detections [], and masks [K, M, M] for a mask detector). ONNX takes this
    graph: torch.onnx does not convert the batch map of ``DetectorGraph`` yet, so the ONNX
    file loops over the batch itself."""

    def __init__(self, graph: DetectorGraph) -> None:
        super().__init__()
        self.source = graph  # not "graph": an FX GraphModule attribute of that name exists

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        return self.source.one_image(image)


class BatchOfOneGraph(nn.Module):
    """``DetectorGraph`` for a batch of exactly one image: images [1, 3, H, W] -> outputs
    [1, ...]. AOTInductor takes this graph (it does not compile the batch map), so its
    runtime spec declares a fixed batch of 1 and runtimes loop over the images."""

    def __init__(self, graph: DetectorGraph) -> None:
        super().__init__()
        self.source = graph

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        return tuple(t[None] for t in self.source.one_image(images[0]))


class HeadGraph(nn.Module):
    """The detector's raw head outputs (``head_outputs``, fixed-shape for a given image size)
    for images [1, 3, H, W], as a tuple in the order of the detector's ``HEAD_OUTPUTS``
    (``names``): what the export's parity check compares before any post-processing
    (layer a)."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        if not hasattr(detector, "head_outputs") or not hasattr(detector, "HEAD_OUTPUTS"):
            raise ValueError(
                f"{type(detector).__name__} has no head_outputs() / HEAD_OUTPUTS: its raw head "
                "outputs cannot be checked"
            )
        self.detector = detector.eval()
        self.names = tuple(detector.HEAD_OUTPUTS)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        outputs = self.detector.head_outputs(images)
        return tuple(outputs[name] for name in self.names)


def check_bounds(name: str, bounds: tuple[int, int], minimum: int) -> tuple[int, int]:
    """``(lo, hi)`` with ``minimum <= lo <= hi``, or a ValueError naming ``name``."""
    lo, hi = (int(v) for v in bounds)
    if not minimum <= lo <= hi:
        raise ValueError(
            f"{name} must be [min, max] with {minimum} <= min <= max, got [{lo}, {hi}]"
        )
    return lo, hi


def export_program(
    graph: DetectorGraph,
    example: Tensor,
    batch: tuple[int, int] = (1, 8),
    size: tuple[int, int] = (MIN_SIDE, 1344),
) -> ExportedProgram:
    """``torch.export`` of ``graph`` with batch size in ``batch`` and H, W (any size) in
    ``size``."""
    b_lo, b_hi = check_bounds("batch", batch, 1)
    h, w = _size_dims(size)
    b = Dim("batch", min=b_lo, max=b_hi)
    with torch.no_grad():
        return torch.export.export(graph, (example,), dynamic_shapes=({0: b, 2: h, 3: w},))


def _size_dims(size: tuple[int, int]) -> tuple:
    s_lo, s_hi = check_bounds("size", size, MIN_SIDE)
    return Dim("h", min=s_lo, max=s_hi), Dim("w", min=s_lo, max=s_hi)


def export_onnx(
    graph: DetectorGraph,
    example: Tensor,
    path: str,
    size: tuple[int, int] = (MIN_SIDE, 1344),
    batched: bool = True,
) -> None:
    """Write ``graph`` to the ONNX file ``path`` (torch.onnx's dynamo exporter, opset of
    torch), H and W (any size) in ``size``; ``example`` is one image [3, H, W]. With
    ``batched`` the file takes ``images`` [B, 3, H, W] (B dynamic: the one-image graph inside
    an ONNX Loop, ``visdet.export.onnx_batch``) and gives the [B, ...] outputs of
    ``DetectorGraph`` (named ``graph.output_names``); without, it is the one-image graph
    (input ``image`` [3, H, W]). The file is written atomically."""
    from visdet.export.onnx_batch import batch_over_images  # onnx: the optional 'export' extra

    h, w = _size_dims(size)
    names = graph.output_names
    model = _onnx_model(OneImageGraph(graph), example, "image", names, {1: h, 2: w})
    if batched:
        model = batch_over_images(model)
    write_bytes_atomic(path, model.SerializeToString())


def export_heads_onnx(
    heads: HeadGraph, example: Tensor, path: str, size: tuple[int, int] = (MIN_SIDE, 1344)
) -> None:
    """Write ``heads`` (input ``images`` [1, 3, H, W]) to the ONNX file ``path``."""
    h, w = _size_dims(size)
    model = _onnx_model(heads, example, "images", heads.names, {2: h, 3: w})
    write_bytes_atomic(path, model.SerializeToString())


def _onnx_model(module: nn.Module, example: Tensor, input_name: str, output_names, dims: dict):
    # the exporter's optimisation passes log every merged constant at INFO
    for name in ("onnx_ir", "onnxscript"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with torch.no_grad():
        program = torch.onnx.export(
            module.eval(),
            (example,),
            dynamo=True,
            input_names=[input_name],
            output_names=list(output_names),
            dynamic_shapes=(dims,),
            verbose=False,
        )
    return program.model_proto


def export_aoti(
    module: nn.Module, example: Tensor, path: str, size: tuple[int, int] = (MIN_SIDE, 1344)
) -> None:
    """Compile ``module`` (a ``BatchOfOneGraph`` or a ``HeadGraph``: images [1, 3, H, W],
    H and W in ``size``) with AOTInductor into the package ``path`` (.pt2).

    For a detector with convolutions in its RoI heads (``roi_convolutions``: Mask R-CNN's
    mask head) Inductor's layout optimisation (channels-last convolutions) is off: with it, a
    convolution whose batch is data-dependent (the detections) gives wrong values once its
    output is read through a view or a gather (flatten, the class-mask selection) in the
    compiled package (torch 2.13, CPU; the AOTInductor test of
    ``tests/export/test_mask_detector_graph.py`` fails with it on). Other detectors compile
    as before."""
    h, w = _size_dims(size)
    detector = getattr(getattr(module, "source", module), "detector", None)  # both graphs'
    layout = {"layout_optimization": False} if roi_convolutions(detector) else {}
    with torch.no_grad(), torch._inductor.config.patch(layout):
        program = torch.export.export(module.eval(), (example,), dynamic_shapes=({2: h, 3: w},))
        torch._inductor.aoti_compile_and_package(program, package_path=str(path))


def roi_convolutions(detector: nn.Module | None) -> bool:
    """Whether ``detector``'s RoI heads (``roi_heads``) hold a convolution: one that runs on
    a data-dependent number of RoIs."""
    heads = getattr(detector, "roi_heads", None)
    return heads is not None and any(
        isinstance(m, nn.modules.conv._ConvNd) for m in heads.modules()
    )
