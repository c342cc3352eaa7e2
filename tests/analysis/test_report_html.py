import base64
import io
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from visdet.analysis.gallery import GalleryImage, gallery_entries
from visdet.analysis.report_html import write_report_html

NASTY = '<b>&"x"'
NASTY_ESCAPED = "&lt;b&gt;&amp;&quot;x&quot;"
STATS = {"AP": 0.4321, "AP50": 0.6, "AP75": 0.5, "APs": -1.0, "APm": 0.3, "APl": 0.45,
         "AR1": 0.2, "AR10": 0.4, "AR100": 0.5, "ARs": -1.0, "ARm": 0.35, "ARl": 0.55}  # fmt: skip
PER_CLASS = [
    {"category_id": 1, "name": NASTY, "AP": 0.5, "AP50": 0.7, "AR100": 0.6, "num_gt": 4,
     "num_det": 6},
    {"category_id": 3, "name": "dog", "AP": -1.0, "AP50": -1.0, "AR100": -1.0, "num_gt": 0,
     "num_det": 2},
]  # fmt: skip
TIDE = {
    "AP": 0.4321,
    "dAP": {"cls": 0.02, "loc": 0.08, "both": 0.0, "dupe": 0.01, "bkg": 0.04, "miss": 0.06},
    "counts": {"cls": 3, "loc": 9, "both": 0, "dupe": 1, "bkg": 5, "miss": 7},
    "per_image_errors": {1: 4},
}


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.srcs, self.hrefs, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if "src" in attrs:
            self.srcs.append(attrs["src"])
        if "href" in attrs:
            self.hrefs.append(attrs["href"])

    def handle_data(self, data):
        self.text.append(data)


def _png(path, size=(80, 60), colour="red"):
    Image.new("RGB", size, colour).save(path, format="PNG")
    return path


def _gallery():
    item = GalleryImage(
        image=Image.new("RGB", (200, 150), "white"),
        file_name='img<1>&"q".jpg',
        gt_boxes=[[10, 10, 90, 90]],
        gt_labels=[0],
        gt_names=[NASTY],
        det_boxes=[[12, 8, 95, 92]],
        det_labels=[0],
        det_names=[NASTY],
        det_scores=[0.8],
        errors=4,
    )
    return gallery_entries([item])


def _decode_uri(uri: str) -> Image.Image:
    header, data = uri.split(",", 1)
    assert header in ("data:image/png;base64", "data:image/jpeg;base64")
    im = Image.open(io.BytesIO(base64.b64decode(data)))
    im.load()
    return im


def test_report_is_self_contained_and_escaped(tmp_path):
    plots = {"PR curves": _png(tmp_path / "pr.png"), NASTY: _png(tmp_path / "cm.png", (30, 20))}
    jpeg = tmp_path / "photo.jpg"
    Image.new("RGB", (40, 30), "blue").save(jpeg, format="JPEG")
    plots["photo"] = jpeg
    path = tmp_path / "report" / "index.html"
    notes = ["scored 10 images", NASTY]
    write_report_html(path, f"eval {NASTY}", STATS, PER_CLASS, TIDE, plots, _gallery(), notes)
    text = path.read_text(encoding="utf-8")

    assert text.startswith("<!DOCTYPE html>")
    assert NASTY not in text and 'img<1>&"q".jpg' not in text
    assert NASTY_ESCAPED in text and "img&lt;1&gt;&amp;&quot;q&quot;.jpg" in text
    assert not re.search(r"https?://", text)
    assert "<script" not in text.lower() and "<link" not in text.lower()

    parser = _Collector()
    parser.feed(text)
    assert parser.hrefs == []
    assert len(parser.srcs) == 3 + 2  # three plots, one gallery image with two panels
    assert all(src.startswith("data:image/") for src in parser.srcs)
    assert text.count("data:image/png;base64,") == 2
    sizes = [_decode_uri(src).size for src in parser.srcs]
    assert sizes[:3] == [(80, 60), (30, 20), (40, 30)]
    assert sizes[3] == sizes[4] == (200, 150)
    visible = " ".join(parser.text)
    assert NASTY in visible  # the browser shows the name as written
    assert "0.432" in visible and "n/a" in visible
    for word in ("Summary", "Per class", "TIDE", "PR curves", "most errors", "scored 10 images"):
        assert word in visible
    widths = [int(w) for w in re.findall(r'class="bar" style="width:(\d+)px"', text)]
    assert widths == [round(240 * v / 0.08) for v in TIDE["dAP"].values()]


def test_report_without_tide_or_gallery(tmp_path):
    path = tmp_path / "r.html"
    write_report_html(path, "t", {"AP": 0.1}, [], None, {}, None)
    text = path.read_text()
    assert "TIDE" not in text and "most errors" not in text and "No classes" in text
    write_report_html(path, "t", {}, PER_CLASS, TIDE, {}, [])
    assert "No image has an error" in path.read_text()


def test_missing_plot_leaves_the_previous_report(tmp_path):
    path = tmp_path / "r.html"
    path.write_text("old")
    with pytest.raises(FileNotFoundError, match=r"plots\['PR'\]: no image file"):
        write_report_html(path, "t", STATS, PER_CLASS, None, {"PR": tmp_path / "no.png"}, None)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="expected a PNG or JPEG image"):
        write_report_html(path, "t", STATS, PER_CLASS, None, {"x": tmp_path / "bad.png"}, None)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.png", "r.html"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"stats": {"AP": "high"}}, TypeError, r"stats\['AP'\]: expected a number"),
        ({"tide": {"dAP": {"cls": 0.1}}}, ValueError, r"tide\['counts'\]: expected a dict"),
        ({"gallery": [{"file_name": "a"}]}, ValueError, r"gallery\[0\]: missing key\(s\)"),
        ({"per_class": [{"name": "x"}]}, ValueError, r"per_class\[0\]: missing key"),
    ],
)
def test_bad_input_is_named(tmp_path, kwargs, error, match):
    args = dict(title="t", stats=STATS, per_class=PER_CLASS, tide=TIDE, plots={}, gallery=None)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        write_report_html(tmp_path / "r.html", **args)
    assert not (tmp_path / "r.html").exists()


def test_gallery_entries_from_numpy_and_many_images(tmp_path):
    rng = np.random.default_rng(0)
    items = [
        GalleryImage(
            image=Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)),
            file_name=f"{i}.jpg",
            gt_boxes=np.array([[5.0, 5.0, 40.0, 30.0]]),
            gt_labels=np.array([i]),
            gt_names=[f"c{i}"],
            det_boxes=np.zeros((0, 4)),
            det_labels=np.zeros(0, dtype=np.int64),
            det_names=[],
            det_scores=np.zeros(0),
            errors=i + 1,
        )
        for i in range(3)
    ]
    path = tmp_path / "r.html"
    write_report_html(path, "t", STATS, PER_CLASS, TIDE, {}, gallery_entries(items))
    text = path.read_text()
    assert text.count("data:image/jpeg;base64,") == 6
    assert "<h3>0.jpg: 1 error</h3>" in text and "<h3>2.jpg: 3 errors</h3>" in text
