"""Metrics against answers worked out by hand with YOLOv5 v7.0's rules (101-point AP, per-threshold matching)."""
import numpy as np
import pytest
import torch

from yolocompress.engine.metrics import (IOU_THRESHOLDS, ConfusionMatrix, DetectionMetrics, ap_per_class, box_iou,
                                         compute_ap, fitness, match_predictions)
from yolocompress.core.errors import DataError, YoloCompressError

# Under the 101-point rule the curve is sampled at x = 0, 0.01, ..., 1 and integrated by trapezoids. The sentinel
# precision 0 at recall 1 means the last sample is 0, so a perfect class scores 1 - 0.01 * (1 + 0) / 2 = 0.995.
PERFECT_AP = 0.995


def det(x1, y1, x2, y2, conf, cls):
    return [x1, y1, x2, y2, conf, cls]


def run_metrics(preds, labels, nc=2):
    m = DetectionMetrics(nc=nc, names=[f"c{i}" for i in range(nc)])
    m.update([torch.tensor(p, dtype=torch.float32).reshape(-1, 6) for p in preds],
             [torch.tensor(lab, dtype=torch.float32).reshape(-1, 5) for lab in labels])
    return m, m.compute()


def test_box_iou_known_values():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[0.0, 0.0, 10.0, 5.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    assert box_iou(a, b)[0].tolist() == pytest.approx([0.5, 50 / 150, 0.0])


def test_perfect_predictions_score_0995_with_unit_precision_and_recall():
    labels = [[[0, 0, 0, 10, 10], [1, 20, 20, 40, 30]], [[1, 5, 5, 25, 15]]]
    preds = [[det(*lab[1:], 0.9, lab[0]) for lab in img] for img in labels]
    _, out = run_metrics(preds, labels)
    assert out["mAP50"] == pytest.approx(PERFECT_AP)
    assert out["mAP50-95"] == pytest.approx(PERFECT_AP)
    assert out["precision"] == pytest.approx(1.0)
    assert out["recall"] == pytest.approx(1.0)
    assert (out["images"], out["instances"]) == (2, 3)
    assert [(r["class"], r["name"], r["images"], r["instances"]) for r in out["per_class"]] == [
        (0, "c0", 2, 1), (1, "c1", 2, 2)]
    assert fitness(out) == pytest.approx(PERFECT_AP)


# One class, 2 labels, detections sorted by confidence: TP (0.9), FP (0.8), TP (0.7).
# cumulative TP 1,1,2 / FP 0,1,1 -> recall 0.5, 0.5, 1.0 ; precision 1, 1/2, 2/3.
# With sentinels: mrec = [0, .5, .5, 1, 1], mpre = [1, 1, .5, 2/3, 0] -> envelope [1, 1, 2/3, 2/3, 0].
# Sampled (np.interp takes the right-hand value at the repeated recall 0.5):
#   x = 0.00..0.49 -> 1 ; x = 0.50..0.99 -> 2/3 ; x = 1.00 -> 0.
# Trapezoids of width 0.01: 49 * 1 * 0.01 + (1 + 2/3) / 2 * 0.01 + 49 * 2/3 * 0.01 + (2/3 + 0) / 2 * 0.01
#   = 0.49 + 0.0083333 + 0.3266667 + 0.0033333 = 0.8283333
TP_FP_TP_AP = 0.49 + (1 + 2 / 3) / 200 + 49 * (2 / 3) / 100 + (2 / 3) / 200


def test_compute_ap_hand_worked_curve():
    ap, mpre, mrec = compute_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3]))
    assert ap == pytest.approx(TP_FP_TP_AP) and ap == pytest.approx(0.8283333, abs=1e-7)
    np.testing.assert_allclose(mpre, [1, 1, 2 / 3, 2 / 3, 0])
    np.testing.assert_allclose(mrec, [0, 0.5, 0.5, 1, 1])


def test_ap_per_class_tp_fp_tp_from_unsorted_stats():
    tp = np.array([[True], [True], [False]])  # given out of confidence order on purpose
    res = ap_per_class(tp, np.array([0.9, 0.7, 0.8]), np.zeros(3), np.zeros(2))
    assert res.ap.shape == (1, 1) and res.classes.tolist() == [0]
    assert res.ap50[0] == pytest.approx(TP_FP_TP_AP)
    assert res.p_curve.shape == res.r_curve.shape == res.f1_curve.shape == res.pr_curve.shape == (1, 1000)


def test_tp_fp_tp_through_the_accumulator():
    labels = [[[0, 0, 0, 10, 10], [0, 20, 20, 30, 30]]]
    preds = [[det(0, 0, 10, 10, 0.9, 0), det(50, 50, 60, 60, 0.8, 0), det(20, 20, 30, 30, 0.7, 0)]]
    _, out = run_metrics(preds, labels, nc=1)
    assert out["mAP50"] == pytest.approx(TP_FP_TP_AP)
    assert out["mAP50-95"] == pytest.approx(TP_FP_TP_AP)  # all matches have IoU 1


