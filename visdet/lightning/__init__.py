"""LightningModules and optimisation schedules."""

from visdet.lightning.detector_module import DetectorModule, NonFiniteLossError

__all__ = ["DetectorModule", "NonFiniteLossError"]
