"""torchvision's reference figures for the core benchmark and the reference of a result.

The stored figures are torchvision's medians measured on this machine kind (DESIGN.md
section 6, "Measured on this machine kind": 2 CPU cores, torch 2.14 with torchvision's
compiled CPU kernels), keyed by the (component, case) of the core benchmark case measured
at the same sizes (visdet/bench/core.py). They are noisy single measurements of another
environment: a ratio against torchvision timed in the same run, on the same inputs, is the
one to trust, and it is used whenever the run has one.
"""

from __future__ import annotations

SAME_RUN = "torchvision, same run"
STORED = "torchvision, stored"
LEGEND = (
    "ratio = visdet / reference (above 1: slower than torchvision); stored = torchvision's "
    "medians on 2 CPU cores, torch 2.14 (DESIGN.md), a noisy single measurement"
)
# (component, case) -> torchvision's median in ms (the metric the core case times)
STORED_MS: dict[tuple[str, str], float] = {
    ("core/nms", "n1000"): 4.7,
    ("core/nms", "n2000"): 12.6,
    ("core/nms", "n6000"): 118.0,
    ("core/roi_align", "n512_2x256x200x200"): 830.0,
    ("core/train_r50_fpn", "b2_320px"): 1400.0,
    ("core/infer_r50_fpn", "b2_320px"): 460.0,
    ("core/infer_r50_fpn", "b2_512px"): 6300.0,
}


def reference(
    component: str,
    case: str,
    median_ms: float,
    same_run_ms: float | None = None,
    device: str = "cpu",
) -> dict | None:
    """``{"ms", "ratio", "source"}`` for a visdet median, ``ratio = median_ms / ms`` (above 1:
    slower than torchvision). torchvision's median from the same run wins; else the stored
    figure of (component, case), on CPU only (it was measured on CPU); else None."""
    if same_run_ms is not None:
        ms, source = same_run_ms, SAME_RUN
    elif str(device) == "cpu" and (component, case) in STORED_MS:
        ms, source = STORED_MS[(component, case)], STORED
    else:
        return None
    return {"ms": ms, "ratio": median_ms / ms, "source": source}


def timed_median(result: dict) -> float:
    """The median of the one timing a core result has (fwd+bwd if set, else forward)."""
    return (result["forward_backward_ms"] or result["forward_ms"])["median"]


def add_references(results: list[dict], device: str = "cpu") -> list[dict]:
    """Set ``extra["reference"]`` on each ``impl: visdet`` result that has a reference: the
    ``impl: torchvision`` result of the same component and case in ``results``, else the
    stored figure. Returns ``results``."""
    torchvision = {
        (r["component"], r["case"]): timed_median(r) for r in results if r["impl"] == "torchvision"
    }
    for r in results:
        if r["impl"] != "visdet":
            continue
        key = (r["component"], r["case"])
        ref = reference(*key, timed_median(r), torchvision.get(key), device)
        if ref is not None:
            r["extra"]["reference"] = ref
    return results
