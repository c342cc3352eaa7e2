"""System-level benchmarks: detector training throughput, inference latency versus batch
size, and data-pipeline throughput (loading + device-side augmentation) beside what the
model consumes. Each returns result dicts in the schema's format."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from visdet.bench.measure import peak_memory_mb, summarize, time_ms
from visdet.bench.schema import new_result
from visdet.config.presets import build_detector
from visdet.data import DetectionAugment, DetectionDataModule, ShapesSource


def _detector(depth: int, device: str):
    """The main job's detector (model=faster_rcnn_r18_fpn), on ResNet-50 with BatchNorm for
    depth 50."""
    torch.manual_seed(0)
    overrides = (
        []
        if depth == 18
        else [f"backbone=resnet{depth}_bn" if depth == 50 else f"backbone=resnet{depth}"]
    )
    return build_detector("faster_rcnn_r18_fpn", 4, overrides).to(device)


def _batch(batch_size: int, size: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(batch_size):
        images.append(torch.rand(3, size, size, generator=g).to(device))
        xy = torch.rand(3, 2, generator=g) * size * 0.6
        wh = torch.rand(3, 2, generator=g) * size * 0.3 + 8
        targets.append(
            {
                "boxes": torch.cat([xy, xy + wh], 1).to(device),
                "labels": torch.randint(1, 5, (3,), generator=g).to(device),
            }
        )
    return images, targets


def _result(component: str, case: str, batch: int, input: str, params: int, **fields) -> dict:
    """A system result (schema.new_result with group "system", impl "visdet")."""
    return new_result(
        component, "system", "visdet", case, batch_size=batch, input=input, params=params, **fields
    )


def train_throughput(
    depth: int, batch_size: int, image_size: int, steps: int, warmup: int, device: str
) -> dict:
    """SGD training steps of Faster R-CNN R<depth>-FPN on synthetic images: images/s."""
    model = _detector(depth, device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    images, targets = _batch(batch_size, image_size, device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        sum(model(images, targets).values()).backward()
        optimizer.step()

    stats = time_ms(step, steps, warmup, device)
    memory, kind = peak_memory_mb(step, device)
    return _result(
        f"system/train_r{depth}_fpn", f"b{batch_size}_{image_size}px", batch_size,
        f"{batch_size}x3x{image_size}x{image_size}", sum(p.numel() for p in model.parameters()),
        forward_backward_ms=stats, peak_memory_mb=memory, memory_kind=kind,
        throughput={"images_per_s": batch_size / (stats["median"] / 1000)},
    )  # fmt: skip


def inference_latency(
    depth: int, batch_sizes: Sequence[int], image_size: int, repeats: int, warmup: int, device: str
) -> list[dict]:
    """Eval-mode forward (with post-processing) at each batch size: latency and images/s."""
    model = _detector(depth, device).eval()
    params = sum(p.numel() for p in model.parameters())
    out = []
    for b in batch_sizes:
        images, _ = _batch(b, image_size, device, seed=b)

        def forward(images=images):
            with torch.no_grad():
                return model(images)

        stats = time_ms(forward, repeats, warmup, device)
        memory, kind = peak_memory_mb(forward, device)
        out.append(
            _result(
                f"system/infer_r{depth}_fpn",
                f"b{b}_{image_size}px",
                b,
                f"{b}x3x{image_size}x{image_size}",
                params,
                forward_ms=stats,
                peak_memory_mb=memory,
                memory_kind=kind,
                throughput={"images_per_s": b / (stats["median"] / 1000)},
            )  # fmt: skip
        )
    return out


def data_throughput(
    data_dir: str, batch_size: int, image_size: int, batches: int, num_workers: int, device: str
) -> dict:
    """Images/s that the shapes train loader plus the default augmentation deliver."""
    source = ShapesSource(
        data_dir, num_train=max(64, 2 * batch_size), num_val=8, image_size=image_size
    )
    datamodule = DetectionDataModule(
        source, num_classes=4, batch_size=batch_size, num_workers=num_workers
    )
    datamodule.setup("fit")
    augment = DetectionAugment(train_sizes=(image_size,), val_size=image_size)
    times = []
    loader = iter(datamodule.train_dataloader())
    start = time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(loader)
        except StopIteration:
            loader = iter(datamodule.train_dataloader())
            batch = next(loader)
        images = [i.to(device) for i in batch["images"]]
        targets = [
            {k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()}
            for t in batch["targets"]
        ]
        augment(images, targets, train=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        now = time.perf_counter()
        times.append((now - start) * 1000)
        start = now
    stats = summarize(times)
    return _result(
        "system/data_pipeline", f"b{batch_size}_{image_size}px_w{num_workers}", batch_size,
        f"shapes train, {batch_size} images of {image_size}px per batch", 0, forward_ms=stats,
        throughput={"images_per_s": batch_size / (stats["median"] / 1000)},
        extra={"num_workers": num_workers, "batches": batches},
    )  # fmt: skip


def run_system(
    depth: int = 18,
    train_batch_size: int = 2,
    image_size: int = 128,
    train_steps: int = 3,
    latency_batch_sizes: Sequence[int] = (1, 2, 4, 8),
    repeats: int = 3,
    warmup: int = 1,
    data_dir: str = "data",
    data_batches: int = 10,
    num_workers: int = 0,
    device: str = "cpu",
) -> list[dict]:
    results = [train_throughput(depth, train_batch_size, image_size, train_steps, warmup, device)]
    results += inference_latency(depth, latency_batch_sizes, image_size, repeats, warmup, device)
    data = data_throughput(
        data_dir, train_batch_size, image_size, data_batches, num_workers, device
    )
    consumed = results[0]["throughput"]["images_per_s"]
    delivered = data["throughput"]["images_per_s"]
    data["extra"]["model_images_per_s"] = consumed
    data["extra"]["delivered_over_consumed"] = delivered / consumed
    results.append(data)
    return results
