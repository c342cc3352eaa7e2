"""Package list for setuptools (everything else is in pyproject.toml): the visdet packages,
plus the repository's top-level conf/ folder installed as visdet.conf, so the configs ship
inside the package and exist once in the repository; and hydra_plugins.visdet_optuna_sweeper,
where Hydra finds visdet's Optuna sweeper (hydra_plugins is a namespace package shared with
other Hydra plugins, so it has no __init__.py)."""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["visdet", "visdet.*"]),
        "visdet.conf",
        "hydra_plugins.visdet_optuna_sweeper",
    ],
    package_dir={"visdet.conf": "conf"},
)
