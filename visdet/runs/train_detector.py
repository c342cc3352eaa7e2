"""The detector training task behind ``visdet train``: build the DetectorModule from the
``model`` group (with optimizer, schedule, augmentation and parameter groups), fit, test the
best checkpoint, and end with the per-class table and the ``final:`` line."""

from __future__ import annotations

import logging
import math
import resource
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from visdet.data.class_weights import box_counts, check_class_weight_mode, frequency_class_weights
from visdet.lightning.model_description import describe, with_classes
from visdet.models.weights.checkpoint_state import load_weights_file
from visdet.models.weights.safetensors_file import save_weights
from visdet.runs.evaluation_report import EvalSettings, write_evaluation
from visdet.runs.fit import FitTask, best_checkpoint, fit

log = logging.getLogger(__name__)

FINAL_KEYS = ("mAP", "mAP50", "mAP75")


def format_per_class(per_class: dict[str, float]) -> str:
    width = max([5] + [len(k) for k in per_class])
    rows = [f"{'class'.ljust(width)}  AP"]
    rows += [
        f"{k.ljust(width)}  {'n/a' if math.isnan(v) else f'{v:.4f}'}" for k, v in per_class.items()
    ]
    return "\n".join(rows)


def resolve_class_weights(cfg: DictConfig, datamodule) -> None:
    """Replace a ``model.detector.class_weights`` string by the explicit list computed from
    the training split's box counts (logged; config_resolved.yaml then holds the list)."""
    detector = cfg.model.get("detector")
    mode = detector.get("class_weights") if detector is not None else None
    if not isinstance(mode, str):
        return
    check_class_weight_mode(mode)
    if datamodule.train_set is None:
        datamodule.prepare_data()
        datamodule.setup("fit")
    counts = box_counts(datamodule.train_set.targets, datamodule.num_classes)
    weights = frequency_class_weights(counts, mode)
    with open_dict(cfg):
        detector.class_weights = weights
    names = datamodule.train_set.class_names
    log.info(
        "model.detector.class_weights (%s of the training boxes per class): %s",
        mode,
        ", ".join(
            f"{n} {c} boxes -> {w:g}" for n, c, w in zip(names, counts, weights, strict=True)
        ),
    )
    missing = [n for n, c in zip(names, counts, strict=True) if c == 0]
    if missing:
        log.warning("classes without a training box (class weight 1): %s", ", ".join(missing))


def build_module(cfg: DictConfig, datamodule):
    if cfg.data.get("num_classes") is None:
        # classes come from the data: read the splits now so ${data.num_classes} resolves
        datamodule.prepare_data()
        datamodule.setup("fit")
        with open_dict(cfg):
            cfg.data.num_classes = datamodule.num_classes
        log.info("data.num_classes: %d, read from the training split", datamodule.num_classes)
    resolve_class_weights(cfg, datamodule)
    # optim.param_groups (optional) builds the groups; the rest of optim is the optimizer
    groups_cfg = cfg.optim.get("param_groups")
    optim_cfg = OmegaConf.masked_copy(cfg.optim, [k for k in cfg.optim if k != "param_groups"])
    module = instantiate(
        cfg.model,
        optimizer=instantiate(optim_cfg),
        scheduler=instantiate(cfg.sched) if cfg.get("sched") else None,
        augment=instantiate(cfg.aug),
        param_groups=instantiate(groups_cfg) if groups_cfg else None,
    )
    module.description = describe(cfg)  # stored in every checkpoint (with the classes)
    return module


def collect(cfg: DictConfig, trainer, module, datamodule) -> dict:
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    results = dict(module.last_results)
    best = best_checkpoint(trainer)
    # what the final numbers are: the best checkpoint tested on the validation split, or the
    # last validation of fit; a run that never validated (max_epochs below
    # check_val_every_n_epoch, test=false) validates its final weights now
    evaluated = "last validation during fit"
    best_loaded = False
    if cfg.get("test", True) and not trainer.fast_dev_run:
        if validated_at_the_end(trainer, module, best):
            # the best checkpoint was written by the last validation, at the last step: testing
            # it would repeat that validation (same weights, same split), so its results stand
            evaluated = f"{Path(best).name} (validated at the last step) on the val split"
        else:
            trainer.test(module, datamodule=datamodule, ckpt_path=best, weights_only=True)
            results = dict(module.last_results)
            best_loaded = True  # the module now holds the best checkpoint's weights
            evaluated = f"{Path(best).name if best else 'final weights'} tested on the val split"
    elif not results and not trainer.fast_dev_run:
        trainer.validate(module, datamodule=datamodule)
        results = dict(module.last_results)
        evaluated = "final weights validated after fit"
    load_from = None if best_loaded else best
    weights = write_detector_weights(cfg, trainer, module, datamodule, load_from, best)
    analysis = write_analysis(cfg, trainer, module, datamodule, evaluated)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    return {
        "evaluated": evaluated,
        **{f"val/{k}": v for k, v in results.items() if k != "per_class"},
        "per_class_AP": results.get("per_class", {}),
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "best_checkpoint": best,
        "last_checkpoint": str(last) if last.is_file() else None,
        "weights": weights,
        "analysis": analysis,
        "skipped_images": module.skipped_images,
        "skipped_files": list(getattr(datamodule, "skipped_files", [])),
        "trainable_params": sum(p.numel() for p in module.parameters() if p.requires_grad),
        "peak_memory_mb": _peak_memory_mb(module),
        "last_fit_metrics": fit_metrics,
    }


