"""NMS and box geometry on tiny hand-made predictions."""
import numpy as np
import pytest
import torch

from yolocompress.engine.nms import clip_boxes, non_max_suppression, scale_boxes, xywh2xyxy, xyxy2xywh
from yolocompress.core.errors import ConfigError


def make_pred(rows, nc):
    """rows of (xc, yc, w, h, obj, *cls_probs) -> [1, N, 5 + nc]."""
    return torch.tensor(rows, dtype=torch.float32).reshape(1, -1, 5 + nc)


def test_multi_label_keeps_every_class_above_threshold():
    pred = make_pred([[50, 50, 20, 20, 0.9, 0.8, 0.5, 0.0005]], nc=3)
    (out,) = non_max_suppression(pred, conf_thres=0.001, multi_label=True)
    assert out.shape == (2, 6)
    assert out[:, 5].tolist() == [0, 1]
    assert out[:, 4].tolist() == pytest.approx([0.72, 0.45])  # obj * cls, sorted; 0.9 * 0.0005 < 0.001 dropped
    assert out[0, :4].tolist() == [40, 40, 60, 60]


def test_single_label_keeps_best_class_only():
    pred = make_pred([[50, 50, 20, 20, 0.9, 0.8, 0.5, 0.0005]], nc=3)
    (out,) = non_max_suppression(pred, multi_label=False)
    assert out.shape == (1, 6) and out[0, 4:].tolist() == pytest.approx([0.72, 0.0])


def test_one_class_model_ignores_multi_label_and_multiplies_obj():
    pred = make_pred([[50, 50, 20, 20, 0.5, 0.6]], nc=1)
    (out,) = non_max_suppression(pred, multi_label=True)
    assert out[0, 4:].tolist() == pytest.approx([0.3, 0.0]) and out.shape[0] == 1


@pytest.mark.parametrize("agnostic, n_kept", [(False, 2), (True, 1)])
def test_class_separation(agnostic, n_kept):
    # identical boxes, best classes 0 and 1: kept apart by the class offset unless agnostic
    pred = make_pred([[50, 50, 20, 20, 0.9, 0.9, 0.0], [50, 50, 20, 20, 0.8, 0.0, 0.9]], nc=2)
    (out,) = non_max_suppression(pred, agnostic=agnostic)
    assert out.shape[0] == n_kept
    assert out[0, 4].item() == pytest.approx(0.81)


@pytest.mark.parametrize("shift, n_kept", [(2, 1), (10, 2)])  # IoU 0.82 suppressed; IoU 1/3 kept (iou_thres 0.6)
def test_same_class_overlap_suppression(shift, n_kept):
    pred = make_pred([[50, 50, 20, 20, 0.7, 1.0], [50 + shift, 50, 20, 20, 0.9, 1.0]], nc=1)
    (out,) = non_max_suppression(pred, iou_thres=0.6)
    assert out.shape[0] == n_kept
    assert out[0, 4].item() == pytest.approx(0.9)  # the higher-confidence box survives and comes first


def test_max_det_keeps_highest_confidences_sorted():
    rows = [[30 * k + 10, 10, 10, 10, 0.1 + 0.08 * k, 1.0] for k in range(10)]  # disjoint boxes
    (out,) = non_max_suppression(make_pred(rows, nc=1), max_det=3)
    assert out[:, 4].tolist() == pytest.approx([0.82, 0.74, 0.66])


def test_max_nms_caps_candidates_before_nms():
    rows = [[30 * k + 10, 10, 10, 10, 0.1 + 0.08 * k, 1.0] for k in range(10)]
    (out,) = non_max_suppression(make_pred(rows, nc=1), max_nms=4)
    assert out.shape[0] == 4 and out[-1, 4].item() == pytest.approx(0.58)


