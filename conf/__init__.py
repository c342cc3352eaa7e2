"""visdet's Hydra configs, shipped inside the package as ``visdet.conf`` (pkg://visdet.conf)."""
