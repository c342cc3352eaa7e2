"""FLOPs against closed-form counts, timing statistics against statistics, CPU memory peak."""

import statistics

import pytest
import torch
from torch import nn

from visdet.bench.measure import PartTimes, count_flops, peak_memory_mb, summarize, time_ms


@pytest.mark.parametrize("bias", [False, True])
def test_conv_flops_closed_form(bias):
    b, cin, cout, h, w, k, stride, pad = 2, 3, 8, 17, 23, 3, 2, 1
    conv = nn.Conv2d(cin, cout, k, stride, pad, bias=bias)
    x = torch.rand(b, cin, h, w)
    hout, wout = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    macs = b * cout * hout * wout * cin * k * k  # one multiply-add per weight per output
    assert count_flops(lambda: conv(x)) == 2 * macs


def test_grouped_conv_and_linear_flops_closed_form():
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=False)
    x = torch.rand(1, 8, 5, 5)
    assert count_flops(lambda: conv(x)) == 2 * (8 * 5 * 5 * (8 // 4) * 9)
    linear = nn.Linear(20, 7)
    y = torch.rand(5, 20)
    assert count_flops(lambda: linear(y)) == 2 * 5 * 20 * 7
    assert count_flops(lambda: torch.relu(y)) == 0  # no formula: elementwise ops count 0


def test_summarize_matches_statistics():
    times = [5.0, 1.0, 3.0, 2.0, 4.0, 100.0]
    s = summarize(times)
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
    assert s == {"median": 3.5, "q1": q1, "q3": q3, "iqr": q3 - q1, "repeats": 6}
    assert summarize([7.0]) == {"median": 7.0, "q1": 7.0, "q3": 7.0, "iqr": 0.0, "repeats": 1}
    with pytest.raises(ValueError, match="no times"):
        summarize([])


def test_time_ms_counts_calls():
    calls = []
    stats = time_ms(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6 and stats["repeats"] == 4 and stats["median"] >= 0
    with pytest.raises(ValueError, match="repeats"):
        time_ms(lambda: None, repeats=0)


def test_part_times_one_entry_per_call_and_hooks_removed():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    x = torch.rand(2, 4)
    with PartTimes({"linear": model[0], "relu": model[1]}) as parts:
        time_ms(parts.wrap(lambda: model(x)), repeats=3, warmup=1)
    assert len(parts.calls) == 4 and set(parts.medians(3)) == {"linear", "relu"}
    assert all(v >= 0 for call in parts.calls for v in call.values())
    assert not model[0]._forward_hooks and not model[0]._forward_pre_hooks
    fn = lambda: None  # noqa: E731
    with PartTimes({}) as nothing:
        assert nothing.wrap(fn) is fn


def test_cpu_peak_memory_of_known_allocations():
    mb, kind = peak_memory_mb(lambda: torch.ones(1024, 1024))  # 4 MiB
    assert kind == "cpu_tensor_peak"
    assert mb == pytest.approx(4.0, rel=0.01)

    def two_live_then_free():
        a = torch.ones(1024, 1024)
        b = torch.ones(1024, 1024)
        del a, b
        return torch.ones(256, 1024)  # 1 MiB after 8 MiB were live together

    mb, _ = peak_memory_mb(two_live_then_free)
    assert mb == pytest.approx(8.0, rel=0.01)


def test_views_are_not_counted_twice_and_backward_is_seen():
    def view_of():
        x = torch.ones(1024, 1024)
        return x.view(-1), x.t()

    assert peak_memory_mb(view_of)[0] == pytest.approx(4.0, rel=0.01)
    w = torch.ones(1024, 1024, requires_grad=True)  # 4 MiB weight, its gradient is new

    def backward():
        y = w * 2  # 4 MiB, kept alive during backward
        y.sum().backward()  # the gradient 2 * ones becomes w.grad: another 4 MiB
        return y

    assert peak_memory_mb(backward)[0] == pytest.approx(8.0, rel=0.01)
