"""visdet: object detectors in plain PyTorch, trained with Lightning, configured with Hydra.

``from visdet import Detector`` (visdet.inference) is imported on first use, so ``import
visdet`` stays light."""

__all__ = ["Detector"]


def __getattr__(name: str):
    if name == "Detector":
        from visdet.inference.detector import Detector

        return Detector
    raise AttributeError(f"module 'visdet' has no attribute {name!r}")
