"""visdet: object detectors in plain PyTorch, trained with Lightning, configured with Hydra.

``from visdet import Detector`` (visdet.inference) is imported on first use, so ``import
visdet`` stays light."""

from pathlib import Path

__all__ = ["Detector"]


def _expose_hydra_plugins() -> None:
    """Let Hydra find visdet's sweeper (hydra_plugins/visdet_optuna_sweeper) in an editable
    install too: Hydra lists plugins with pkgutil, which cannot see namespace packages that a
    PEP 660 editable install maps (hydra issue #2359); the repository's hydra_plugins folder
    joins the namespace's path. An installed visdet has the folder in site-packages already."""
    folder = Path(__file__).resolve().parent.parent / "hydra_plugins"
    if not (folder / "visdet_optuna_sweeper").is_dir():
        return
    try:
        import hydra_plugins
    except ImportError:
        return
    if str(folder) not in list(hydra_plugins.__path__):
        hydra_plugins.__path__.append(str(folder))


_expose_hydra_plugins()


def __getattr__(name: str):
    if name == "Detector":
        from visdet.inference.detector import Detector

        return Detector
    raise AttributeError(f"module 'visdet' has no attribute {name!r}")
