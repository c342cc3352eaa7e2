"""Per-class loss weights from the training data (``model.detector.class_weights`` given as
``inverse_frequency`` or ``inverse_sqrt_frequency``); visdet.runs.train_detector resolves the
string into the explicit list before the model is built."""

from __future__ import annotations

from collections.abc import Sequence


def box_counts(targets: Sequence[dict], num_classes: int) -> list[int]:
    """Boxes per class (labels 1..``num_classes`` in order) over the targets' ``labels``."""
    counts = [0] * num_classes
    for target in targets:
        for label in target["labels"].tolist():
            counts[label - 1] += 1
    return counts


# model.detector.class_weights strings resolved from the data: the exponent p of w_c ~ n_c^-p
CLASS_WEIGHT_MODES = {"inverse_frequency": 1.0, "inverse_sqrt_frequency": 0.5}


def check_class_weight_mode(mode: str) -> None:
    """ValueError naming ``model.detector.class_weights`` for an unknown string."""
    if mode not in CLASS_WEIGHT_MODES:
        raise ValueError(
            f"model.detector.class_weights must be null, a list of floats or one of "
            f"{', '.join(CLASS_WEIGHT_MODES)}, got {mode!r}"
        )


def frequency_class_weights(counts: list[int], mode: str) -> list[float]:
    """Per-class weights ``w_c ~ n_c^-p`` (p = 1 for ``inverse_frequency``, 1/2 for
    ``inverse_sqrt_frequency``) from the training boxes per class ``counts`` (n_c) (labels 1..K in
    order), normalised to mean 1 over the classes that have boxes; a class without any box
    (its weight never enters the loss) gets 1."""
    check_class_weight_mode(mode)
    power = CLASS_WEIGHT_MODES[mode]
    raw = [n**-power if n > 0 else None for n in counts]
    present = [w for w in raw if w is not None]
    mean = sum(present) / len(present) if present else 1.0
    return [1.0 if w is None else round(w / mean, 6) for w in raw]
