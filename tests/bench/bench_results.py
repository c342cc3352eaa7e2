"""Hand-made benchmark results for the compare and report tests."""

from visdet.bench.schema import RESULT_FIELDS


def stats(median: float, iqr: float = 0.4) -> dict:
    return {
        "median": median,
        "q1": median - iqr / 2,
        "q3": median + iqr / 2,
        "iqr": iqr,
        "repeats": 5,
    }


def make_result(
    component="backbone/resnet18",
    case="b1_3x64x64",
    fwd=10.0,
    fb=None,
    flops=None,
    batch_size=1,
    *,
    impl="visdet",
    iqr=0.4,
    mem=None,
    ips=None,
    extra=None,
    group=None,
):
    result = {
        "component": component,
        "group": group or component.split("/")[0],
        "impl": impl,
        "case": case,
        "batch_size": batch_size,
        "input": "3x64x64",
        "params": 1000,
        "flops": flops,
        "macs": None if flops is None else flops / 2,
        "forward_ms": None if fwd is None else stats(fwd, iqr),
        "forward_backward_ms": None if fb is None else stats(fb, iqr),
        "peak_memory_mb": mem,
        "memory_kind": "cpu_tensor_peak",
        "throughput": None if ips is None else {"images_per_s": ips},
        "extra": extra or {},
    }
    assert set(result) == set(RESULT_FIELDS)
    return result
