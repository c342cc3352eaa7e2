"""Feature-map preview: one image's channels as colour-mapped thumbnails in a PNG grid."""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch

from visdet.io.atomic_write import write_bytes_atomic

NORMALIZE_MODES = ("per_channel", "global")
CELL_INCHES = 1.6
DPI = 100


def normalize_channels(features: torch.Tensor, mode: str) -> torch.Tensor:
    """Min-max scale ``features: [N,H,W]`` into [0, 1] (float32, same shape).

    ``mode="per_channel"`` scales each channel by its own min and max; ``"global"`` uses one
    min and max over all N channels. A constant channel (or map) becomes zeros, never NaN.
    """
    if mode not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {mode!r}")
    if features.dim() != 3:
        raise ValueError(f"features must be [N,H,W], got shape {list(features.shape)}")
    x = features.detach().to(dtype=torch.float32, device="cpu")
    if x.numel() == 0:
        return x
    dims = (1, 2) if mode == "per_channel" else (0, 1, 2)
    lo = x.amin(dim=dims, keepdim=True)
    span = x.amax(dim=dims, keepdim=True) - lo
    scaled = (x - lo) / torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, scaled, torch.zeros_like(scaled)).clamp_(0.0, 1.0)


def grid_shape(n_cells: int, columns: int | None = None) -> tuple[int, int]:
    """(rows, cols) of a grid for ``n_cells``; cols defaults to ceil(sqrt(n_cells)) and never
    exceeds ``n_cells``."""
    if n_cells < 1:
        raise ValueError(f"n_cells must be >= 1, got {n_cells}")
    if columns is not None and columns < 1:
        raise ValueError(f"columns must be >= 1 or None, got {columns}")
    cols = math.ceil(math.sqrt(n_cells)) if columns is None else min(columns, n_cells)
    return math.ceil(n_cells / cols), cols


def save_feature_grid(
    features: torch.Tensor,
    path: str | Path,
    num_channels: int = 16,
    columns: int | None = None,
    cmap: str = "viridis",
    image: torch.Tensor | None = None,
    title: str | None = None,
    normalize: str = "per_channel",
) -> Path:
    """Save the first ``min(num_channels, C)`` channels of ``features: [C,H,W]`` (or
    ``[1,C,H,W]``) as a PNG grid of thumbnails titled ``ch 0``, ``ch 1``, ...

    ``image: [3,H,W]`` float in [0, 1], when given, fills the first cell (titled "input").
    ``normalize`` is ``"per_channel"`` or ``"global"`` (see :func:`normalize_channels`).
    The file is written atomically; returns ``path`` as a Path.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if features.dim() == 4 and features.shape[0] == 1:
        features = features[0]
    if features.dim() != 3:
        raise ValueError(f"features must be [C,H,W] or [1,C,H,W], got shape {list(features.shape)}")
    if min(features.shape) < 1:
        raise ValueError(f"features must have C, H, W >= 1, got shape {list(features.shape)}")
    if num_channels < 1:
        raise ValueError(f"num_channels must be >= 1, got {num_channels}")
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {normalize!r}")
    if cmap not in colormaps:
        raise ValueError(f"cmap must be a matplotlib colormap name, got {cmap!r}")
    n_bad = int((~torch.isfinite(features)).sum())
    if n_bad:
        raise ValueError(f"features has {n_bad} non-finite values (NaN or inf)")
    if image is not None:
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"image must be [3,H,W], got shape {list(image.shape)}")
        if not bool(torch.isfinite(image).all()) or image.min() < 0 or image.max() > 1:
            raise ValueError("image values must be finite and in [0, 1]")

    c = features.shape[0]
    n = min(num_channels, c)
    shown = normalize_channels(features[:n], normalize).numpy()
    offset = 1 if image is not None else 0
    rows, cols = grid_shape(n + offset, columns)

    fig = Figure(
        figsize=(cols * CELL_INCHES, rows * CELL_INCHES + 0.6), dpi=DPI, layout="constrained"
    )
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    if image is not None:
        axes[0].imshow(image.detach().float().cpu().permute(1, 2, 0).numpy())
        axes[0].set_title("input", fontsize=8)
    for k in range(n):
        ax = axes[offset + k]
        ax.imshow(shown[k], cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(f"ch {k}", fontsize=8)
    if title:
        fig.suptitle(title)
    span = f"channel 0 of {c}" if n == 1 else f"channels 0-{n - 1} of {c}"
    fig.supxlabel(f"features {list(features.shape)}, {span}", fontsize=8)

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    path = Path(path)
    write_bytes_atomic(path, buf.getvalue())
    return path


@torch.no_grad()
def preview_features(
    encoder,
    image: str,
    output: str,
    num_channels: int = 16,
    columns: int | None = None,
    cmap: str = "viridis",
    normalize: str = "per_channel",
) -> Path:
    """Encode one image file (resized to the encoder's declared input) and save the grid."""
    from visdet.data.image_folder import open_rgb, to_tensor

    path = Path(image)
    if not path.is_file():
        raise FileNotFoundError(f"preview.image: file not found: {path}")
    _, height, width = encoder.input_shape
    pixels = to_tensor(open_rgb(path), (height, width))
    features = encoder.eval()(pixels[None])[0]
    title = f"{path.name}: {type(encoder).__name__} {getattr(encoder, 'stage', '')}".strip()
    return save_feature_grid(
        features, output, num_channels=num_channels, columns=columns, cmap=cmap,
        image=pixels, title=title, normalize=normalize,
    )  # fmt: skip
