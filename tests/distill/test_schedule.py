import pytest

from yolocompress.distill.schedule import KDSchedule
from yolocompress.core.errors import ConfigError

F = 0.01


@pytest.mark.parametrize("kind,start,middle,end", [
    ("constant", 1.0, 1.0, 1.0),
    ("linear", 1.0, 1 - (1 - F) / 2, F),
    ("cosine", 1.0, F + (1 - F) / 2, F),
])
def test_values(kind, start, middle, end):
    s = KDSchedule(kind, total_iters=100)
    assert s(0) == pytest.approx(start)
    assert s(50) == pytest.approx(middle)
    assert s(100) == pytest.approx(end)
    assert s(500) == pytest.approx(end)  # held after the end


def test_shapes_between_points():
    lin, cos = KDSchedule("linear", 100, final_ratio=0.0), KDSchedule("cosine", 100, final_ratio=0.0)
    assert lin(25) == pytest.approx(0.75)
    assert cos(25) == pytest.approx((1 + 2 ** -0.5) / 2)  # cosine stays higher early, lower late
    assert cos(25) > lin(25) and cos(75) < lin(75)
    values = [cos(i) for i in range(101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("kind", ["constant", "linear", "cosine"])
def test_stop_iter(kind):
    s = KDSchedule(kind, total_iters=100, stop_iter=30)
    assert s(29) > 0 and s(30) == 0.0 and s(99) == 0.0
    assert KDSchedule(kind, 100, stop_iter=0)(0) == 0.0


@pytest.mark.parametrize("kwargs,match", [
    (dict(kind="step", total_iters=10), "unknown distillation schedule 'step'"),
    (dict(kind="linear", total_iters=0), "total_iters"),
    (dict(kind="linear", total_iters=10, final_ratio=-0.1), "final_ratio"),
    (dict(kind="linear", total_iters=10, stop_iter=-1), "stop_iter"),
])
def test_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        KDSchedule(**kwargs)
