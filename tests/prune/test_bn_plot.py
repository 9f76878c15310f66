"""bn_gamma.png: fine log bins, each epoch's share under 1e-2 read from its histogram, old 50-bin runs still drawn."""
import numpy as np

from yolocompress.prune.bn_plot import BINS_PER_DECADE, HIST_EDGES, histogram, plot_bn_ridge, share_below


def test_bins_are_fine_and_the_share_matches_the_values():
    assert len(HIST_EDGES) - 1 == 5 * BINS_PER_DECADE >= 100
    v = np.abs(np.random.default_rng(0).lognormal(-3, 2, 3000))
    assert share_below(histogram(v)) == float((v < 1e-2).mean())


def test_plot_writes_one_ridge_per_epoch_with_its_share(tmp_path, monkeypatch):
    from matplotlib.axes import Axes
    written = []
    real_text = Axes.text
    monkeypatch.setattr(Axes, "text", lambda ax, x, y, s, *a, **kw: written.append(s) or real_text(ax, x, y, s, *a, **kw))
    rng = np.random.default_rng(1)
    hists = {0: histogram(rng.lognormal(0, 0.3, 500)), 1: histogram(rng.lognormal(-6, 1, 500)),
             2: np.histogram(rng.lognormal(-6, 1, 500), np.logspace(-4, 1, 51))[0].tolist()}  # an older run's bins
    path = plot_bn_ridge(hists, tmp_path / "bn_gamma.png", "slim")
    assert path.is_file() and path.stat().st_size > 10_000
    assert written[0] == "0.0% < 0.01" and len(written) == 3
    assert float(written[1].split("%")[0]) > 50