@pytest.mark.parametrize("height, n_tp_thresholds", [
    (7.2, 5),  # IoU 0.72: TP at 0.50, 0.55, 0.60, 0.65, 0.70 only
    (5.0, 1),  # IoU 0.50 exactly: TP at 0.50 only (the test is >=)
    (9.6, 10),  # IoU 0.96: TP everywhere
    (4.0, 0),  # IoU 0.40: never
])
def test_iou_thresholds(height, n_tp_thresholds):
    labels = torch.tensor([[0, 0, 0, 10, 10]], dtype=torch.float32)
    preds = torch.tensor([det(0, 0, 10, height, 0.9, 0)], dtype=torch.float32)
    correct = match_predictions(preds, labels)
    assert correct.shape == (1, 10) and correct.dtype == torch.bool
    assert correct[0].tolist() == [True] * n_tp_thresholds + [False] * (10 - n_tp_thresholds)


def test_iou_072_gives_half_of_the_thresholds_in_map50_95():
    # AP is 0.995 at the 5 thresholds where the single detection is a TP and 0 at the other 5.
    _, out = run_metrics([[det(0, 0, 10, 7.2, 0.9, 0)]], [[[0, 0, 0, 10, 10]]], nc=1)
    assert out["mAP50"] == pytest.approx(PERFECT_AP)
    assert out["mAP50-95"] == pytest.approx(PERFECT_AP * 5 / 10)
    assert fitness(out) == pytest.approx(0.1 * PERFECT_AP + 0.9 * PERFECT_AP / 2)


def test_two_predictions_on_one_label_give_one_tp():
    labels = torch.tensor([[0, 0, 0, 10, 10]], dtype=torch.float32)
    preds = torch.tensor([det(0, 0, 10, 10, 0.9, 0), det(0, 0, 10, 9.9, 0.8, 0)], dtype=torch.float32)
    correct = match_predictions(preds, labels)
    assert correct.sum(0).tolist() == [1] * 10
    assert correct[0].all() and not correct[1].any()  # the IoU-1 detection takes the label


def test_label_goes_to_lowest_index_detection_among_candidates_as_val_py():
    # det 0 (listed first = higher confidence after NMS) has IoU 0.6, det 1 has IoU 0.9.
    # val.py dedupes per detection, re-orders by detection index, then keeps the first per label:
    # det 0 wins where it qualifies (0.50..0.60); det 1 wins above that (0.65..0.90); nobody at 0.95.
    labels = torch.tensor([[0, 0, 0, 10, 10]], dtype=torch.float32)
    preds = torch.tensor([det(0, 0, 10, 6, 0.9, 0), det(0, 0, 10, 9, 0.8, 0)], dtype=torch.float32)
    correct = match_predictions(preds, labels)
    assert correct[0].tolist() == [True] * 3 + [False] * 7
    assert correct[1].tolist() == [False] * 3 + [True] * 6 + [False]


def test_class_mismatch_is_never_tp_and_each_detection_takes_one_label():
    labels = torch.tensor([[0, 0, 0, 10, 10], [1, 0, 0, 10, 10]], dtype=torch.float32)
    preds = torch.tensor([det(0, 0, 10, 10, 0.9, 1), det(0, 0, 10, 10, 0.8, 2)], dtype=torch.float32)
    correct = match_predictions(preds, labels)
    assert correct[0].all() and not correct[1].any()


def test_match_with_no_labels_or_no_detections():
    assert match_predictions(torch.zeros(0, 6), torch.tensor([[0, 0, 0, 1, 1.0]])).shape == (0, 10)
    assert not match_predictions(torch.tensor([det(0, 0, 1, 1, 0.5, 0)]), torch.zeros(0, 5)).any()


def test_image_without_labels_contributes_false_positives():
    # Sorted: FP (0.95, image 2 has no labels) then TP (0.9). recall [0, 1], precision [0, 1/2].
    # mrec = [0, 0, 1, 1], mpre envelope = [1, .5, .5, 0] -> samples: x = 0.00..0.99 -> 0.5, x = 1 -> 0.
    # AP = 99 * 0.5 * 0.01 + (0.5 + 0) / 2 * 0.01 = 0.495 + 0.0025 = 0.4975
    labels = [[[0, 0, 0, 10, 10]], []]
    preds = [[det(0, 0, 10, 10, 0.9, 0)], [det(0, 0, 10, 10, 0.95, 0)]]
    _, out = run_metrics(preds, labels, nc=1)
    assert out["mAP50"] == pytest.approx(0.4975)
    assert (out["images"], out["instances"]) == (2, 1)


