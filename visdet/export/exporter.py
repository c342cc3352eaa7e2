"""Export an encoder to TorchScript (.pt) and AOTInductor (.pt2) files plus runtime specs.

Files are written to a staging folder first; each exported file is loaded back and compared
with the eager model at two batch sizes and two resolutions, and only when every check
passes are the files and their spec JSONs moved into ``output_dir`` (so a failed export never
replaces a good one).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from visdet.export.export_model import ExportModel
from visdet.export.loaders import load_backend
from visdet.export.spec import BatchMode, ModelSpec, PostEncoderStep, TensorSlot, write_spec
from visdet.io.text_table import format_columns
from visdet.models.backbones.vit import ViT
from visdet.models.encoders import GeneralEncoder
from visdet.models.post_encoder import PostEncoderPipeline, build_post_encoder
from visdet.models.weights.safetensors_file import save_weights

log = logging.getLogger(__name__)

EXTENSIONS = {"torchscript": ".pt", "aotinductor": ".pt2"}


class ExportVerificationError(RuntimeError):
    """An exported file does not reproduce the eager model."""


@dataclass
class BackendResult:
    backend: str
    weights: Path
    spec: Path
    export_s: float
    verify_s: float
    max_abs_diff: float
    dynamic_hw: bool
    checks: list[tuple[int, int, int, float]] = field(default_factory=list)  # (B, H, W, diff)
    size_mb: float = 0.0


def parse_steps(post_encoder: Sequence) -> list[PostEncoderStep]:
    """Config entries (a key, or {module, interpolation}) -> steps; ``none`` entries drop out."""
    steps = []
    for i, entry in enumerate(post_encoder):
        if isinstance(entry, str):
            entry = {"module": entry}
        if not hasattr(entry, "get") or not entry.get("module"):
            raise ValueError(
                f"post_encoder[{i}]: expected a key or {{module, interpolation}}, got {entry!r}"
            )
        step = PostEncoderStep(str(entry["module"]), str(entry.get("interpolation", "nearest")))
        build_post_encoder(step.module, step.interpolation)  # checks key and interpolation
        if step.module != "none":
            steps.append(step)
    return steps


def _example_inputs(model: ExportModel, batch: int, height: int, width: int, seed: int) -> tuple:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, height, width, generator=g)
    if not model.takes_point:
        return (image,)
    point = torch.rand(batch, 2, generator=g) * torch.tensor([width - 1.0, height - 1.0])
    return image, point


def _export_torchscript(model: ExportModel, example: tuple, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is what libtorch loads
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # input checks become constants
        traced = torch.jit.trace(model.encoder, (example[0],), check_trace=False)
        scripted = torch.jit.script(ExportModel(traced, list(zip(model.keys, model.modes))))
        scripted.save(str(path))


def _export_aoti(
    model: ExportModel, example: tuple, path: Path, max_batch: int, hw: tuple | None
) -> bool:
    """torch.export with a dynamic batch (and, if the model allows, dynamic H/W), then AOTI."""
    from torch.export import Dim

    batch = Dim("batch", min=1, max=max_batch)

    def shapes(dynamic_hw: bool) -> tuple:
        image = {0: batch}
        if dynamic_hw:
            image.update(
                {2: Dim("height", min=hw[0], max=hw[1]), 3: Dim("width", min=hw[0], max=hw[1])}
            )
        return (image, {0: batch}) if model.takes_point else (image,)

    dynamic_hw = hw is not None
    try:
        program = torch.export.export(model, example, dynamic_shapes=shapes(dynamic_hw))
    except Exception as e:  # noqa: BLE001 - constraint violations: fall back to a fixed size
        if not dynamic_hw:
            raise
        log.warning(
            "dynamic height/width not exportable (%s); exporting a fixed size",
            str(e).splitlines()[0],
        )
        dynamic_hw = False
        program = torch.export.export(model, example, dynamic_shapes=shapes(False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    return dynamic_hw


def exportable_hw(encoder: GeneralEncoder, hw: tuple[int, int]) -> tuple[int, int] | None:
    """Raise the lower H/W bound until the feature map is at least 2x2: torch.export
    specialises size-1 dimensions, so a range that reaches a 1x1 map cannot stay dynamic.
    None when the declared input size itself falls below the raised bound."""
    lo, hi = hw
    while lo <= hi and min(encoder.output_shape((3, lo, lo))[1:]) < 2:
        lo += 1
    if lo != hw[0]:
        log.info("dynamic_hw: lower bound raised from %d to %d (feature maps >= 2x2)", hw[0], lo)
    return (lo, hi) if lo <= min(encoder.input_shape[1:]) else None


def verification_cases(
    input_shape: Sequence[int],
    batch_sizes: Sequence[int],
    sizes: Sequence[Sequence[int]] | None,
    hw: tuple[int, int] | None,
    multiple: int = 1,
) -> list[tuple[int, int, int]]:
    """(batch, height, width) to check. Default sizes: the declared one and (H + 32, W + 64),
    or (H - 32, W - 64) where that leaves the ``hw`` range, rounded down to a ``multiple``
    (a ViT's patch size); a fixed-size export (``hw`` None) is checked at its own size only."""
    _, h, w = input_shape
    if hw is None:
        return [(b, h, w) for b in batch_sizes]
    lo, hi = hw
    if sizes:
        sizes = [(int(s[0]), int(s[1])) for s in sizes]
        outside = [s for s in sizes if not (lo <= s[0] <= hi and lo <= s[1] <= hi)]
        if outside:
            raise ValueError(f"verify_sizes {outside} lie outside dynamic_hw [{lo}, {hi}]")
    else:
        up = (h + 32, w + 64)
        other = up if max(up) <= hi else (max(lo, h - 32), max(lo, w - 64))
        other = tuple(max(multiple, s // multiple * multiple) for s in other)
        sizes = [(h, w), other]
    return [(b, sh, sw) for sh, sw in sizes for b in batch_sizes]


def verify(
    loaded,
    model: ExportModel,
    cases: Sequence[tuple[int, int, int]],
    atol: float,
    rtol: float,
    seed: int,
) -> list[tuple[int, int, int, float]]:
    """Compare ``loaded`` with the eager ``model``; raises ExportVerificationError on a mismatch."""
    out = []
    for i, (b, h, w) in enumerate(cases):
        example = _example_inputs(model, b, h, w, seed + i + 1)
        with torch.no_grad():
            expected = model(*example)
            got = loaded(*example)
        if got.shape != expected.shape:
            raise ExportVerificationError(
                f"batch {b}, {h}x{w}: exported output {list(got.shape)}, "
                f"eager {list(expected.shape)}"
            )
        diff = (got - expected).abs().max().item() if got.numel() else 0.0
        if not torch.allclose(got, expected, atol=atol, rtol=rtol):
            raise ExportVerificationError(
                f"batch {b}, {h}x{w}: max |exported - eager| = {diff:.3g} > atol {atol}"
            )
        out.append((b, h, w, diff))
    return out


def build_spec(
    encoder: GeneralEncoder, steps: list[PostEncoderStep], baked: bool, weights: str, backend: str,
    model_id: str, display_name: str, description: str, max_batch: int, recommended: str | None,
    hw: tuple[int, int] | None = None,
) -> ModelSpec:  # fmt: skip
    feature_shape = encoder.output_shape()
    pipeline = PostEncoderPipeline([build_post_encoder(s.module, s.interpolation) for s in steps])
    out_shape = pipeline.output_shape(feature_shape)  # raises naming the step if impossible
    _, h, w = encoder.input_shape
    sizes = f"height and width {hw[0]}..{hw[1]}" if hw else f"fixed size {h}x{w}"
    inputs = [
        TensorSlot(
            "image", encoder.input_shape, description=f"RGB image, float32 in [0, 1]; {sizes}"
        )
    ]
    if baked and any(s.module == "spatial_point" for s in steps):
        inputs.append(TensorSlot("point", (2,), description="(x, y) in image pixels"))
    baked_names = "+".join(s.module for s in steps) if baked and steps else ""
    outputs = [
        TensorSlot(
            "features",
            out_shape if baked else feature_shape,
            description=f"{encoder.stage} features"
            + (f" after {baked_names}" if baked_names else ""),
        )
    ]
    return ModelSpec(
        model_id=model_id,
        display_name=display_name,
        description=description,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        weights_path=weights,
        backend=backend,
        batch_mode=BatchMode("dynamic", None, 1, max_batch),
        recommended_post_encoder=None if baked else recommended,
        post_encoder=() if baked else tuple(steps),
    )


def export_encoder(
    encoder: GeneralEncoder,
    output_dir: str | os.PathLike,
    name: str = "encoder",
    model_id: str | None = None,
    display_name: str | None = None,
    description: str = "",
    backends: Sequence[str] = ("torchscript", "aotinductor"),
    post_encoder: Sequence = (),
    bake_post_encoder: bool = False,
    recommended_post_encoder: str | None = "global_avg_pool",
    max_batch: int = 32,
    dynamic_hw: Sequence[int] | None = (32, 1024),
    verify_batch_sizes: Sequence[int] = (1, 3),
    verify_sizes: Sequence[Sequence[int]] | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    seed: int = 0,
    safetensors: bool = False,
) -> list[BackendResult]:
    """Export, verify, then move ``<name>.pt``/``<name>.pt2`` and their spec JSONs into place.

    ``safetensors``: also write the encoder's weights as ``<name>.safetensors`` (its
    state dict; the stage and input shape in the metadata), atomically, after the exports.

    ``post_encoder``: keys or {module, interpolation}; baked into the exported graph when
    ``bake_post_encoder``, otherwise written to the spec's ``post_encoder`` list.
    ``dynamic_hw``: (min, max) height/width the AOTInductor file accepts; None = fixed size.
    """
    unknown = [b for b in backends if b not in EXTENSIONS]
    if unknown or not backends:
        raise ValueError(
            f"backends must be a non-empty subset of {list(EXTENSIONS)}, got {list(backends)}"
        )
    if max_batch < max(2, *verify_batch_sizes):
        raise ValueError(f"max_batch must be >= 2 and >= every verify batch size, got {max_batch}")
    if len(set(verify_batch_sizes)) < 2 or min(verify_batch_sizes) < 1:
        raise ValueError(
            f"verify_batch_sizes needs two distinct sizes >= 1, got {list(verify_batch_sizes)}"
        )
    _, h, w = encoder.input_shape
    if dynamic_hw is not None:
        dynamic_hw = (int(dynamic_hw[0]), int(dynamic_hw[1]))
        if not 1 <= dynamic_hw[0] <= min(h, w) <= max(h, w) <= dynamic_hw[1]:
            raise ValueError(f"dynamic_hw {list(dynamic_hw)} must contain the input size {h}x{w}")
    steps = parse_steps(post_encoder)
    encoder = encoder.eval()
    model = ExportModel(
        encoder, [(s.module, s.interpolation) for s in steps] if bake_post_encoder else []
    )
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-export-", dir=output_dir))
    results: list[BackendResult] = []
    # a ViT takes sides that are multiples of its patch only
    patch = encoder.backbone.patch_size if isinstance(encoder.backbone, ViT) else 1
    try:
        example = _example_inputs(model, 2, h, w, seed)
        for backend in backends:
            weights = staging / f"{name}{EXTENSIONS[backend]}"
            start = time.perf_counter()
            if backend == "torchscript":
                _export_torchscript(model, example, weights)
                # a traced convnet runs at any size (checked in this range); a Swin's trace
                # holds its window padding and shifts for the traced size only
                hw = dynamic_hw if encoder.backbone.traces_any_size else None
            else:
                hw = exportable_hw(encoder, dynamic_hw) if dynamic_hw else None
                hw = hw if _export_aoti(model, example, weights, max_batch, hw) else None
            export_s = time.perf_counter() - start
            start = time.perf_counter()
            cases = verification_cases(encoder.input_shape, verify_batch_sizes, verify_sizes, hw,
                                       patch)  # fmt: skip
            checks = verify(load_backend(weights, backend), model, cases, atol, rtol, seed)
            verify_s = time.perf_counter() - start
            spec = build_spec(
                encoder, steps, bake_post_encoder, weights.name, backend,
                model_id or f"{encoder.backbone.name}_encoder",
                display_name or f"{encoder.backbone.display_name} encoder",
                description, max_batch, recommended_post_encoder, hw,
            )  # fmt: skip
            spec_path = staging / f"{name}.{backend}.json"
            write_spec(spec, spec_path)
            results.append(
                BackendResult(
                    backend,
                    weights,
                    spec_path,
                    export_s,
                    verify_s,
                    max(c[3] for c in checks),
                    hw is not None,
                    checks,
                    weights.stat().st_size / 2**20,
                )  # fmt: skip
            )
        for r in results:  # every backend passed: move the files into place
            for attr in ("weights", "spec"):
                final = output_dir / getattr(r, attr).name
                os.replace(getattr(r, attr), final)
                setattr(r, attr, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if safetensors:
        meta = {"stage": encoder.stage, "input_shape": list(encoder.input_shape)}
        save_weights(encoder.state_dict(), output_dir / f"{name}.safetensors", meta)
    return results


def format_results(results: Sequence[BackendResult]) -> str:
    """A table: backend, file, size, export and verification seconds, max difference."""
    rows = [
        ("backend", "file", "MB", "export s", "verify s", "max |diff|", "dynamic H/W", "checked")
    ]
    for r in results:
        checked = ", ".join(f"{b}x{h}x{w}" for b, h, w, _ in r.checks)
        rows.append(
            (r.backend, r.weights.name, f"{r.size_mb:.1f}", f"{r.export_s:.1f}",
             f"{r.verify_s:.1f}", f"{r.max_abs_diff:.2e}", "yes" if r.dynamic_hw else "no",
             checked)
        )  # fmt: skip
    return "\n".join(format_columns(rows))
