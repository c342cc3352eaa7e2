"""The run behind ``visdet predict ckpt=PATH source=FILE|DIR|GLOB|LIST.txt`` (conf/predict.yaml).

Writes into the run directory (``paths.output_dir``):

- ``predictions.json``: a list of ``{"file_name", "bbox": [x, y, w, h], "score", "category_id",
  "category_name"}``, boxes in the original image's pixels, ids the dataset's original ones;
  a mask model's entries add ``segmentation``: the mask as a COCO RLE ``{"size": [h, w],
  "counts": str}`` (pycocotools' ``mask.decode`` reads it);
- ``summary.json``: counts, speed, and the ``skipped`` images (unreadable: file and reason);
- ``images/<file name>``: each image with its boxes (and masks, translucent with outlines)
  drawn (``save_images``);
- ``labels/<file name minus extension>.txt``: YOLO lines ``cls cx cy w h conf``, normalised,
  ``cls = label - 1`` (``save_txt``; an empty file for an image without detections);
- ``crops/<class name>/<file name minus extension>_<i>.jpg``: each detection cut out of the
  image (``save_crops``; ``i`` counts the image's detections from 0, highest score first).
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from PIL import Image
from tqdm import tqdm

from visdet.config.validate import validate_config
from visdet.data.image_decode import UnreadableImage, decode_image
from visdet.data.instance_masks import encode_masks
from visdet.inference.detector import Detector
from visdet.inference.image_source import SourceImage, list_images
from visdet.inference.tiling import TileSettings
from visdet.io.atomic_write import write_bytes_atomic, write_text_atomic
from visdet.runs.model_choice import chosen_preset, tool_settings
from visdet.visualize.draw import draw_boxes, to_pil

log = logging.getLogger(__name__)

OPTIONS = {
    "ckpt",
    "source",
    "model",
    "num_classes",
    "score_thresh",
    "classes",
    "max_det",
    "batch_size",
    "device",
    "recursive",
    "save_images",
    "save_txt",
    "save_crops",
    "tile",
}
TOP_LEVEL = OPTIONS | {"paths", "hydra", "task_name", "seed"}
BOOLEAN_OPTIONS = ("recursive", "save_images", "save_txt", "save_crops")


def run_predict(cfg: DictConfig) -> dict:
    """Predict every image of ``cfg.source`` with ``cfg.ckpt``; returns the summary (also
    written to ``summary.json``) and prints its line."""
    validate_config(tool_settings(cfg), top_level=TOP_LEVEL, required=())
    for key in ("ckpt", "source"):
        if cfg.get(key) in (None, ""):
            raise ValueError(f"{key}: missing; pass {key}=PATH")
    for key in BOOLEAN_OPTIONS:
        if not isinstance(cfg.get(key), bool):
            raise ValueError(f"{key} must be true or false, got {cfg.get(key)!r}")
    batch_size = cfg.get("batch_size")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    tile = TileSettings.from_value(_plain(cfg.get("tile")))
    classes = _plain(cfg.get("classes"))
    if classes is not None and not isinstance(classes, (str, list)):
        raise ValueError(f"classes must be null, a class name or a list of names, got {classes!r}")
    out_dir = Path(cfg.paths.output_dir)
    images = list_images(cfg.source, recursive=cfg.recursive)
    detector = Detector.from_checkpoint(
        cfg.ckpt, model=chosen_preset(cfg), num_classes=cfg.num_classes, device=cfg.device
    )
    detector.labels_for(classes)  # an unknown class name stops before any work
    options = {
        "score_thresh": cfg.score_thresh,
        "batch_size": cfg.batch_size,
        "tile": tile,
        "max_det": cfg.max_det,
        "classes": classes,
    }
    predictions, skipped = [], []
    start = time.perf_counter()
    with tqdm(total=len(images), desc="predict", unit="img") as progress:
        for first in range(0, len(images), cfg.batch_size):
            batch, tensors = [], []
            for image in images[first : first + cfg.batch_size]:
                try:
                    tensors.append(decode_image(image.path))
                    batch.append(image)
                except UnreadableImage as e:
                    skipped.append({"file_name": image.name, "error": str(e)})
            results = detector.predict(tensors, **options) if tensors else []
            for image, tensor, result in zip(batch, tensors, results, strict=True):
                predictions += prediction_records(image.name, result)
                save_outputs(cfg, out_dir, image, tensor, result)
            progress.update(len(images[first : first + cfg.batch_size]))
    seconds = time.perf_counter() - start
    done = len(images) - len(skipped)
    write_text_atomic(out_dir / "predictions.json", json.dumps(predictions, indent=1))
    summary = {
        "ckpt": str(cfg.ckpt),
        "source": str(cfg.source),
        "images": done,
        "detections": len(predictions),
        "skipped": skipped,
        "seconds": round(seconds, 3),
        "images_per_s": round(done / seconds, 3) if seconds > 0 else None,
        "output_dir": str(out_dir),
    }
    write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2))
    for entry in skipped:
        print(f"predict: skipped {entry['file_name']}: {entry['error']}", flush=True)
    speed = f"{done / seconds:.2f}" if seconds > 0 else "n/a"
    print(
        f"predict: {done} images, {len(predictions)} detections, {len(skipped)} skipped, "
        f"{speed} images/s -> {out_dir}",
        flush=True,
    )
    return summary


def prediction_records(file_name: str, result: dict) -> list[dict]:
    """The ``predictions.json`` entries of one image's result (``Detector.predict``)."""
    records = []
    for box, score, category_id, name in zip(
        result["boxes"].tolist(),
        result["scores"].tolist(),
        result["category_ids"],
        result["names"],
        strict=True,
    ):
        x1, y1, x2, y2 = box
        records.append(
            {
                "file_name": file_name,
                "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                "score": round(score, 5),
                "category_id": category_id,
                "category_name": name,
            }
        )
    if "masks" in result:
        for record, rle in zip(records, encode_masks(result["masks"]), strict=True):
            record["segmentation"] = rle
    return records