def test_image_without_predictions_contributes_missed_labels():
    # recall 0.5 at precision 1: envelope 1 up to recall 0.5, then linear to 0 at recall 1.
    # AP = 0.5 * 1 + 0.5 * (1 + 0) / 2 = 0.75 (the grid holds both knots, so trapezoids are exact).
    labels = [[[0, 0, 0, 10, 10]], [[0, 0, 0, 10, 10]], []]
    preds = [[det(0, 0, 10, 10, 0.9, 0)], [], []]
    _, out = run_metrics(preds, labels, nc=1)
    assert out["mAP50"] == pytest.approx(0.75)
    assert (out["images"], out["instances"]) == (3, 2)


def test_maps_fill_classes_without_labels_with_the_mean():
    labels = [[[0, 0, 0, 10, 10], [2, 20, 20, 30, 30]]]
    preds = [[det(0, 0, 10, 10, 0.9, 0)]]
    _, out = run_metrics(preds, labels, nc=3)
    assert out["mAP50"] == pytest.approx(PERFECT_AP / 2)  # class 2 has AP 0 and counts in the mean
    assert out["maps"] == pytest.approx([PERFECT_AP, PERFECT_AP / 2, 0.0])
    assert [r["class"] for r in out["per_class"]] == [0, 2]


def test_no_true_positive_reports_zeros_as_val_py():
    _, out = run_metrics([[det(50, 50, 60, 60, 0.9, 0)]], [[[0, 0, 0, 10, 10]]], nc=1)
    assert (out["precision"], out["recall"], out["mAP50"], out["mAP50-95"]) == (0.0, 0.0, 0.0, 0.0)
    assert out["per_class"] == [] and out["instances"] == 1
    empty = DetectionMetrics(nc=2).compute()
    assert empty["images"] == 0 and empty["mAP50"] == 0.0 and fitness(empty) == 0.0


def test_reset_and_incremental_updates_match_one_update():
    labels = [torch.tensor([[0, 0, 0, 10, 10.0]]), torch.tensor([[0, 0, 0, 10, 10.0]])]
    preds = [torch.tensor([det(0, 0, 10, 7.2, 0.9, 0)]), torch.tensor([det(0, 0, 10, 10, 0.5, 0)])]
    m = DetectionMetrics(nc=1)
    m.update(preds, labels)
    whole = m.compute()
    m.reset()
    for p, lab in zip(preds, labels):
        m.update([p], [lab])
    assert m.compute() == whole and m.result is not None


def test_label_class_outside_nc_is_a_user_error():
    m = DetectionMetrics(nc=2)
    with pytest.raises(DataError, match="nc=2"):
        m.update([torch.zeros(0, 6)], [torch.tensor([[5, 0, 0, 1, 1.0]])])
    assert issubclass(DataError, YoloCompressError)


def test_fitness_accepts_sequence():
    assert fitness([0.3, 0.4, 0.5, 0.2]) == pytest.approx(0.05 + 0.18)


def test_iou_thresholds_are_val_py_linspace():
    assert IOU_THRESHOLDS.dtype == torch.float32 and IOU_THRESHOLDS.numel() == 10
    assert IOU_THRESHOLDS[0] == 0.5 and IOU_THRESHOLDS[-1] == pytest.approx(0.95)


def test_confusion_matrix_hand_worked():
    """Labels: a class-0 box found as class 1, a class-1 box found right, a class-1 box missed; plus one
    detection on nothing and one under the confidence threshold (ignored)."""
    cm = ConfusionMatrix(nc=2, conf=0.25, iou_thres=0.45)
    labels = torch.tensor([[0, 0, 0, 10, 10], [1, 20, 20, 30, 30], [1, 50, 50, 60, 60]], dtype=torch.float32)
    dets = torch.tensor([det(0, 0, 10, 9, 0.9, 1), det(20, 20, 30, 31, 0.8, 1), det(80, 80, 90, 90, 0.7, 0),
                         det(50, 50, 60, 60, 0.1, 1)], dtype=torch.float32)
    cm.update(dets, labels)
    # rows: predicted 0, 1, background; columns: true 0, 1, background
    assert cm.matrix.tolist() == [[0, 0, 1], [1, 1, 0], [0, 1, 0]]
    np.testing.assert_allclose(cm.normalized()[:, :2], [[0, 0], [1, 0.5], [0, 0.5]])


def test_confusion_matrix_pairs_each_label_and_detection_once():
    """Two detections on one label: the better one matches, the other is a detection on background."""
    cm = ConfusionMatrix(nc=1)
    cm.update(torch.tensor([det(0, 0, 10, 10, 0.9, 0), det(0, 0, 10, 8, 0.8, 0)]),
              torch.tensor([[0, 0, 0, 10, 10]], dtype=torch.float32))
    assert cm.matrix.tolist() == [[1, 1], [0, 0]]
