"""Figures return matplotlib Figures with one axis per panel and save as PNG + PDF."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from cu import plots  # noqa: E402
from cu.data import random_split  # noqa: E402
from cu.embedding import embedding_sample, project_2d  # noqa: E402
from cu.mia import MIAResult, mia_table  # noqa: E402
from cu.models import build_model  # noqa: E402


def _panel(rng, n=60, classes=3):
    y = rng.integers(0, classes, n)
    z = rng.normal(0, 0.1, (n, 128)) + np.eye(128)[y]  # one cluster per class
    return z / np.linalg.norm(z, axis=1, keepdims=True), y, np.arange(n) < 10


def test_forget_curves_draws_one_line_per_method(tmp_path):
    fig = plots.forget_curves({"contrastive": [0.9, 0.4, 0.0], "scrub": [1.0] * 40, "none": []}, title="class 5")
    (ax,) = fig.axes
    assert len(ax.lines) == 2  # the empty curve is skipped
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [90, 40, 0])
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [1, 2, 3])
    paths = plots.save_figure(fig, tmp_path, "fig2")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)
    plt.close(fig)


def test_embedding_panels_one_axis_per_panel(tmp_path):
    rng = np.random.default_rng(0)
    panels = {name: _panel(rng) for name in ("original", "contrastive", "neggrad")}
    fig = plots.embedding_panels(panels, method="pca", class_names=["a", "b", "c"])  # t-SNE: test_project_2d
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["original", "contrastive", "neggrad"]
    # each panel: a scatter of retain samples, then the forget samples (two rings)
    assert [len(c.get_offsets()) for c in fig.axes[0].collections] == [50, 10, 10]
    plots.save_figure(fig, tmp_path, "fig1")
    assert (tmp_path / "fig1.png").stat().st_size > 0 and (tmp_path / "fig1.pdf").stat().st_size > 0
    plt.close(fig)


def test_embedding_panels_wraps_beyond_four_and_rejects_empty():
    rng = np.random.default_rng(1)
    fig = plots.embedding_panels({str(i): _panel(rng, 20) for i in range(5)}, method="pca")
    assert len(fig.axes) == 5  # 2 x 3 grid, the unused axis removed
    plt.close(fig)
    with pytest.raises(ValueError, match="at least one panel"):
        plots.embedding_panels({})


def test_project_2d_shapes_and_errors():
    z = np.random.default_rng(2).normal(size=(30, 8))
    assert project_2d(z, "pca").shape == (30, 2)
    np.testing.assert_allclose(project_2d(z, "tsne", seed=0), project_2d(z, "tsne", seed=0))
    with pytest.raises(ValueError, match="valid: tsne, pca"):
        project_2d(z, "umap")


def test_embedding_sample_gathers_forget_then_retain(data):
    torch.manual_seed(0)
    model = build_model("resnet18", 10, 1, width=4).eval()
    split = random_split(data, 50, seed=0)
    z, y, is_forget = embedding_sample(model, data, split, n_retain=40, seed=0)
    assert z.shape == (90, 128) and y.shape == (90,) and is_forget.sum() == 50
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)  # z is L2-normalised
    # all 50 forget samples first (n_forget 500 > 50), in index order; z and y are theirs
    assert is_forget[:50].all() and np.array_equal(y[:50], data.y_train[split.forget].numpy())
    with torch.no_grad():
        z_f, z_r = (model.embed(data.x_train[idx]).numpy() for idx in (split.forget, split.retain))
    np.testing.assert_allclose(z[:50], z_f, atol=1e-5)
    # then 40 distinct retained samples, each with its own label
    d = ((z[50:, None, :] - z_r[None]) ** 2).sum(-1)
    match = d.argmin(1)
    assert d.min(1).max() < 1e-8 and len(set(match.tolist())) == 40
    np.testing.assert_array_equal(y[50:], data.y_train[split.retain].numpy()[match])
    z2, _, _ = embedding_sample(model, data, split, n_retain=40, seed=0)
    np.testing.assert_array_equal(z, z2)


def test_mia_bars_from_results(tmp_path):
    r = lambda f, m, t: MIAResult(f, m, 0.8, t, "softmax_sorted", "svc", 180, 180, 100, 0)  # noqa: E731
    results = {"original": r(0.9, 0.85, 0.3), "retrain": r(0.4, 0.8, 0.35), "contrastive": r(0.2, 0.75, 0.25)}
    fig = plots.mia_bars(results)
    (ax,) = fig.axes
    assert len(ax.patches) == 3 * 3  # three models x (forget, held-out members, held-out non-members)
    # display names with each model's AUC under them; Retrain's forget rate as a reference line
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Original\nAUC 80 %", "Retrain\nAUC 80 %",
                                                             "Contrastive\nAUC 80 %"]
    assert [line.get_ydata()[0] for line in ax.lines] == [40.0]
    # one bar group per model (at x = 0, 1, 2), one colour per set; the AUC is not drawn as a bar
    bars = {c.get_label(): [(round(b.get_x() + b.get_width() / 2), round(b.get_height(), 6)) for b in c]
            for c in ax.containers}
    assert bars == {r"$D_{tr}^u$ (forget)": [(0, 90.0), (1, 40.0), (2, 20.0)],
                    r"$D_{tr}^r$ (held-out members)": [(0, 85.0), (1, 80.0), (2, 75.0)],
                    r"$D_{ts}$ (held-out non-members)": [(0, 30.0), (1, 35.0), (2, 25.0)]}
    fig2 = plots.mia_bars(mia_table(results))
    assert len(fig2.axes[0].patches) == 9
    # the legend (3 sets and Retrain's reference line) sits under the axes, which keep most of the width
    fig.canvas.draw()
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert r"$D_{tr}^u$ (forget)" in texts and "Retrain's $D_{tr}^u$ rate" in texts and len(texts) == 4
    assert ax.get_position().width > 0.75
    box = legend.get_window_extent()
    assert box.y1 <= ax.get_window_extent().y0 and box.x0 >= 0 and box.x1 <= fig.bbox.x1  # all of it shown
    plots.save_figure(fig, tmp_path, "mia")
    plt.close("all")


def test_show_displays_once_and_closes(capsys):
    fig = plots.forget_curves({"a": [1.0, 0.5]})
    plots.show(fig)
    assert "Figure" in capsys.readouterr().out  # outside a kernel, display prints the repr
    assert not plt.fignum_exists(fig.number)


def test_figures_share_display_names_colours_and_order():
    assert plots.display_name("contrastive:validated") == "Contrastive (validated)"
    assert plots.method_color("contrastive:tuned") == plots.method_color("contrastive")
    assert plots.method_order(["unsir", "contrastive:tuned", "retrain", "contrastive", "new"]) == \
        ["retrain", "contrastive", "contrastive:tuned", "unsir", "new"]
    fig = plots.forget_curves({"scrub": [1.0] * 5, "contrastive": [0.5, 0.0]}, start=0.98)
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.lines] == ["Contrastive", "SCRUB"]
    assert ax.lines[0].get_xdata()[0] == 0 and ax.lines[0].get_ydata()[0] == pytest.approx(98)  # the Original at 0
    assert ax.lines[0].get_zorder() > ax.lines[1].get_zorder() and ax.get_xscale() == "symlog"
    plt.close(fig)


def test_utility_vs_forgetting_places_each_method_by_its_per_seed_distance_to_retrain():
    import pandas as pd

    rows = [dict(method=m, seed=s, acc_test=a, acc_train_forget=f, seconds=sec)
            for s, shift in ((0, 0.0), (1, 0.1))
            for m, a, f, sec in (("retrain", 0.8, 0.8 + shift, 100.0), ("contrastive", 0.78, 0.7 + shift, 5.0),
                                 ("original", 0.82, 1.0, 0.0))]
    fig = plots.utility_vs_forgetting(pd.DataFrame(rows), "sample")
    (ax,) = fig.axes
    (x, y), = ax.collections[0].get_offsets()  # Contrastive: 10 pt from Retrain on both seeds
    assert x == pytest.approx(10) and y == pytest.approx(78)
    plt.close(fig)
    with pytest.raises(ValueError, match="needs Retrain"):
        plots.utility_vs_forgetting(pd.DataFrame(rows[1:2]), "sample")
