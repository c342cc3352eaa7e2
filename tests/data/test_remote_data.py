"""Data from anywhere: COCO datasets at fsspec URLs (memory:// and a local HTTP server on
127.0.0.1) read through the local cache (visdet.data.remote) with the same checks as local
files; the cache reused and refreshed; one-line errors for unknown protocols, missing
filesystem packages, refused credentials and missing files; a tiny training run on
memory://."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import fsspec
import pytest
import torch
from fsspec.implementations.memory import MemoryFileSystem
from fsspec.registry import _registry
from PIL import Image

from visdet.data import CocoDetection, CocoSource, VocSource, YoloSource
from visdet.data.check import check_dataset
from visdet.data.coco_checks import DatasetError
from visdet.data.remote import (
    RemoteCache,
    RemoteDataError,
    RemoteFolder,
    check_protocol,
    local_or_url,
)

SIZES = {"train": [(40, 30), (32, 32), (24, 36)], "val": [(30, 20), (36, 28)]}


def make_coco(root: Path) -> Path:
    """A tiny COCO dataset under ``root``: annotations/{train,val}.json and {train,val}/ PNGs,
    one box per image (a filled rectangle drawn where the box is)."""
    (root / "annotations").mkdir(parents=True)
    for split, sizes in SIZES.items():
        (root / split).mkdir()
        images, anns = [], []
        for i, (w, h) in enumerate(sizes, start=1):
            im = Image.new("RGB", (w, h), (20, 20, 20))
            im.paste((200, 50, 50), (4, 5, 4 + w // 2, 5 + h // 2))
            im.save(root / split / f"{i}.png")
            images.append({"id": i, "file_name": f"{i}.png", "width": w, "height": h})
            anns.append({"id": i, "image_id": i, "category_id": 7, "iscrowd": 0,
                         "bbox": [4, 5, w // 2, h // 2], "area": (w // 2) * (h // 2)})  # fmt: skip
        coco = {"images": images, "annotations": anns, "categories": [{"id": 7, "name": "box"}]}
        (root / "annotations" / f"{split}.json").write_text(json.dumps(coco))
    return root


def source(root: str, cache: Path) -> CocoSource:
    return CocoSource(root, "annotations/train.json", "train", "annotations/val.json", "val",
                      cache_dir=str(cache))  # fmt: skip


class Server:
    """``python -m http.server`` on 127.0.0.1 in a thread, serving ``folder``; counts requests
    per (method, path); paths under /private/ answer 401, under /forbidden/ 403."""

    def __init__(self, folder: Path) -> None:
        self.requests: Counter = Counter()
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def _refused(self) -> bool:
                server.requests[(self.command, self.path)] += 1
                for prefix, status in (("/private/", 401), ("/forbidden/", 403)):
                    if self.path.startswith(prefix):
                        self.send_error(status)
                        return True
                return False

            def do_GET(self):
                if not self._refused():
                    super().do_GET()

            def do_HEAD(self):
                if not self._refused():
                    super().do_HEAD()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=folder))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def count(self, method: str) -> int:
        return sum(n for (m, _), n in self.requests.items() if m == method)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http(tmp_path):
    server = Server(make_coco(tmp_path / "served" / "coco").parent)
    yield server
    server.close()


@pytest.fixture
def memfs(tmp_path):
    """memory://coco holding the tiny dataset; the in-memory filesystem emptied after."""
    fs = fsspec.filesystem("memory")
    local = make_coco(tmp_path / "coco_src")
    fs.put(str(local), "/coco", recursive=True)
    yield fs
    MemoryFileSystem.store.clear()
    MemoryFileSystem.pseudo_dirs[:] = [""]


def dataset(src: CocoSource, split: str = "train") -> CocoDetection:
    s = src.splits()[split]
    return CocoDetection(s.ann_file, s.image_dir, cache_dir=None)


def test_local_paths_and_file_urls_are_read_in_place(tmp_path):
    root = make_coco(tmp_path / "coco")
    assert local_or_url(str(root)) == root
    assert local_or_url(f"file://{root}") == root
    splits = source(f"file://{root}", tmp_path / "cache").splits()
    assert splits["train"].ann_file == root / "annotations" / "train.json"
    assert splits["train"].image_dir == root / "train"
    assert not (tmp_path / "cache").exists()  # nothing copied


def test_memory_dataset_matches_the_same_files_on_disk(memfs, tmp_path):
    remote = dataset(source("memory://coco", tmp_path / "cache"))
    local = dataset(source(str(tmp_path / "coco_src"), tmp_path / "unused"))
    assert len(remote) == len(local) == 3
    assert remote.class_names == ["box"]
    for i in range(len(local)):
        (im_r, t_r), (im_l, t_l) = remote[i], local[i]
        assert torch.equal(im_r, im_l)
        assert torch.equal(t_r["boxes"], t_l["boxes"]) and t_r["image_id"] == t_l["image_id"]
    assert str(remote.ann_file) == "memory://coco/annotations/train.json"


