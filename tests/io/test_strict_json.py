import json
import math

from visdet.io.strict_json import dumps_strict


def test_non_finite_values_become_null_and_the_text_is_strict_json():
    text = dumps_strict({"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": "nan"})
    assert "NaN" not in text and "Infinity" not in text
    parsed = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert parsed == {"a": None, "b": [1.0, None, {"c": None}], "d": "nan"}
