"""Dataset files at fsspec URLs (``s3://``, ``gs://``, ``az://``, ``https://``, ``memory://``,
...), read through a local cache so that every reader (pycocotools, Pillow, the checks) sees
ordinary local files and applies the same validation as to a dataset on disk.

Plain paths and ``file://`` URLs are local: ``local_or_url`` gives them back as a ``Path``
and nothing is copied. A URL is fetched on first read (``RemoteCache.fetch``) into

    <cache_dir>/<sha256(url)[:24]>/<version>/<file name>

where ``version`` hashes what the filesystem says about the remote file (size, ETag / MD5,
modification or creation time, whichever it gives): a changed remote file gets a new version
folder and is fetched again; an unchanged one is read from the cache after one metadata call
(a HEAD request over HTTP) per process, and not at all for later reads in that process.
Older versions stay in the cache until its folder is deleted. A server that gives none of
these fields is fetched once and trusted afterwards.

Each file is downloaded to a temporary file in its version folder and renamed into place
(``os.replace``), so DataLoader workers and DDP ranks that fetch the same file at once each
write a whole copy and the last rename wins: readers never see a partial file.

Cache folder: ``cache_dir`` when given (the dataset configs set ``${paths.data_dir}/remote``),
else ``$VISDET_REMOTE_CACHE``, else ``~/.cache/visdet/remote``.

Errors, each one line naming the URL: ``RemoteDataError`` for an unknown protocol, a protocol
whose filesystem package is not installed (naming the package to pip install), or credentials
that are missing or refused (HTTP 401/403, ``PermissionError``, botocore / google-auth / azure
credential errors); ``FileNotFoundError`` for a file that is not there.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import fsspec
from fsspec.registry import known_implementations, registry

from visdet.io.atomic_write import atomic_path

ENV_VAR = "VISDET_REMOTE_CACHE"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "visdet" / "remote"
LOCAL_PROTOCOLS = ("file", "local")
FETCH_THREADS = 8
# what fsspec filesystems report about a file that changes when the file does
VERSION_FIELDS = (
    "size", "ETag", "etag", "Content-MD5", "md5Hash", "Last-Modified", "LastModified",
    "last_modified", "mtime", "updated", "created", "version_id",
)  # fmt: skip
# credential errors of the cloud SDKs, by class name (none of them is a dependency)
CREDENTIAL_ERRORS = (
    "NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError",
    "DefaultCredentialsError", "RefreshError", "ClientAuthenticationError",
)  # fmt: skip
EXAMPLES = "s3://, gs://, az://, https://, memory://"


class RemoteDataError(ConnectionError, ValueError):
    """A dataset URL cannot be read: unknown protocol, filesystem package not installed,
    credentials missing or refused. A ConnectionError (training stops with one line) and a
    ValueError (tools report it as bad input)."""


def protocol_of(path: str | os.PathLike) -> str | None:
    """The URL's protocol (``s3``, ``https``, ...; the first of a chained ``a::b://`` URL),
    or None for a plain path or a ``file://`` URL."""
    text = os.fspath(path)
    if not isinstance(text, str) or "://" not in text:
        return None
    protocol = text.split("::", 1)[0].split("://", 1)[0]
    return None if protocol in LOCAL_PROTOCOLS else protocol


def is_url(path) -> bool:
    """Whether ``path`` names a remote (non-local) fsspec location."""
    return isinstance(path, str | os.PathLike) and protocol_of(path) is not None


def local_or_url(path: str | os.PathLike) -> Path | str:
    """A ``Path`` for a plain path or ``file://`` URL (untouched, nothing copied), else the
    URL as a string."""
    if is_url(path):
        return os.fspath(path)
    text = os.fspath(path)
    for prefix in ("file://", "local://"):
        if text.startswith(prefix):
            return Path(text[len(prefix) :])
    return Path(text)


def join_url(base: str, relative: str) -> str:
    """``relative`` under the folder URL ``base`` (``relative`` as is when it is a URL)."""
    return relative if is_url(relative) else base.rstrip("/") + "/" + relative.lstrip("/")


def check_protocol(url: str, what: str = "dataset URL") -> None:
    """RemoteDataError when fsspec does not know ``url``'s protocol or its filesystem package
    is not installed (naming the package)."""
    if protocol_of(url) is None:
        return
    for part in url.split("::"):
        if "://" in part:
            _check_one(part.split("://", 1)[0], url, what)


def _check_one(protocol: str, url: str, what: str) -> None:
    if protocol in registry or protocol in LOCAL_PROTOCOLS:
        return
    known = known_implementations.get(protocol)
    if known is None:
        raise RemoteDataError(
            f"{what} {url}: unknown protocol {protocol}:// (expected a local path or an "
            f"fsspec URL such as {EXAMPLES})"
        )
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError:
        package = known["class"].split(".", 1)[0]
        raise RemoteDataError(
            f"{what} {url}: reading {protocol}:// needs the {package} package "
            f"(pip install {package})"
        ) from None