def test_http_cache_is_reused_without_downloading_again(http, tmp_path):
    url = f"{http.url}/coco"
    ds = dataset(source(url, tmp_path / "cache"))
    assert http.count("GET") == 2 + 3  # each annotation file once, each image once
    before = sum(http.requests.values())
    for i in range(len(ds)):
        ds[i]
    ds2 = CocoDetection(ds.ann_file, ds.image_dir, cache_dir=None)  # same cache object
    assert sum(http.requests.values()) == before  # nothing asked of the server
    dataset(source(url, tmp_path / "cache"))  # a new process's view: metadata only
    assert http.count("GET") == 5 and len(ds2) == 3
    cached = sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert cached == ["1.png", "2.png", "3.png", "train.json", "val.json"]


def test_changed_remote_files_are_fetched_again(http, memfs, tmp_path):
    served = tmp_path / "served" / "coco" / "annotations" / "train.json"
    coco = json.loads(served.read_text())
    dataset(source(f"{http.url}/coco", tmp_path / "cache"))
    coco["categories"][0]["name"] = "a longer name"  # a new size
    served.write_text(json.dumps(coco))
    assert dataset(source(f"{http.url}/coco", tmp_path / "cache")).class_names == ["a longer name"]
    assert http.count("GET") == 2 + 3 + 1  # only the changed file again

    memfs.pipe_file("/coco/annotations/train.json", served.read_bytes())
    assert dataset(source("memory://coco", tmp_path / "c2")).class_names == ["a longer name"]


def test_bad_remote_json_is_refused_like_a_local_file(memfs, tmp_path):
    memfs.pipe_file("/coco/annotations/train.json", b"{not json")
    with pytest.raises(DatasetError, match=r"annotation file memory://coco/annotations/train\.json"
                       r", fetched as .*train\.json is not valid JSON"):  # fmt: skip
        dataset(source("memory://coco", tmp_path / "cache"))
    memfs.pipe_file("/coco/annotations/train.json", b'{"images": []}')
    with pytest.raises(DatasetError, match=r"memory://coco/annotations/train\.json is not COCO"):
        dataset(source("memory://coco", tmp_path / "cache"))


def test_missing_remote_files_are_named_by_url(http, tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"annotation file of the train split not found: "
                       rf"{http.url}/nope/annotations/train\.json$"):  # fmt: skip
        source(f"{http.url}/nope", tmp_path / "cache").prepare()
    (tmp_path / "served" / "coco" / "train" / "2.png").unlink()
    with pytest.raises(FileNotFoundError, match=rf"1 image files listed in {http.url}/coco/"
                       rf"annotations/train\.json are missing from {http.url}/coco/train, "
                       "first: 2.png"):  # fmt: skip
        dataset(source(f"{http.url}/coco", tmp_path / "cache"))


def test_wrong_image_size_is_refused_like_a_local_file(memfs, tmp_path):
    Image.new("RGB", (5, 5)).save(tmp_path / "small.png")
    memfs.put_file(str(tmp_path / "small.png"), "/coco/train/1.png")
    with pytest.raises(DatasetError, match=r"memory://coco/train/1\.png is 5x5 but the "
                       "annotation says 40x30"):  # fmt: skip
        dataset(source("memory://coco", tmp_path / "cache"))


@pytest.mark.parametrize(("prefix", "status"), [("private", 401), ("forbidden", 403)])
def test_refused_http_access_is_one_line_naming_the_url(http, tmp_path, prefix, status):
    url = f"{http.url}/{prefix}/coco"
    with pytest.raises(RemoteDataError) as e:
        source(url, tmp_path / "cache").prepare()
    assert str(e.value) == (
        f"annotation file of the train split {url}/annotations/train.json: access refused "
        f"(HTTP {status}): credentials missing or not allowed"
    )


class NoCredentialsError(Exception):  # named as botocore's: matched by class name
    pass


class RefusingFS(fsspec.AbstractFileSystem):
    """A filesystem whose every read fails the way a cloud SDK without credentials does."""

    protocol = "visdetrefusing"
    error: Exception = NoCredentialsError("Unable to locate credentials")

    def info(self, path, **kwargs):
        raise self.error


@pytest.fixture
def refusing():
    fsspec.register_implementation("visdetrefusing", RefusingFS, clobber=True)
    yield RefusingFS
    _registry.pop("visdetrefusing", None)
    RefusingFS.clear_instance_cache()


@pytest.mark.parametrize(
    ("error", "why"),
    [
        (NoCredentialsError("Unable to locate credentials"),
         r"credentials missing or invalid \(NoCredentialsError\)"),
        (PermissionError("Access Denied"), r"access refused \(permission denied\)"),
    ],
)  # fmt: skip
def test_sdk_credential_errors_are_one_line(refusing, tmp_path, error, why):
    refusing.error = error
    url = "visdetrefusing://bucket/coco/annotations/train.json"
    want = rf"^annotation file of the train split {url}: {why}"
    with pytest.raises(RemoteDataError, match=want):
        source("visdetrefusing://bucket/coco", tmp_path / "cache").prepare()


