import csv

import numpy as np
import pytest

from visdet.analysis.per_class_table import format_per_class_table, write_per_class_csv

ROWS = [
    {"category_id": 1, "name": "person", "AP": 0.5123456789, "AP50": 0.75, "AR100": 0.6,
     "num_gt": 10, "num_det": 12},
    {"category_id": 7, "name": 'big, "odd" truck', "AP": -1.0, "AP50": -1, "AR100": -1.0,
     "num_gt": 0, "num_det": np.int64(3)},
    {"category_id": np.int32(9), "name": "cat", "AP": np.float64(0.0), "AP50": 1.0,
     "AR100": 0.125, "num_gt": 2, "num_det": 0},
]  # fmt: skip


def test_csv_columns_and_values(tmp_path):
    path = tmp_path / "out" / "per_class.csv"
    write_per_class_csv(ROWS, path)
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["category_id", "name", "AP", "AP50", "AR100", "num_gt", "num_det"]
    assert rows[1] == ["1", "person", "0.512346", "0.750000", "0.600000", "10", "12"]
    assert rows[2] == ["7", 'big, "odd" truck', "-1", "-1", "-1", "0", "3"]
    assert rows[3] == ["9", "cat", "0.000000", "1.000000", "0.125000", "2", "0"]


def test_empty_csv_has_the_header(tmp_path):
    path = tmp_path / "per_class.csv"
    write_per_class_csv([], path)
    assert path.read_text() == "category_id,name,AP,AP50,AR100,num_gt,num_det\n"


def test_text_table():
    lines = format_per_class_table(ROWS).splitlines()
    assert lines[0].split() == ["class", "AP", "AP50", "AR100", "gt", "dets"]
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].split() == ["person", "0.512", "0.750", "0.600", "10", "12"]
    assert lines[3].split()[-5:] == ["n/a", "n/a", "n/a", "0", "3"]
    assert lines[3].startswith('big, "odd" truck')
    assert len({len(line) for line in lines[:2]}) == 1  # header and rule equally wide
    ends = {len(line) for line in lines[2:]}
    assert len(ends) == 1  # numbers right-aligned: every row ends in the same column
    assert format_per_class_table([]).splitlines()[0].split()[0] == "class"


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"AP": None}, TypeError, r"per_class\[0\]\['AP'\]: expected a number"),
        ({"num_gt": 1.5}, TypeError, r"per_class\[0\]\['num_gt'\]: expected an int"),
        ({"AR100": True}, TypeError, "expected a number"),
    ],
)
def test_bad_rows_are_named(tmp_path, change, error, match):
    with pytest.raises(error, match=match):
        write_per_class_csv([{**ROWS[0], **change}], tmp_path / "x.csv")
    with pytest.raises(error, match=match):
        format_per_class_table([{**ROWS[0], **change}])


def test_missing_key_is_named(tmp_path):
    row = {k: v for k, v in ROWS[0].items() if k != "AP50"}
    with pytest.raises(ValueError, match=r"per_class\[1\]: missing key\(s\) \['AP50'\]"):
        write_per_class_csv([ROWS[0], row], tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()