def validated_at_the_end(trainer, module, best: str | None) -> bool:
    """Whether checkpoint ``best`` was saved by the validation at the run's last step, so
    that its results are the module's last validation results."""
    if best is None or module.validated_at_step != trainer.global_step:
        return False
    saved = torch.load(best, map_location="cpu", weights_only=True, mmap=True)
    return saved.get("global_step") == trainer.global_step


def write_detector_weights(
    cfg, trainer, module, datamodule, load_from: str | None, source: str | None
) -> str | None:
    """``model.safetensors`` beside the checkpoints: the detector's weights (read from the
    checkpoint ``load_from`` when the module does not hold them already), with the model
    description (visdet.lightning.model_description: config, classes, preprocessing) and the
    ``source`` checkpoint in its metadata. Rank zero writes it;
    returns its path."""
    if trainer.fast_dev_run:
        return None
    path = Path(cfg.paths.output_dir) / "checkpoints" / "model.safetensors"
    if trainer.is_global_zero:
        if load_from:
            state = load_weights_file(load_from, "best checkpoint")["state_dict"]
            state = {
                k[len("detector.") :]: v for k, v in state.items() if k.startswith("detector.")
            }
        else:
            state = module.detector.state_dict()
        description = with_classes(describe(cfg), datamodule)
        save_weights(state, path, {"visdet": description, "source_checkpoint": source})
    return str(path)


def write_analysis(cfg, trainer, module, datamodule, evaluated: str) -> str | None:
    """The evaluation outputs of ``visdet eval`` (per-class table, PR curves, confusion
    matrix, error breakdown, report.html: visdet.runs.evaluation_report) for the final
    detections on the validation split, in ``<run>/evaluation/``; rank zero writes them.
    Returns the folder (None when ``analysis=false`` or nothing was evaluated)."""
    detections = module.last_detections
    val_set = getattr(datamodule, "val_set", None)
    if not cfg.get("analysis", True) or detections is None or val_set is None:
        return None
    out = Path(cfg.paths.output_dir) / "evaluation"
    if trainer.is_global_zero:
        masks = bool(detections) and "segmentation" in detections[0]
        settings = EvalSettings(
            iou_types=("bbox", "segm") if masks else ("bbox",),
            extra={"source": {"evaluated": evaluated}},
        )
        write_evaluation(
            val_set.coco, detections, out, val_set.image_dir, settings, evaluated, True
        )
    return str(out)


def _peak_memory_mb(module) -> dict[str, float]:
    """Peak resident memory of this process (CPU) and peak allocated CUDA memory, in MiB."""
    out = {"process_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if module.device.type == "cuda":
        out["cuda_allocated"] = torch.cuda.max_memory_allocated(module.device) / 2**20
    return out


def report(metrics: dict, output_dir: Path) -> None:
    if metrics["per_class_AP"]:
        log.info("per-class AP (val):\n%s", format_per_class(metrics["per_class_AP"]))
    if metrics["skipped_images"]:
        names = metrics.get("skipped_files") or []
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        log.warning(
            "%d unreadable images were skipped%s",
            metrics["skipped_images"],
            f": {shown}" if shown else "",
        )
    checkpoints = metrics["best_checkpoint"] or metrics["last_checkpoint"] or "none"
    log.info(
        "outputs: %s (checkpoints: %s, weights: %s, metrics.json, logs)",
        output_dir,
        checkpoints,
        metrics["weights"] or "none",
    )
    final = " ".join(f"val/{k}={_number(metrics.get(f'val/{k}'))}" for k in FINAL_KEYS)
    print(
        f"final: {final} epochs={metrics['epochs']} time={metrics['time_s']:.0f}s "
        f"({metrics['evaluated']})",
        flush=True,
    )


def _number(value) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:.4f}"


DETECTOR_TASK = FitTask(build_module, collect, report)


def train(cfg: DictConfig) -> dict:
    """Train a detector as configured; returns the metrics written to metrics.json."""
    return fit(cfg, DETECTOR_TASK)
