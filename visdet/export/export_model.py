"""The module that gets exported: an encoder plus (optionally) a baked-in post-encoder chain.

``forward(image, point=None)``: image [B, 3, H, W] in [0, 1]; point [B, 2] (x, y) in image
pixels, needed only when a ``spatial_point`` step is baked in (its source size is the image
size). Written so that ``torch.jit.script`` (around a traced encoder) and ``torch.export``
both take it.
"""

from collections.abc import Sequence
from typing import List, Optional  # noqa: UP035 - TorchScript reads these annotations

from torch import Tensor, nn

from visdet.models.post_encoder import POST_ENCODERS, global_avg_pool, spatial_point
from visdet.models.post_encoder.spatial_point import MODES


class ExportModel(nn.Module):
    keys: List[str]  # noqa: UP006
    modes: List[str]  # noqa: UP006

    def __init__(self, encoder: nn.Module, steps: Sequence[tuple[str, str]] = ()) -> None:
        """steps: (post-encoder key, interpolation) pairs, applied in order."""
        super().__init__()
        for key, mode in steps:
            if key not in POST_ENCODERS:
                raise ValueError(
                    f"unknown post-encoder {key!r}; expected one of {list(POST_ENCODERS)}"
                )
            if mode not in MODES:
                raise ValueError(f"post-encoder interpolation must be one of {MODES}, got {mode!r}")
        self.encoder = encoder
        self.keys = [key for key, _ in steps]
        self.modes = [mode for _, mode in steps]
        self.takes_point = "spatial_point" in self.keys

    def forward(self, image: Tensor, point: Optional[Tensor] = None) -> Tensor:  # noqa: UP045
        features = self.encoder(image)
        for key, mode in zip(self.keys, self.modes):
            if key == "global_avg_pool":
                features = global_avg_pool(features)
            elif key == "spatial_point":
                if point is None:
                    raise ValueError(
                        "this model needs a point input [B, 2] (x, y) for spatial_point"
                    )
                features = spatial_point(features, point, image.shape[2], image.shape[3], mode)
        return features
