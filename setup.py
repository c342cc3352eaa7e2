"""Package list for setuptools (everything else is in pyproject.toml): the visdet packages,
plus the repository's top-level conf/ folder installed as visdet.conf, so the configs ship
inside the package and exist once in the repository."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["visdet", "visdet.*"]), "visdet.conf"],
    package_dir={"visdet.conf": "conf"},
)