def test_unknown_protocol_is_named():
    want = (
        r"^data\.source\.root nosuchfs://x/coco: unknown protocol nosuchfs:// \(expected a "
        r"local path or an fsspec URL such as s3://, gs://"
    )
    with pytest.raises(RemoteDataError, match=want):
        CocoSource("nosuchfs://x/coco").prepare()


@pytest.mark.parametrize(("url", "package"), [("s3://bucket/coco", "s3fs"),
                                              ("gs://bucket/coco", "gcsfs"),
                                              ("az://container/coco", "adlfs")])  # fmt: skip
def test_missing_filesystem_package_is_named(url, package):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed")
    with pytest.raises(RemoteDataError, match=rf"needs the {package} package \(pip install "
                       rf"{package}\)$"):  # fmt: skip
        check_protocol(url, "data.source.root")


def test_yolo_and_voc_refuse_urls_with_a_pointer_to_coco():
    with pytest.raises(RemoteDataError, match=r"data\.source\.root s3://b/voc: Pascal VOC .*"
                       "data=coco"):  # fmt: skip
        VocSource("s3://b/voc")
    with pytest.raises(RemoteDataError, match=r"data\.source\.data_yaml https://h/d\.yaml"):
        YoloSource("https://h/d.yaml")


def test_concurrent_fetches_of_one_file_are_harmless(http, tmp_path):
    url = f"{http.url}/coco/annotations/train.json"
    with ThreadPoolExecutor(8) as pool:  # separate caches: as separate workers or ranks
        paths = list(pool.map(lambda _: RemoteCache(tmp_path / "cache").fetch(url), range(16)))
    assert len(set(paths)) == 1
    want = (tmp_path / "served" / "coco" / "annotations" / "train.json").read_bytes()
    assert paths[0].read_bytes() == want
    assert [p.name for p in paths[0].parent.iterdir()] == ["train.json"]  # no temporaries


def test_data_check_reads_a_remote_folder(http, tmp_path):
    (tmp_path / "served" / "coco" / "val" / "1.png").unlink()
    src = source(f"{http.url}/coco", tmp_path / "cache")
    split = src.splits()["val"]
    coco = json.loads(Path(split.ann_file).read_text())
    report = check_dataset(coco, split.image_dir, "val", workers=2)
    assert report["image_dir"] == f"{http.url}/coco/val"
    assert report["counts"]["images"] == 2
    assert report["problems"]["missing_file"]["count"] == 1
    assert report["problems"]["missing_file"]["examples"] == ["1.png: file not found"]
    assert isinstance(split.image_dir, RemoteFolder)


def run_visdet(*args: str) -> None:
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from visdet.cli import main as visdet_main

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", list(sys.argv))
        visdet_main(list(args))


def coco_run_overrides(tmp_path, root: str, *extra: str) -> list[str]:
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from tiny_runs import tiny_overrides

    shapes_only = ("data.source.", "+data.source.")
    tiny = [o for o in tiny_overrides(tmp_path) if not o.startswith(shapes_only)]
    return [*tiny, "data=coco", f"data.source.root={root}",
            "data.source.train_ann=instances_train.json", "data.source.train_images=train",
            "data.source.val_ann=instances_val.json", "data.source.val_images=val",
            "data.batch_size=2", "data.pin_memory=false", "data.group_by_aspect_ratio=false",
            "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "test=false",
            f"hydra.run.dir={tmp_path / 'run'}", *extra]  # fmt: skip


def test_missing_s3fs_stops_training_with_one_line(tmp_path):
    if importlib.util.find_spec("s3fs") is not None:
        pytest.skip("s3fs is installed")
    with pytest.raises(SystemExit) as e:
        run_visdet("train", *coco_run_overrides(tmp_path, "s3://bucket/coco"))
    assert str(e.value) == (
        "training stopped: data.source.root s3://bucket/coco: reading s3:// needs the s3fs "
        "package (pip install s3fs)"
    )


def test_tiny_training_run_on_a_memory_url(tmp_path):
    from visdet.data.shapes import ShapesSettings, ensure_shapes_dataset

    shapes = ensure_shapes_dataset(tmp_path / "gen", ShapesSettings(8, 4, 64, 3, 12, 40, 0.0, 0))
    fs = fsspec.filesystem("memory")
    try:
        fs.put(str(shapes), "/shapes", recursive=True)
        run_visdet("train", *coco_run_overrides(tmp_path, "memory://shapes"))
        assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
        metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
        assert "val/mAP" in metrics
        cached = list((tmp_path / "data" / "remote").rglob("*.png"))
        assert len(cached) == 8 + 4  # every image fetched once, into the configured cache
    finally:
        MemoryFileSystem.store.clear()
        MemoryFileSystem.pseudo_dirs[:] = [""]


def test_dataloader_workers_read_the_cached_copies(http, tmp_path):
    ds = dataset(source(f"{http.url}/coco", tmp_path / "cache"))
    before = sum(http.requests.values())
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    ids = sorted(target["image_id"] for _, target in loader)
    assert ids == [1, 2, 3]
    assert sum(http.requests.values()) == before  # workers asked the server nothing