def save_outputs(cfg: DictConfig, out_dir: Path, image: SourceImage, tensor, result) -> None:
    """The drawn image, YOLO labels and crops of one image, as ``cfg`` asks."""
    stem = image.name.rsplit(".", 1)[0] if "." in Path(image.name).name else image.name
    if cfg.save_txt:
        write_text_atomic(out_dir / "labels" / f"{stem}.txt", yolo_lines(result, tensor.shape))
    if not (cfg.save_images or cfg.save_crops):
        return
    picture = to_pil(tensor)
    if cfg.save_images:
        drawn = draw_boxes(
            picture, result["boxes"], result["labels"], result["names"], result["scores"],
            result.get("masks"),
        )  # fmt: skip
        write_image(drawn, out_dir / "images" / image.name)
    if cfg.save_crops:
        for i, (box, name) in enumerate(zip(result["boxes"].tolist(), result["names"])):
            crop = crop_box(picture, box)
            if crop is not None:
                folder = name.replace("/", "_").replace("\\", "_") or "unnamed"
                write_image(crop, out_dir / "crops" / folder / f"{stem}_{i}.jpg")


def yolo_lines(result: dict, shape) -> str:
    """``cls cx cy w h conf`` per detection, coordinates divided by the image's width/height."""
    height, width = int(shape[-2]), int(shape[-1])
    lines = []
    for (x1, y1, x2, y2), label, score in zip(
        result["boxes"].tolist(), result["labels"].tolist(), result["scores"].tolist()
    ):
        cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        w, h = (x2 - x1) / width, (y2 - y1) / height
        lines.append(f"{label - 1} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f} {score:.5f}")
    return "".join(f"{line}\n" for line in lines)


def crop_box(picture: Image.Image, box) -> Image.Image | None:
    """The pixels a box covers (outward to whole pixels, clipped to the image); None when
    nothing is left."""
    x1, y1, x2, y2 = box
    left, top = max(0, math.floor(x1)), max(0, math.floor(y1))
    right, bottom = min(picture.width, math.ceil(x2)), min(picture.height, math.ceil(y2))
    if right <= left or bottom <= top:
        return None
    return picture.crop((left, top, right, bottom))


def write_image(picture: Image.Image, path: Path) -> None:
    """Save atomically in the format of the path's extension (JPEG at quality 95)."""
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    buffer = io.BytesIO()
    options = {"quality": 95} if fmt == "JPEG" else {}
    picture.save(buffer, format=fmt, **options)
    write_bytes_atomic(path, buffer.getvalue())


def _plain(value):
    """An OmegaConf node as plain Python data (other values as they are)."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
