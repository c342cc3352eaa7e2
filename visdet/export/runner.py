"""Run an exported model from its runtime spec, with either backend.

``load_spec(path)`` reads and validates the spec, finds the weights next to it and returns a
``SpecRunner``: ``runner(image, point=None)`` checks the batch size against the spec's
batch mode, runs the exported file and returns ``{output name: tensor}``. Unlike the C++
reader, it then applies the spec's ``post_encoder`` list to the first output (a
``spatial_point`` step uses ``point`` and takes the image size as its source size).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from visdet.export.loaders import load_backend
from visdet.export.spec import ModelSpec, SpecError, read_spec, resolve_weights
from visdet.models.post_encoder import SpatialPoint, build_post_encoder


class SpecRunner:
    def __init__(
        self, spec: ModelSpec, spec_path: Path, device: str | torch.device = "cpu"
    ) -> None:
        self.spec = spec
        self.spec_path = spec_path
        self.device = torch.device(device)
        self._loaded: dict[Path, object] = {}
        self.input_names = [slot.name for slot in spec.inputs]
        if spec.weights_path is not None:  # fail early on a missing file
            self._model_for(None)

    def _model_for(self, batch_size: int | None):
        path, backend = resolve_weights(self.spec, self.spec_path, batch_size)
        if path not in self._loaded:
            self._loaded[path] = load_backend(path, backend, self.device)
        return self._loaded[path]

    def _inputs(self, image: Tensor, point: Tensor | None) -> list[Tensor]:
        channels = self.spec.inputs[0].shape[0]
        if image.dim() != 4 or image.shape[1] != channels:
            raise ValueError(
                f"{self.spec_path}: input '{self.input_names[0]}' must be [B, {channels}, H, W], "
                f"got {list(image.shape)}"
            )
        batch = image.shape[0]
        if not self.spec.batch_mode.accepts(batch):
            raise ValueError(
                f"{self.spec_path}: batch size {batch} not allowed "
                f"({self.spec.batch_mode.describe()})"
            )
        inputs = [image.to(self.device, torch.float32)]
        if len(self.input_names) > 1:
            if point is None:
                raise ValueError(
                    f"{self.spec_path}: this model needs input '{self.input_names[1]}'"
                )
            point = torch.as_tensor(point, dtype=torch.float32, device=self.device)
            single = point.dim() == 1 or (point.dim() == 2 and point.shape[0] == 1)
            inputs.append(point.reshape(1, -1).expand(batch, -1) if single else point)
        return inputs

    def __call__(self, image: Tensor, point: Tensor | None = None) -> dict[str, Tensor]:
        """image: [B, 3, H, W] in [0, 1]; point: (x, y) image pixels, [2] or [B, 2]."""
        inputs = self._inputs(image, point)
        with torch.no_grad():
            raw = self._model_for(image.shape[0])(*inputs)
        outputs = list(raw) if isinstance(raw, (list, tuple)) else [raw]
        if len(outputs) != len(self.spec.outputs):
            raise SpecError(
                f"{self.spec_path}: the model returned {len(outputs)} outputs, the spec names "
                f"{len(self.spec.outputs)}"
            )
        for step in self.spec.post_encoder:
            module = build_post_encoder(step.module, step.interpolation)
            if isinstance(module, SpatialPoint):
                if point is None:
                    raise ValueError(f"{self.spec_path}: post_encoder spatial_point needs a point")
                module.set_point(point, source_size=tuple(image.shape[-2:]))
            outputs[0] = module.apply(outputs[0])
        return {slot.name: out for slot, out in zip(self.spec.outputs, outputs)}


def load_spec(path: str | os.PathLike, device: str | torch.device = "cpu") -> SpecRunner:
    """Read a runtime spec JSON and load its weights (relative to the JSON's folder)."""
    path = Path(path)
    return SpecRunner(read_spec(path), path, device)