def _credential_problem(error: BaseException) -> str | None:
    """Why ``error`` (or an error it was raised from) means access was refused, or None."""
    seen = 0
    while error is not None and seen < 10:
        names = {c.__name__ for c in type(error).__mro__}
        status = getattr(error, "status", None) or getattr(error, "code", None)
        if names & set(CREDENTIAL_ERRORS):
            return f"credentials missing or invalid ({type(error).__name__})"
        if status in (401, 403):
            return f"access refused (HTTP {status}): credentials missing or not allowed"
        if isinstance(error, PermissionError):
            return "access refused (permission denied): credentials missing or not allowed"
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def remote_error(error: Exception, url: str, what: str) -> Exception:
    """The one-line error to raise for ``error``, raised by a filesystem reading ``url``:
    RemoteDataError for refused access or another failure, FileNotFoundError when the file
    is not there."""
    why = _credential_problem(error)
    if why is not None:
        return RemoteDataError(f"{what} {url}: {why}")
    cause = error.__cause__
    if isinstance(error, FileNotFoundError) and (
        cause is None
        or isinstance(cause, FileNotFoundError)
        or getattr(cause, "status", None) in (404, 410)
    ):
        return FileNotFoundError(f"{what} not found: {url}")
    shown = cause if isinstance(error, FileNotFoundError) else error
    detail = f"{type(shown).__name__}: {shown}".strip().rstrip(":")
    return RemoteDataError(f"{what} {url}: cannot read it ({detail})")


def _version(info: dict) -> str:
    fields = {k: str(info[k]) for k in VERSION_FIELDS if info.get(k) is not None}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    """``cache_dir``, else ``$VISDET_REMOTE_CACHE``, else ``~/.cache/visdet/remote``."""
    if cache_dir:
        return Path(cache_dir)
    env = os.environ.get(ENV_VAR, "")
    return Path(env) if env else DEFAULT_CACHE_DIR


class RemoteCache:
    """Local copies of remote files (see the module docstring). Picklable: DataLoader
    workers get the copies already fetched by the main process."""

    def __init__(self, cache_dir: str | os.PathLike | None = None) -> None:
        self.cache_dir = resolve_cache_dir(cache_dir)
        self._fetched: dict[str, Path] = {}  # url -> local copy, this process

    def fetch(self, url: str, what: str = "file") -> Path:
        """The local copy of ``url``: downloaded on first read, re-downloaded when the
        remote file changed. FileNotFoundError / RemoteDataError naming ``what`` and the URL."""
        done = self._fetched.get(url)
        if done is not None and done.is_file():
            return done
        check_protocol(url, what)
        try:
            fs, path = fsspec.core.url_to_fs(url)
            info = fs.info(path)
        except Exception as e:  # the remote filesystem's own errors (HTTP, SDK, network)
            raise remote_error(e, url, what) from None
        if info.get("type") == "directory":
            raise FileNotFoundError(f"{what} {url} is a folder, expected a file")
        folder = self.cache_dir / hashlib.sha256(url.encode()).hexdigest()[:24]
        local = folder / _version(info) / (path.rstrip("/").rsplit("/", 1)[-1] or "file")
        if not local.is_file():
            _download(fs, path, local, info.get("size"), url, what)
        self._fetched[url] = local
        return local

    def fetch_many(self, urls: list[str], what: str = "file") -> dict[str, Path]:
        """``fetch`` of every URL, FETCH_THREADS at a time: ``{url: local copy}`` of those
        found (the missing ones are left out, for the caller to report); other errors raise."""

        def one(url: str) -> Path | None:
            try:
                return self.fetch(url, what)
            except FileNotFoundError:
                return None

        with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
            paths = list(pool.map(one, urls))
        return {u: p for u, p in zip(urls, paths, strict=True) if p is not None}


def _download(fs, path: str, local: Path, size: int | None, url: str, what: str) -> None:
    """``path`` of ``fs`` into ``local``, atomically (visdet.io.atomic_write.atomic_path)."""
    with atomic_path(local) as tmp:
        try:
            fs.get_file(path, str(tmp))
        except Exception as e:
            raise remote_error(e, url, what) from None
        got = tmp.stat().st_size
        if size is not None and got != int(size):
            raise RemoteDataError(f"{what} {url}: download incomplete ({got} of {size} bytes)")


@dataclass(frozen=True)
class FetchedFile:
    """A remote file and its local copy: opens as the copy (``os.fspath``), prints as the
    URL, so messages name what the user configured."""

    url: str
    local: Path

    def __fspath__(self) -> str:
        return str(self.local)

    def __str__(self) -> str:
        return self.url

    @property
    def name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


class RemoteFolder:
    """A folder URL whose files (e.g. a split's images) are fetched one by one on first
    read. Prints as its URL."""

    def __init__(self, url: str, cache: RemoteCache, what: str = "image") -> None:
        check_protocol(url, "image folder")
        self.url, self.cache, self.what = url.rstrip("/"), cache, what

    def url_of(self, name: str) -> str:
        return join_url(self.url, name)

    def fetch(self, name: str) -> Path:
        """The local copy of the file ``name`` (FileNotFoundError naming its URL)."""
        return self.cache.fetch(self.url_of(name), self.what)

    def fetch_many(self, names: list[str]) -> dict[str, Path]:
        """``{name: local copy}`` of the files found, fetched in threads."""
        got = self.cache.fetch_many([self.url_of(n) for n in names], self.what)
        return {n: got[self.url_of(n)] for n in names if self.url_of(n) in got}

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemoteFolder({self.url!r})"


def open_file(location: str | os.PathLike, cache: RemoteCache, what: str) -> Path | FetchedFile:
    """A local path as a ``Path``; a URL fetched into ``cache`` as a ``FetchedFile``."""
    if is_url(str(location)):
        return FetchedFile(str(location), cache.fetch(str(location), what))
    return Path(location)


def open_folder(location: str | os.PathLike, cache: RemoteCache, what: str) -> Path | RemoteFolder:
    """A local folder as a ``Path``; a URL as a ``RemoteFolder`` fetching ``what`` files."""
    return RemoteFolder(str(location), cache, what) if is_url(str(location)) else Path(location)
