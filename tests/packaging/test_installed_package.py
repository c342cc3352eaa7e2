"""``pip install .`` works without the checkout: a wheel built from a copy of the working tree,
installed into a fresh virtualenv that cannot see the repository, runs ``visdet --help`` and a
two-step ``visdet train`` from a folder outside the checkout.

The heavy dependencies (torch, Lightning, Hydra, ...) are not installed again: after the wheel
is installed, a ``.pth`` file in the new virtualenv adds the site-packages of the interpreter
running the tests. Directories added by a ``.pth`` line are not scanned for ``.pth`` files, so
the editable install of visdet there (its ``__editable__`` finder) stays inactive; the test
checks that ``import visdet`` resolves to the installed copy."""

import importlib.metadata
import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from tiny_runs import tiny_overrides

ROOT = Path(__file__).resolve().parents[2]
SUBCOMMANDS = {"train", "eval", "predict", "export", "bench", "data", "train-encoder", "features"}
# variables that would point the installed package back at the checkout (or at another env)
DROPPED_ENV = {
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "VIRTUAL_ENV",
    "VISDET_ROOT",
    "VISDET_DATA",
    "TORCHELASTIC_RUN_ID",
}


def _env(venv: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env |= {"PYTHONNOUSERSITE": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    return env


def _run(cmd, cwd: Path, venv: Path | None = None, timeout: float = 300):
    return subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=_env(venv),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _check(proc, what: str) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (
        f"{what}: exit status {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}"
        f"\n--- stderr\n{proc.stderr[-5000:]}"
    )
    return proc


def _build_tools_missing() -> str | None:
    """Why this environment cannot build the wheel offline, or None."""
    if shutil.which("git") is None:
        return "git is not installed (needed to list the checkout's files)"
    if not (ROOT / ".git").exists():
        return f"{ROOT} is not a git checkout (its files cannot be listed)"
    if importlib.util.find_spec("pip") is None:
        return f"pip is missing from {sys.prefix} (needed to build and install the wheel)"
    if importlib.util.find_spec("setuptools") is None:
        return (
            f"setuptools is missing from {sys.prefix}: the offline build "
            "(pip wheel --no-build-isolation) needs the build backend installed"
        )
    version = importlib.metadata.version("setuptools")  # not imported: distutils shims
    if int(version.split(".")[0]) < 64:
        return f"setuptools {version} < 64 (pyproject.toml's build requirement)"
    return None


def _copy_working_tree(dest: Path) -> list[str]:
    """The tracked and the untracked, not ignored files of the checkout, as they are on disk
    (uncommitted changes included); setuptools' build/ and *.egg-info land in the copy."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    copied = []
    for rel in sorted(set(filter(None, listed))):
        src = ROOT / rel
        if not src.is_file():  # deleted in the working tree, or a submodule
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(src, dest / rel)
        except FileNotFoundError:  # removed since it was listed
            continue
        copied.append(rel)
    return copied


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    why = _build_tools_missing()
    if why:
        pytest.skip(f"cannot build the visdet wheel offline here: {why}")
    base = tmp_path_factory.mktemp("installed_package")
    assert not base.resolve().is_relative_to(ROOT), f"temporary folder {base} is in the checkout"

    src = base / "src"
    files = _copy_working_tree(src)
    wheels = base / "wheels"
    _check(
        _run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
            + ["--no-index", "--no-cache-dir", "-w", wheels, src],
            cwd=base,
        ),
        "pip wheel",
    )
    (wheel,) = wheels.glob("visdet-*.whl")

    venv = base / "venv"
    _check(_run([sys.executable, "-m", "venv", venv], cwd=base), "python -m venv")
    python = venv / "bin" / "python"
    # install before the dependencies are made visible: pip must not see the visdet
    # distribution of the test environment as "already installed"
    _check(
        _run(
            [python, "-m", "pip", "install", "--no-deps", "--no-index", "--no-cache-dir", wheel],
            cwd=base,
            venv=venv,
        ),
        "pip install",
    )
    purelib = Path(
        _check(
            _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base),
            "purelib",
        ).stdout.strip()
    )
    deps = dict.fromkeys(
        [
            *site.getsitepackages(),
            sysconfig.get_paths()["purelib"],
            sysconfig.get_paths()["platlib"],
        ]
    )
    # (these may lie inside the checkout, as .venv/ does; the checkout itself must not be one)
    deps = [p for p in deps if Path(p).is_dir() and Path(p).resolve() != ROOT]
    assert deps, "no site-packages directory of the test interpreter found"
    (purelib / "_visdet_test_deps.pth").write_text("".join(f"{p}\n" for p in deps))
    return SimpleNamespace(
        base=base,
        files=files,
        wheel=wheel,
        venv=venv,
        python=python,
        purelib=purelib,
        visdet=venv / "bin" / "visdet",
    )


def test_wheel_ships_every_module_and_config(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    assert "visdet/conf/train.yaml" in names
    expected = {f for f in installed.files if f.startswith("visdet/") and f.endswith(".py")}
    expected |= {
        "visdet/conf/" + f.removeprefix("conf/")
        for f in installed.files
        if f.startswith("conf/") and f.endswith((".py", ".yaml"))
    }
    missing = sorted(expected - names)
    # e.g. a package folder without __init__.py: setup.py's find_packages leaves it out
    assert not missing, f"files of the checkout missing from the wheel: {missing}"
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    scripts = zipfile.ZipFile(installed.wheel).read(entry_points).decode()
    assert "visdet = visdet.cli:main" in scripts
    # the installed tree has them too
    assert (installed.purelib / "visdet" / "conf" / "train.yaml").is_file()
    assert installed.visdet.is_file()


@pytest.mark.slow  # a multi-second run; make test-full
def test_import_resolves_to_installed_copy(installed, tmp_path):
    probe = """
import importlib.resources, json, sys
import visdet, visdet.conf
print(json.dumps({
    "visdet": visdet.__file__,
    "conf": visdet.conf.__file__,
    "train_yaml": importlib.resources.files("visdet.conf").joinpath("train.yaml").is_file(),
    "finders": [getattr(f, "__module__", "") for f in sys.meta_path],
    "editable_loaded": sorted(m for m in sys.modules if "editable" in m),
    "path": sys.path,
}))
"""
    proc = _check(_run([installed.python, "-c", probe], tmp_path, installed.venv), "import")
    seen = json.loads(proc.stdout)
    for key in ("visdet", "conf"):
        where = Path(seen[key]).resolve()
        assert where.is_relative_to(installed.purelib.resolve()), (key, where)
        assert not where.is_relative_to(ROOT), (key, where)
    assert seen["train_yaml"]
    assert not [f for f in seen["finders"] if "editable" in f], seen["finders"]
    assert seen["editable_loaded"] == []
    assert not [p for p in seen["path"] if p and Path(p).resolve() == ROOT], seen["path"]
    # and the dependencies come through the .pth file
    deps = "import torch, lightning, hydra, hydra_plugins.hydra_optuna_sweeper"
    _check(
        _run([installed.python, "-c", deps], tmp_path, installed.venv), "import the dependencies"
    )


def test_help_lists_the_subcommands(installed, tmp_path):
    proc = _check(_run([installed.visdet, "--help"], tmp_path, installed.venv), "visdet --help")
    lines = proc.stdout.splitlines()
    listed = {line.split()[0] for line in lines[lines.index("commands:") + 1 :] if line.strip()}
    assert listed >= SUBCOMMANDS, proc.stdout


@pytest.mark.slow  # a training subprocess from the installed wheel: make test-full
def test_two_step_training_outside_the_checkout(installed, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    args = tiny_overrides(tmp_path, "trainer.max_epochs=1", "+trainer.max_steps=2", "test=false")
    proc = _run([installed.visdet, "train", *args], work, installed.venv, timeout=600)
    _check(proc, "visdet train")
    assert proc.stdout.count("final: val/mAP=") == 1, proc.stdout[-3000:]
    (metrics_file,) = (work / "outputs" / "train" / "runs").glob("*/metrics.json")
    metrics = json.loads(metrics_file.read_text())
    assert metrics["global_step"] == 2 and metrics["epochs"] == 1
