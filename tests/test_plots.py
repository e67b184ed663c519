"""Figures return matplotlib Figures with one axis per panel and save as PNG + PDF."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from cu import plots  # noqa: E402
from cu.data import random_split  # noqa: E402
from cu.embedding import Embedding, embedding_sample, own_centre_share, project_2d  # noqa: E402
from cu.mia import MIAResult, mia_table  # noqa: E402
from cu.models import build_model  # noqa: E402


def _panels(names, rng=None, n_retain=30, n_forget=10, classes=3, own=None):
    """One Embedding per name of the same samples (forget first): one cluster per class on its own axis of z;
    in panel i the first own[i] forget samples sit at their own class, the others at the next class, and
    the model predicts the class each one sits at."""
    rng = rng or np.random.default_rng(0)
    y = np.r_[np.arange(n_forget), np.arange(n_retain)] % classes
    is_forget = np.arange(n_forget + n_retain) < n_forget
    own = own or [n_forget] * len(names)
    out = {}
    for name, k in zip(names, own):
        at = np.where(is_forget & (np.arange(len(y)) >= k), (y + 1) % classes, y)
        z = rng.normal(0, 0.05, (len(y), 128)) + np.eye(128)[at]
        out[name] = Embedding(z / np.linalg.norm(z, axis=1, keepdims=True), y, is_forget, at)
    return out


def _legend_colours(fig):
    """Legend label -> RGB of its marker."""
    (legend,) = fig.legends
    return {t.get_text(): to_rgb(h.get_markerfacecolor()) for t, h in zip(legend.get_texts(), legend.legend_handles)}


def test_forget_curves_draws_one_line_per_method(tmp_path):
    fig = plots.forget_curves({"contrastive": [0.9, 0.4, 0.0], "scrub": [1.0] * 40, "none": []}, title="class 5")
    (ax,) = fig.axes
    assert len(ax.lines) == 2  # the empty curve is skipped
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [90, 40, 0])
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [1, 2, 3])
    paths = plots.save_figure(fig, tmp_path, "fig2")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)
    plt.close(fig)


def test_embedding_panels_one_row_in_the_given_order_with_share_and_predicted_colours(tmp_path):
    names = ("original", "neggrad", "retrain")  # not METHOD_STYLE's order: the caller's order is kept
    panels = _panels(names, own=[10, 3, 6])
    fig = plots.embedding_panels(panels, method="pca", class_names=["a", "b", "c"])  # t-SNE: test_project_2d
    assert len(fig.axes) == 3 and all(ax.get_subplotspec().get_gridspec().nrows == 1 for ax in fig.axes)
    assert [ax.get_subplotspec().colspan.start for ax in fig.axes] == [0, 1, 2]
    assert [ax.get_title() for ax in fig.axes] == ["Original", "NegGrad", "Retrain"]
    # the share of forget samples still nearest their own class centre, in each panel
    assert [[t.get_text() for t in ax.texts] for ax in fig.axes] == \
        [["own centre: 100 %"], ["own centre: 30 %"], ["own centre: 60 %"]]
    colour = _legend_colours(fig)
    names_of = np.array(["a", "b", "c"])
    for ax, e in zip(fig.axes, panels.values()):
        retain, forget = ax.collections  # retain dots, then the forget markers on top
        assert len(retain.get_offsets()) == 30 and len(forget.get_offsets()) == 10
        # retain: colour of the true class; forget: colour of the predicted class, with a black edge
        np.testing.assert_allclose(retain.get_facecolors()[:, :3], [colour[c] for c in names_of[e.y[~e.is_forget]]])
        np.testing.assert_allclose(forget.get_facecolors()[:, :3], [colour[c] for c in names_of[e.pred[e.is_forget]]])
        assert (forget.get_edgecolors()[:, :3] == 0).all()
    assert "forget sample (colour: predicted class)" in colour
    plots.save_figure(fig, tmp_path, "fig1")
    assert (tmp_path / "fig1.png").stat().st_size > 0 and (tmp_path / "fig1.pdf").stat().st_size > 0
    plt.close(fig)


def test_embedding_panels_aligns_each_projection_to_the_first(monkeypatch):
    # project_2d replaced by the first two coordinates of z, so panel 2's projection is panel 1's
    # reflected, rotated, scaled and shifted; after the alignment both are drawn at the same places
    monkeypatch.setattr("cu.embedding.project_2d", lambda z, method, seed: np.asarray(z)[:, :2])
    panels = _panels(("original", "contrastive"))
    e = panels["original"]
    a = 1.1
    turn = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ np.diag([1.0, -1.0])
    z2 = e.z.copy()
    z2[:, :2] = 2.5 * e.z[:, :2] @ turn + [3.0, -1.0]
    panels["contrastive"] = e._replace(z=z2)
    fig = plots.embedding_panels(panels, method="pca")
    (r1, f1), (r2, f2) = (ax.collections for ax in fig.axes)
    np.testing.assert_allclose(r2.get_offsets(), r1.get_offsets(), atol=1e-9)
    np.testing.assert_allclose(f2.get_offsets(), f1.get_offsets(), atol=1e-9)
    # the first panel is only centred and scaled to unit RMS radius
    xy = np.r_[f1.get_offsets(), r1.get_offsets()]
    np.testing.assert_allclose(xy.mean(0), 0, atol=1e-12)
    assert np.sqrt((xy ** 2).sum(1).mean()) == pytest.approx(1)
    plt.close(fig)
    # the helper on its own; the copy is not already aligned
    xy = np.random.default_rng(3).normal(size=(20, 2))
    moved = 0.5 * xy @ turn - 7
    assert not np.allclose(plots._procrustes_align(moved), plots._procrustes_align(xy))
    np.testing.assert_allclose(plots._procrustes_align(moved, plots._procrustes_align(xy)),
                               plots._procrustes_align(xy), atol=1e-12)


def test_embedding_panels_rejects_empty_other_samples_and_old_tuples():
    with pytest.raises(ValueError, match="at least one panel"):
        plots.embedding_panels({})
    panels = _panels(("original", "retrain"))
    panels["retrain"] = panels["retrain"]._replace(y=(panels["retrain"].y + 1) % 3)
    with pytest.raises(ValueError, match="same samples"):
        plots.embedding_panels(panels, method="pca")
    z, y, is_forget, _ = _panels(("original",))["original"]
    with pytest.raises(ValueError, match=r"Embedding \(z, y, is_forget, pred\)"):
        plots.embedding_panels({"original": (z, y, is_forget)}, method="pca")


def test_own_centre_share_counts_forget_samples_nearest_their_own_centre():
    e = np.eye(128)
    # retain: class 0 at 10 e0 and at e2 (its centre is the normalised mean of the normalised z: the
    # diagonal of e0 and e2, not e0 as the mean of the raw z would give), class 1 at e1, class 2 at e2
    retain_z, retain_y = np.stack([10 * e[0], e[2], e[1], e[2]]), np.array([0, 0, 1, 2])
    forget_z = np.stack([
        e[0],                      # class 0 at its own centre's side: own
        3 * e[1],                  # class 1 at its own centre, any length: own
        e[1],                      # class 2 at class 1's centre: not own
        e[0] + 1.5 * e[2],         # class 0, nearer the diagonal than e2: own (not own with raw means)
        e[0] + 0.2 * e[1] + 3 * e[2],  # class 0, nearest e2: not own
    ])
    forget_y = np.array([0, 1, 2, 0, 0])
    z, y = np.r_[forget_z, retain_z], np.r_[forget_y, retain_y]
    is_forget = np.arange(len(y)) < len(forget_y)
    assert own_centre_share(z, y, is_forget) == pytest.approx(3 / 5)
    assert own_centre_share(z[is_forget][:2].tolist() + retain_z.tolist(), np.r_[forget_y[:2], retain_y],
                            np.arange(6) < 2) == 1.0
    assert np.isnan(own_centre_share(retain_z, retain_y, np.zeros(4, bool)))
    with pytest.raises(ValueError, match=r"class\(es\) \[1\].*n_retain"):
        own_centre_share(z, y, is_forget | (y == 1))  # class 1's only retain sample now forgotten


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
    emb = embedding_sample(model, data, split, n_retain=40, seed=0)
    z, y, is_forget, pred = emb
    assert isinstance(emb, Embedding) and emb.z is z and emb.pred is pred
    assert z.shape == (90, 128) and y.shape == (90,) and pred.shape == (90,) and is_forget.sum() == 50
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)  # z is L2-normalised
    # all 50 forget samples first (n_forget 500 > 50), in index order; z, y and the prediction are theirs
    assert is_forget[:50].all() and np.array_equal(y[:50], data.y_train[split.forget].numpy())
    with torch.no_grad():
        z_f, z_r = (model.embed(data.x_train[idx]).numpy() for idx in (split.forget, split.retain))
        logits_f = model(data.x_train[split.forget]).numpy()
    np.testing.assert_allclose(z[:50], z_f, atol=1e-5)
    np.testing.assert_array_equal(pred[:50], logits_f.argmax(1))
    # then 40 distinct retained samples, each with its own label
    d = ((z[50:, None, :] - z_r[None]) ** 2).sum(-1)
    match = d.argmin(1)
    assert d.min(1).max() < 1e-8 and len(set(match.tolist())) == 40
    np.testing.assert_array_equal(y[50:], data.y_train[split.retain].numpy()[match])
    z2, _, _, pred2 = embedding_sample(model, data, split, n_retain=40, seed=0)
    np.testing.assert_array_equal(z, z2)
    np.testing.assert_array_equal(pred, pred2)


def test_embedding_sample_draws_fewer_forget_samples_the_same_for_every_model(data):
    torch.manual_seed(0)
    model_a, model_b = (build_model("resnet18", 10, 1, width=4).eval() for _ in range(2))
    split = random_split(data, 50, seed=0)
    a = embedding_sample(model_a, data, split, n_retain=40, n_forget=12, seed=1)
    b = embedding_sample(model_b, data, split, n_retain=40, n_forget=12, seed=1)
    assert a.is_forget.sum() == 12 and len(a.z) == 52
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.is_forget, b.is_forget)
    # which training samples model A shows (matched by z), in index order; model B shows the same ones
    with torch.no_grad():
        z_all = model_a.embed(data.x_train).numpy()
    idx = ((a.z[:, None, :] - z_all[None]) ** 2).sum(-1).argmin(1)
    assert set(idx[:12].tolist()) <= set(split.forget.tolist()) and (np.diff(idx[:12]) > 0).all()
    with torch.no_grad():
        np.testing.assert_allclose(b.z, model_b.embed(data.x_train[torch.as_tensor(idx)]).numpy(), atol=1e-5)
    # the retain samples do not depend on how many forget samples are drawn
    full = embedding_sample(model_a, data, split, n_retain=40, seed=1)
    np.testing.assert_array_equal(full.z[~full.is_forget], a.z[~a.is_forget])


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


def test_figure_2_puts_every_method_on_its_own_seconds_with_a_retained_panel():
    from cu.results import Record

    def rec(curve, seconds, retained):
        return Record("m", "class", seconds=seconds[-1] + 0.1, curve=tuple(curve),
                      extra={"curve_seconds": seconds, "curve_steps": list(range(1, len(curve) + 1)),
                             "curve_retained": retained})

    curves = {"unsir": plots.curve_series(rec([0.9, 0.5, 0.1], [2.0, 4.0, 6.0], [0.9, 0.3, 0.2])),
              "contrastive": plots.curve_series(rec([0.2, 0.0], [0.05, 0.1], [0.95, 0.94])),
              "scrub": [0.8, 0.6]}  # a method without seconds keeps its points, and says so
    fig = plots.forget_curves(curves, start=0.99, retained_start=0.96)
    top, bottom = fig.axes
    assert [line.get_label() for line in top.lines] == ["Contrastive", "SCRUB (x: points)", "UNSIR"]
    np.testing.assert_allclose(top.lines[0].get_xdata(), [0, 0.05, 0.1])  # seconds, the Original at 0
    np.testing.assert_allclose(top.lines[2].get_ydata(), [99, 90, 50, 10])
    # the retained panel: the same x, D_ts^r at each point (SCRUB tracked none: no line)
    assert len(bottom.lines) == 2
    np.testing.assert_allclose(bottom.lines[1].get_xdata(), [0, 2, 4, 6])
    np.testing.assert_allclose(bottom.lines[1].get_ydata(), [96, 90, 30, 20])
    assert "seconds" in bottom.get_xlabel() and top.get_xscale() == "symlog"
    assert top.lines[0].get_drawstyle() == "steps-post" and len(fig.legends) == 1  # held between points; outside
    with pytest.raises(ValueError, match="use 'seconds' or 'points'"):
        plots.forget_curves(curves, x="steps")
    plt.close(fig)


def test_a_run_over_chosen_methods_names_its_figures_after_them():
    from cu.plots import methods_suffix

    assert methods_suffix(None) == ""  # the task's default list: the figure names of before
    assert methods_suffix(["retrain", "contrastive", "ssd:tuned"]) == "_contrastive+ssd-tuned"
    assert methods_suffix(["retrain", "salun"]) != methods_suffix(["retrain", "l1_sparse"])
    many = ["retrain"] + [f"method_{i}:tuned" for i in range(12)]
    long = methods_suffix(many)
    assert long.startswith("_12methods-") and len(long) < 30 and long != methods_suffix(many[:-1] + ["other"])
