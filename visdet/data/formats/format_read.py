"""What a format reader returns: a COCO instances dict, the image folder its ``file_name``s
are relative to, and every problem met on the way (readers never stop at the first)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from visdet.data.coco_checks import DatasetError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class FormatRead:
    """``coco``: images (id 1..N, file_name, width, height from the image headers),
    annotations (id 1..M, image_id, category_id 1..K, bbox xywh in pixels, area, iscrowd 0)
    and categories (id 1..K in class order, name). ``problems``: one line per bad line or
    file, naming it; the images or boxes concerned are left out of ``coco``."""

    coco: dict
    image_dir: Path
    problems: list[str] = field(default_factory=list)

    def raise_problems(self, what: str, shown: int = 5) -> None:
        """DatasetError with the count and the first ``shown`` problems, if there are any."""
        if not self.problems:
            return
        first = "; ".join(self.problems[:shown])
        more = f" (and {len(self.problems) - shown} more)" if len(self.problems) > shown else ""
        raise DatasetError(f"{what}: {len(self.problems)} problems: {first}{more}")


def new_coco(class_names: list[str]) -> dict:
    """An empty COCO instances dict with categories 1..K named in order."""
    cats = [{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(class_names)]
    return {"images": [], "annotations": [], "categories": cats}


def add_image(coco: dict, file_name: str, width: int, height: int) -> int:
    """Appends an image entry; returns its id (1..N in order)."""
    image_id = len(coco["images"]) + 1
    coco["images"].append(
        {"id": image_id, "file_name": file_name, "width": width, "height": height}
    )
    return image_id


def add_box(coco: dict, image_id: int, label: int, xywh: list[float], **extra) -> None:
    """Appends an annotation of class index ``label`` (0-based; category ``label + 1``)."""
    coco["annotations"].append(
        {
            "id": len(coco["annotations"]) + 1,
            "image_id": image_id,
            "category_id": label + 1,
            "bbox": xywh,
            "area": xywh[2] * xywh[3],
            "iscrowd": 0,
            **extra,
        }
    )


def image_files(folder: Path) -> list[Path]:
    """Every image file (by suffix) under ``folder``, recursively, sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def relabel(read: FormatRead, class_names: list[str]) -> FormatRead:
    """``read`` with its categories renumbered to ``class_names`` (which must hold all of
    its names): used to give two splits the same category list."""
    old = {c["id"]: c["name"] for c in read.coco["categories"]}
    index = {n: i for i, n in enumerate(class_names)}
    coco = {**read.coco, "categories": new_coco(class_names)["categories"]}
    coco["annotations"] = [
        {**a, "category_id": index[old[a["category_id"]]] + 1} for a in read.coco["annotations"]
    ]
    return FormatRead(coco, read.image_dir, list(read.problems))
