"""AutoAnchor: the BPR metric on hand-built boxes, re-fitting only when the anchors fit badly, trainer wiring."""
import logging

import numpy as np
import pytest
import torch

from yolocompress.engine.api import train
from yolocompress.engine.autoanchor import check_anchors, kmean_anchors, label_sizes, ratio_metric
from yolocompress.engine.options import TrainOptions
from yolocompress.models.builder import Model
from yolocompress.models.checkpoint import load

from ..conftest import tiny_config


def test_ratio_metric_hand_built():
    anchors = np.array([[10.0, 10.0]])
    wh = np.array([[10.0, 10.0], [50.0, 10.0], [30.0, 30.0]])  # ratios 1, 5 (too far), 3
    bpr, aat, best = ratio_metric(anchors, wh, thr=4.0)
    assert bpr == pytest.approx(2 / 3)
    assert aat == pytest.approx(2 / 3)
    np.testing.assert_allclose(best, [1.0, 0.2, 1 / 3])


def test_label_sizes_scale_to_long_side():
    shapes_hw = np.array([[100, 200], [300, 150]])  # (h, w): long side 200 and 300
    labels = [np.array([[0, 0.5, 0.5, 0.5, 0.25]]), np.array([[1, 0.5, 0.5, 0.1, 0.2]])]
    wh = label_sizes(shapes_hw, labels, imgsz=64)
    np.testing.assert_allclose(wh, [[32.0, 8.0], [3.2, 12.8]])


def _boxes(seed=0, n=400):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(c, c * 0.1, size=(n, 2)) for c in (8.0, 24.0, 60.0)]).clip(2)


def test_kmeans_fits_clusters_and_is_deterministic():
    wh = _boxes()
    k1 = kmean_anchors(wh, 3, thr=4.0, gen=200, seed=0)
    k2 = kmean_anchors(wh, 3, thr=4.0, gen=200, seed=0)
    np.testing.assert_array_equal(k1, k2)
    assert (np.diff(k1.prod(1)) > 0).all()  # sorted by area
    np.testing.assert_allclose(np.sort(k1.mean(1)), [8, 24, 60], rtol=0.25)
    assert ratio_metric(k1, wh, 4.0)[0] > 0.99


def _model_with_anchors(pixel_anchors):
    cfg = tiny_config()
    cfg["anchors"] = pixel_anchors
    return Model(cfg)


def _dataset_like(n=40, size=64, seed=0):
    """Labels of large boxes (40-60% of a 64 px image) that tiny anchors cannot match at anchor_t 4."""
    rng = np.random.default_rng(seed)
    labels = [np.concatenate([np.zeros((2, 1)), rng.uniform(0.3, 0.7, (2, 2)), rng.uniform(0.4, 0.6, (2, 2))], 1)
              for _ in range(n)]
    return np.full((n, 2), size, dtype=float), labels


def test_good_anchors_are_kept():
    m = _model_with_anchors([[20, 20, 30, 30, 40, 40]] * 3)
    before = m.head.anchors.clone()
    shapes, labels = _dataset_like()
    assert not check_anchors(m.head, shapes, labels, imgsz=64)
    assert torch.equal(m.head.anchors, before)


def test_bad_anchors_are_refitted_in_grid_units_smallest_on_finest_level():
    m = _model_with_anchors([[1, 1, 1, 2, 2, 1]] * 3)
    shapes, labels = _dataset_like()
    wh = label_sizes(shapes, labels, 64)
    stride = m.head.stride.view(-1, 1, 1)
    old_bpr = ratio_metric((m.head.anchors * stride).view(-1, 2).numpy(), wh, 4.0)[0]
    assert old_bpr < 0.98
    assert check_anchors(m.head, shapes, labels, imgsz=64)
    px = (m.head.anchors * stride).view(-1, 2).numpy()
    assert ratio_metric(px, wh, 4.0)[0] > 0.98
    area = (m.head.anchors * stride).prod(-1).mean(-1)
    assert (area.diff() >= 0).all()  # strides rise level by level, so must the anchor sizes
    m.eval()  # decoding uses the new anchors (no stale grid cache)
    pred, _ = m(torch.zeros(1, 3, 64, 64))
    assert torch.isfinite(pred).all()


def _opts(data, project, **kw):
    base = dict(data=str(data), epochs=1, batch_size=4, imgsz=64, device="cpu", workers=0, project=str(project),
                name="exp", nbs=4, seed=3)
    return TrainOptions(**{**base, **kw})


@pytest.mark.parametrize("noautoanchor", [False, True])
def test_trainer_refits_bad_anchors_unless_told_not_to(demo_data, tmp_path, caplog, noautoanchor):
    cfg = tiny_config()
    cfg["anchors"] = [[1, 1, 1, 2, 2, 1]] * 3  # hopeless for digits of 10-40% of the image
    with caplog.at_level(logging.INFO, logger="yolocompress"):
        res = train(_opts(demo_data, tmp_path, noautoanchor=noautoanchor), cfg=cfg)
    saved = load(res.last).head
    fresh = Model(cfg).head
    changed = not torch.allclose(saved.anchors, fresh.anchors)
    assert changed is not noautoanchor
    assert ("re-fitted anchors" in caplog.text) is not noautoanchor


def test_finetunes_of_trained_models_keep_their_anchors(demo_data, tmp_path, monkeypatch):
    """prune's finetune, compress's finetune stage and PAGCP's round finetunes train a trained head: no re-fit."""
    from yolocompress import pipeline
    from yolocompress.cli import parse_command
    from yolocompress.data.dataset import load_data_config
    from yolocompress.engine import api as engine_api
    from yolocompress.models.checkpoint import save_checkpoint
    from yolocompress.prune import api as prune_api
    from yolocompress.prune import pagcp

    seen = []

    class Captured(Exception):
        pass

    def fake_train(opts, **kwargs):
        seen.append(opts.noautoanchor)
        raise Captured

    weights = tmp_path / "w.pt"
    save_checkpoint(weights, Model(tiny_config()), meta={})
    _, kw, _ = parse_command(["compress", "--weights", str(weights), "--data", str(demo_data),
                              "--method", "l1", "--finetune-epochs", "1", "--imgsz", "64"])
    assert prune_api.finetune_options(kw["train_opts"], kw["prune"], tmp_path / "exp").noautoanchor

    monkeypatch.setattr(pipeline, "train", fake_train)
    with pytest.raises(Captured):
        pipeline._finetune_stage(tmp_path / "finetune", False, kw["prune"], kw["train_opts"], kw["distill"],
                                 load_data_config(str(demo_data)), str(weights), {"imgsz": 64},
                                 str(weights))

    monkeypatch.setattr(engine_api, "train", fake_train)
    with pytest.raises(Captured):
        pagcp._round_finetuner(kw["train_opts"], 1, None, tmp_path, torch.device("cpu"))(Model(tiny_config()), 0)
    assert seen == [True, True]
