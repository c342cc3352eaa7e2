"""Local paths and URLs of weight files: a URL is fetched once into a cache directory and
read from there afterwards.

Any scheme ``urllib`` opens works (``https://``, ``http://``, ``file://``; the last lets
tests and air-gapped machines use the same code path). The cache is ``$VISDET_CACHE`` or
``~/.cache/visdet/weights``. A ``.pth`` file name ending in ``-<hex>.pth`` (the torch hub
/ torchvision convention, e.g. ``resnet50-0676ba61.pth``) is checked against the SHA-256
prefix ``<hex>`` before it enters the cache. Downloads go to a temporary file in the cache
directory that is renamed into place only when complete, so an interrupted download never
leaves a truncated file behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger(__name__)

HASH_SUFFIX = re.compile(r"-([0-9a-f]{8,64})\.pth$")


def default_cache_dir() -> Path:
    return Path(os.environ.get("VISDET_CACHE", Path.home() / ".cache" / "visdet" / "weights"))


def is_url(path_or_url: str) -> bool:
    """A scheme of two or more letters (``file``, ``https``); ``C:\\...`` is a local path."""
    return len(urllib.parse.urlparse(str(path_or_url)).scheme) > 1


def cached_name(url: str) -> str:
    """``<12 hex digits of the URL's SHA-256>_<file name>``: two URLs with the same file name
    do not collide."""
    base = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name or "weights"
    return f"{hashlib.sha256(url.encode()).hexdigest()[:12]}_{base}"


def resolve_weights(path_or_url: str, key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """A local file holding the weights of ``path_or_url``; ``key`` (the config key, e.g.
    ``model.init_from``) names the source in errors."""
    if not is_url(path_or_url):
        path = Path(path_or_url).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{key}: weights file not found: {path_or_url}")
        return path
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache / cached_name(path_or_url)
    if target.is_file():
        log.info("%s: using the cached copy of %s (%s)", key, path_or_url, target)
        return target
    cache.mkdir(parents=True, exist_ok=True)
    _download(path_or_url, target, key)
    return target


def _download(url: str, target: Path, key: str) -> None:
    log.info("%s: fetching %s into %s", key, url, target.parent)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=60)  # noqa: S310 - user-given URL
            except (urllib.error.URLError, OSError, ValueError) as e:
                raise ConnectionError(
                    f"{key}: cannot fetch {url}: {e}. Without network access, download the "
                    "file elsewhere and pass its local path."
                ) from None
            with response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(
                    total=total, unit="B", unit_scale=True, desc=target.name, leave=False
                ) as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        expected = HASH_SUFFIX.search(target.name)
        if expected and not digest.hexdigest().startswith(expected.group(1)):
            raise ValueError(
                f"{key}: {url} is corrupt: its SHA-256 starts with "
                f"{digest.hexdigest()[: len(expected.group(1))]}, the file name says "
                f"{expected.group(1)}"
            )
        shutil.move(tmp, target)  # same directory: an atomic rename
    finally:
        tmp.unlink(missing_ok=True)
