"""A plain-PyTorch Faster R-CNN demo on synthetic rectangles (``make train`` until the
Lightning/Hydra training stack lands).

    python -m visdet.demo --steps 100 --depth 18

It draws a few images with coloured rectangles (class = colour), trains a small R18-FPN
Faster R-CNN from scratch for ``--steps`` SGD steps, prints the loss terms as it goes and
ends with the detections on a held-out image next to its ground truth.
"""

from __future__ import annotations

import argparse
import time

import torch

from visdet.models import faster_rcnn_resnet_fpn

COLOURS = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.9]])


def synthetic_image(gen: torch.Generator, size: int = 128) -> tuple[torch.Tensor, dict]:
    """An image with 1-3 non-overlapping-ish rectangles; label = colour index + 1."""
    img = torch.rand(3, size, size, generator=gen) * 0.2
    boxes, labels = [], []
    for _ in range(int(torch.randint(1, 4, (1,), generator=gen))):
        w, h = (torch.randint(size // 6, size // 2, (2,), generator=gen)).tolist()
        x, y = (
            int(torch.randint(0, size - w, (1,), generator=gen)),
            int(torch.randint(0, size - h, (1,), generator=gen)),
        )
        cls = int(torch.randint(0, 3, (1,), generator=gen))
        img[:, y : y + h, x : x + w] = COLOURS[cls][:, None, None]
        boxes.append([x, y, x + w, y + h])
        labels.append(cls + 1)
    return img, {
        "boxes": torch.tensor(boxes, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="SGD steps (default 100)")
    parser.add_argument("--depth", type=int, default=18, choices=(18, 34, 50, 101))
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    data = [synthetic_image(gen) for _ in range(8)]
    model = faster_rcnn_resnet_fpn(
        3,
        depth=args.depth,
        norm="bn",
        frozen_stages=-1,
        min_size=128,
        max_size=128,
        fpn_channels=64,
        representation_size=256,
        rpn_pre_nms_top_n_train=500,
        rpn_post_nms_top_n_train=200,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=100,
        box_batch_size_per_image=128,
    )
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
    model.train()
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = [data[(2 * step + i) % len(data)] for i in range(2)]
        losses = model([b[0] for b in batch], [b[1] for b in batch])
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        if step == 1 or step % 10 == 0 or step == args.steps:
            terms = " ".join(f"{k}={v.item():.3f}" for k, v in losses.items())
            print(f"step {step:4d}/{args.steps}  loss={loss.item():.3f}  {terms}", flush=True)
    elapsed = time.perf_counter() - start
    model.eval()
    img, tgt = data[0]
    with torch.no_grad():
        det = model([img])[0]
    print(
        f"trained {args.steps} steps in {elapsed:.1f}s "
        f"({elapsed / args.steps:.2f}s/step, ResNet-{args.depth} FPN, 2 images of 128x128)"
    )
    print(
        "ground truth:",
        [
            (int(lab), [round(v) for v in b.tolist()])
            for b, lab in zip(tgt["boxes"], tgt["labels"], strict=True)
        ],
    )
    top = [
        (int(lab), round(float(s), 2), [round(v) for v in b.tolist()])
        for b, s, lab in zip(det["boxes"][:5], det["scores"][:5], det["labels"][:5], strict=True)
    ]
    print("top detections (label, score, box):", top)


if __name__ == "__main__":
    main()
