"""Figure 2's tracking (cu.unlearners.common.ForgetCurve): what a point records, `every`, and that the
bookkeeping stays out of the method's seconds."""
import math
import time

import pytest
import torch

from cu import unlearners as U
from cu.data import class_split
from cu.unlearners.common import ForgetCurve, Stopwatch


def test_every_k_records_the_first_call_and_each_kth_after_it_with_seconds_steps_and_retained(data, original):
    split = class_split(data, 5)
    clock = Stopwatch()
    curve = ForgetCurve(data, split.forget, 32, 0, clock, retain=split.test_retain, every=3)
    for _ in range(7):
        curve(original)
    assert curve.steps == [1, 4, 7] and len(curve.points) == len(curve.retained) == len(curve.seconds) == 3
    assert curve.seconds == sorted(curve.seconds)
    # the Original knows class 5 and the other classes: both accuracies high, the same model each time
    assert min(curve.points) > 0.8 and min(curve.retained) > 0.8 and len(set(curve.retained)) == 1
    extra = curve.extra()
    assert extra["curve_steps"] == [1, 4, 7] and extra["curve_every"] == 3 and len(extra["curve_retained"]) == 3


def test_tracking_is_not_counted_in_the_method_seconds(data, original):
    split = class_split(data, 5)
    clock = Stopwatch()

    def slow(model, d, idx):
        time.sleep(0.05)
        return 0.5

    curve = ForgetCurve(data, split.forget, 8, 0, clock, measure=slow)
    for _ in range(4):
        curve(original)
    assert clock.stop() < 0.05  # four 50 ms measurements, none of them on the clock
    assert "curve_retained" not in curve.extra()  # no retain set given: no retained series


def test_off_and_bad_every():
    clock = Stopwatch()
    with pytest.raises(ValueError, match="track_every=0"):
        ForgetCurve(None, torch.arange(3), 0, 0, clock, every=0)


def test_a_method_records_retained_accuracy_beside_its_forget_curve(data, original):
    from cu.training import accuracy
    from cu.unlearners.common import tracking_subset

    split = class_split(data, 5)
    model, rec = U.run("contrastive", original, data, split, lr=1e-2, track_size=64, track_every=1)
    n = len(rec.curve)
    assert n >= 2 and len(rec.extra["curve_retained"]) == len(rec.extra["curve_seconds"]) == n
    assert rec.extra["curve_steps"] == list(range(1, n + 1)) and rec.extra["curve_seconds"][-1] <= rec.seconds
    # the last point is the returned model (the method stops right after a recorded batch), measured on a
    # fixed subset of D_ts^r: the forget class is not in it
    sub = tracking_subset(data, split.test_retain, 64, 0)
    assert not (data.y_test[sub] == 5).any()
    assert rec.extra["curve_retained"][-1] == pytest.approx(accuracy(model, data, "test", sub))
    assert rec.curve[-1] == pytest.approx(accuracy(model, data, "train", tracking_subset(data, split.forget, 64, 0)))
    # every other point: half as many, the first call and each second after it
    _, rec2 = U.run("contrastive", original, data, split, lr=1e-2, track_size=64, track_every=2)
    assert rec2.extra["curve_steps"] == list(range(1, len(rec2.extra["curve_steps"]) * 2, 2))
    assert rec2.curve == rec.curve[::2]  # the same run (seeded), recorded at every other batch


def test_figure_2s_step_to_zero_is_the_first_recorded_step_at_zero_accuracy():
    from cu.experiment import curve_zero_step
    from cu.results import Record

    rec = Record("m", "class", 1.0, curve=(0.9, 0.0, 0.1, 0.0), extra={"curve_steps": [1, 11, 21, 31]})
    assert curve_zero_step(rec) == 11.0
    assert math.isnan(curve_zero_step(Record("m", "class", 1.0, curve=(0.9, 0.1), extra={"curve_steps": [1, 2]})))
    assert math.isnan(curve_zero_step(Record("retrain", "class", 1.0)))  # no curve