def test_confidence_threshold_on_obj_and_on_obj_times_cls():
    pred = make_pred([
        [10, 10, 10, 10, 0.15, 1.0, 0.0],  # obj below: dropped before classes are looked at
        [40, 40, 10, 10, 0.5, 0.4, 0.1],  # obj above; 0.5 * 0.4 = 0.2 kept, 0.5 * 0.1 = 0.05 dropped
        [70, 70, 10, 10, 0.9, 0.2, 0.2],  # obj above; both 0.18 dropped
    ], nc=2)
    (out,) = non_max_suppression(pred, conf_thres=0.19)
    assert out.shape[0] == 1 and out[0, 4:].tolist() == pytest.approx([0.2, 0.0])


def test_classes_filter_and_batch_with_empty_image():
    pred = torch.cat([
        make_pred([[50, 50, 20, 20, 0.9, 0.9, 0.0], [150, 50, 20, 20, 0.9, 0.0, 0.9]], nc=2),
        make_pred([[50, 50, 20, 20, 0.0001, 0.9, 0.0], [150, 50, 20, 20, 0.0001, 0.0, 0.9]], nc=2),
    ])
    out = non_max_suppression(pred, classes=[1])
    assert len(out) == 2
    assert out[0][:, 5].tolist() == [1.0]
    assert out[1].shape == (0, 6)


def test_accepts_eval_tuple_and_leaves_input_untouched():
    pred = make_pred([[50, 50, 20, 20, 0.9, 0.8, 0.5]], nc=2)
    before = pred.clone()
    out = non_max_suppression((pred, [torch.zeros(1)]))
    assert torch.equal(pred, before) and out[0].shape == (2, 6)


@pytest.mark.parametrize("kwargs", [dict(conf_thres=1.5), dict(iou_thres=-0.1), dict(max_det=0)])
def test_bad_options_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        non_max_suppression(make_pred([[50, 50, 20, 20, 0.9, 0.8]], nc=1), **kwargs)


@pytest.mark.parametrize("to", [torch.tensor, np.array])
def test_box_format_round_trip(to):
    xywh = to([[50.0, 40.0, 20.0, 10.0], [5.0, 5.0, 2.0, 4.0]])
    xyxy = xywh2xyxy(xywh)
    assert np.allclose(np.asarray(xyxy[0]), [40, 35, 60, 45])
    assert np.allclose(np.asarray(xyxy2xywh(xyxy)), np.asarray(xywh))
    assert np.allclose(np.asarray(xywh)[0], [50, 40, 20, 10])  # input not modified


# Original 100 x 200 (h0, w0) letterboxed into 64 x 64: gain = min(64/100, 64/200) = 0.32, resized to 32 x 64,
# padding (64 - 32) / 2 = 16 rows on top. A box (20, 10, 120, 60) lands at (6.4, 19.2, 38.4, 35.2).
LETTERBOXED = [[6.4, 3.2 + 16, 38.4, 19.2 + 16]]
ORIGINAL = [[20.0, 10.0, 120.0, 60.0]]


@pytest.mark.parametrize("ratio_pad", [None, ((0.32, 0.32), (0.0, 16.0))])
def test_scale_boxes_inverts_letterbox(ratio_pad):
    boxes = torch.tensor(LETTERBOXED)
    out = scale_boxes((64, 64), boxes, (100, 200), ratio_pad)
    assert out is boxes  # in place, as callers of the official function expect
    assert out.tolist()[0] == pytest.approx(ORIGINAL[0], abs=1e-4)


def test_scale_boxes_clips_to_original_image():
    boxes = np.array([[-10.0, 0.0, 70.0, 64.0]])
    out = scale_boxes((64, 64), boxes, (100, 200))
    assert out.tolist()[0] == pytest.approx([0.0, 0.0, 200.0, 100.0])


def test_clip_boxes_tensor_and_array():
    for boxes in (torch.tensor([[-5.0, -5.0, 300.0, 300.0]]), np.array([[-5.0, -5.0, 300.0, 300.0]])):
        assert np.asarray(clip_boxes(boxes, (100, 200))).tolist() == [[0, 0, 200, 100]]
