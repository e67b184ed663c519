"""Figures. Each function returns a matplotlib Figure; `save_figure` writes PNG and PDF."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from cu.runtime import atomic_write


def methods_suffix(methods) -> str:
    """A figure-name suffix for a run over a chosen METHODS list: '' for the task's default list (None), else
    '_' and the methods joined by '+' (Retrain, which every run has, left out; ':' written '-'), or a short hash
    of them past 80 characters. Runs of one seed over different lists then keep their own figures instead of
    overwriting each other's."""
    if methods is None:
        return ""
    names = [str(m).replace(":", "-") for m in methods if m != "retrain"]
    joined = "+".join(names)
    if len(joined) > 80:
        import hashlib

        joined = f"{len(names)}methods-{hashlib.sha256(joined.encode()).hexdigest()[:8]}"
    return f"_{joined}"


def save_figure(fig, folder: str | Path, name: str, dpi: int = 150) -> list[Path]:
    """Save `fig` as `<folder>/<name>.png` and `.pdf` (atomically, without a creation date, so that
    an unchanged figure gives an unchanged file); returns the paths."""
    paths = []
    for ext in ("png", "pdf"):
        meta = {"CreationDate": None} if ext == "pdf" else None

        def write(tmp, ext=ext, meta=meta):
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=ext, metadata=meta)

        paths.append(atomic_write(Path(folder) / f"{name}.{ext}", write))
    return paths


# One display name and one colour per method, in one order, across every figure (variants 'name:label'
# keep their method's colour, dashed, and show the label: 'Contrastive (validated)').
METHOD_STYLE = {
    "original": ("Original", "#7f7f7f"), "retrain": ("Retrain", "#000000"), "contrastive": ("Contrastive", "#d62728"),
    "finetune": ("Finetune", "#1f77b4"), "neggrad": ("NegGrad", "#ff7f0e"), "neggrad_plus": ("NegGrad+", "#e8a33d"),
    "fisher": ("Fisher", "#2ca02c"), "lcodec": ("LCODEC", "#9467bd"), "boundary_shrink": ("Boundary Shrink", "#8c564b"),
    "boundary_expansion": ("Boundary Expansion", "#c49c94"), "scrub": ("SCRUB", "#17becf"), "unsir": ("UNSIR", "#bcbd22"),
    "random_label": ("Random labels", "#393b79"), "salun": ("SalUn", "#e377c2"), "l1_sparse": ("l1-sparse", "#637939"),
    "ssd": ("SSD", "#843c39"), "bad_teacher": ("Bad Teacher", "#7b4173"),
}


def display_name(name: str) -> str:
    base, _, label = str(name).partition(":")
    shown = METHOD_STYLE.get(base, (base, None))[0]
    return f"{shown} ({label})" if label else shown


def method_color(name: str, i: int = 0):
    return METHOD_STYLE.get(str(name).partition(":")[0], (None, f"C{i % 10}"))[1]


def method_order(names) -> list[str]:
    """`names` in the fixed order of METHOD_STYLE (variants, 'name:variant' or 'name (note)', after their method),
    unknown names last."""
    rank = {m: i for i, m in enumerate(METHOD_STYLE)}
    return sorted(names, key=lambda n: (rank.get(str(n).partition(":")[0].split(" (")[0], len(rank)), str(n)))


def training_curve(history: dict, title: str = ""):
    """Loss and train/test accuracy per epoch from a `cu.training.train` history."""
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(8, 3.2), constrained_layout=True)
    ep = history["epoch"]
    ax_l.plot(ep, history["train_loss"], color="C0")
    ax_l.set(xlabel="epoch", ylabel="train loss (cross-entropy)", yscale="log")
    ax_a.plot(ep, [100 * a for a in history["train_acc"]], label="train (running)", color="C0")
    ax_a.plot(ep, [100 * a for a in history["test_acc"]], label="test", color="C1")
    ax_a.set(xlabel="epoch", ylabel="accuracy (%)", ylim=(0, 100))
    ax_a.legend(loc="lower right")
    for ax in (ax_l, ax_a):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def per_class_bars(acc: list[float], class_names, title: str = ""):
    """Per-class test accuracy as bars."""
    fig, ax = plt.subplots(figsize=(6, 2.8), constrained_layout=True)
    ax.bar(range(len(acc)), [100 * a for a in acc], color="C0")
    ax.set_xticks(range(len(acc)), class_names, rotation=45 if max(map(len, class_names)) > 2 else 0, ha="right")
    ax.set(ylabel="test accuracy (%)", ylim=(0, 100), title=title)
    ax.grid(axis="y", alpha=0.3)
    return fig


def curve_series(record) -> dict:
    """A Record's Figure 2 series: forget accuracy (`curve`) and, when the method tracked them
    (`cu.unlearners.common.ForgetCurve.extra`), the method's seconds, the step counts and the retained
    accuracy at the same points."""
    extra = getattr(record, "extra", None) or {}
    return {"forget": list(record.curve), "seconds": extra.get("curve_seconds"),
            "steps": extra.get("curve_steps"), "retained": extra.get("curve_retained")}


def forget_curves(curves: dict, title: str = "", ylabel: str = r"accuracy on $D_{tr}^u$ (%)", start: float | None = None,
                  log_x: bool = True, x: str = "seconds", retained_start: float | None = None,
                  retained_label: str = r"accuracy on $D_{ts}^r$ (%)"):
    """Figure 2: forget-set accuracy (fractions) as each method proceeds, one line per method, in display
    names and fixed colours, Contrastive drawn on top; below it, when any method tracked it, a second
    panel with the retained accuracy at the same points (so a method that wrecks the model does not
    look ideal). `curves` maps a method to a list of forget accuracies, or to `curve_series(record)`.

    `x`: 'seconds' (the method's own wall seconds, bookkeeping excluded: one unit for every method;
    a method without recorded seconds falls back to its point count, and the legend says so; when none
    has them, e.g. plain lists, the whole figure counts points) or
    'points' (the points each method records: forget batches for most, optimiser steps for SCRUB and
    UNSIR; see each method's docstring). `start` / `retained_start` (the Original's accuracies) are
    drawn at x = 0 for every method; lines are steps (between two points the model is as last measured).
    With `log_x` the x axis is symlog (0 stays), so a method that reaches 0 within a fraction of a second
    is not squeezed against the axis by one that takes minutes. The legend sits outside, on the right.
    """
    if x not in ("seconds", "points"):
        raise ValueError(f"forget_curves: x={x!r}; use 'seconds' or 'points'")
    series = {n: (c if isinstance(c, dict) else {"forget": list(c)}) for n, c in curves.items()}
    has_retained = any(s.get("retained") for s in series.values())
    rows = 2 if has_retained else 1
    fig, axes = plt.subplots(rows, 1, figsize=(6.4, 3.4 * rows), sharex=True, constrained_layout=True, squeeze=False)
    axes = axes[:, 0]
    timed = {n for n, s in series.items() if s["forget"] and s.get("seconds") is not None
             and len(s["seconds"]) == len(s["forget"])}
    x = "seconds" if x == "seconds" and timed else "points"  # no method has seconds (plain lists): points
    smallest = []
    for i, name in enumerate(method_order(series)):
        s = series[name]
        if not s["forget"]:
            continue
        by_seconds = x == "seconds" and name in timed
        xs = list(s["seconds"]) if by_seconds else list(range(1, len(s["forget"]) + 1))
        smallest += [v for v in xs if v > 0][:1]
        label = display_name(name) + ("" if by_seconds or x == "points" else " (x: points)")
        top = str(name).startswith("contrastive")
        # steps: between two points the model is as last measured (UNSIR's noise phase changes nothing)
        style = dict(color=method_color(name, i), marker="o" if len(xs) <= 30 else None, markersize=3,
                     linewidth=2.2 if top else 1.4, zorder=3 if top else 2, linestyle="--" if ":" in str(name) else "-",
                     drawstyle="steps-post")
        for ax, key, first in ((axes[0], "forget", start), (axes[-1], "retained", retained_start)):
            ys = s.get(key)
            if key == "retained" and (not has_retained or not ys or len(ys) != len(xs)):
                continue
            px, py = list(xs), [100 * a for a in ys]
            if first is not None:
                px, py = [0] + px, [100 * first] + py
            ax.plot(px, py, label=label if key == "forget" else None, **style)
    if log_x:
        thresh = 10.0 ** math.floor(math.log10(min(smallest))) if smallest and x == "seconds" else 1.0
        axes[0].set_xscale("symlog", linthresh=thresh)
        top_x = max((v for line in axes[0].lines for v in line.get_xdata()), default=thresh)
        # 0, then the decades above the linear part (a tick at the threshold itself would sit on 0's)
        axes[0].set_xticks([0] + [10.0 ** k for k in range(round(math.log10(thresh)) + 1,
                                                           math.ceil(math.log10(max(top_x, thresh))) + 1)])
    unit = ("the method's wall seconds (tracking excluded)" if x == "seconds"
            else "points recorded (forget batches for most methods)")
    axes[-1].set_xlabel(unit + (", log scale" if log_x else ""))
    axes[0].set(ylabel=ylabel, ylim=(-2, 102), title=title)
    if has_retained:
        axes[1].set(ylabel=retained_label, ylim=(-2, 102))
    for ax in axes:
        ax.grid(alpha=0.3)
    if axes[0].lines:  # outside the axes: the curves start at the top right
        fig.legend(loc="outside right upper", fontsize=8)
    return fig


def embedding_panels(panels: dict, method: str = "tsne", seed: int = 0, class_names=None, title: str = ""):
    """Figure 1: one row of panels, one per model, in the order of `panels` (name -> `cu.embedding.Embedding`
    of the same samples for every model, e.g. original, retrain, contrastive, neggrad, finetune, those run),
    each titled by its display name. Each panel projects its own z to 2-D (`cu.embedding.project_2d`, t-SNE or
    PCA, seeded by `seed`), centred and scaled to unit RMS radius, then turned onto the first panel's
    projection by the orthogonal Procrustes rotation/reflection over the shared samples, so orientations
    match across panels. Retain samples are small dots coloured by their true class; forget samples larger
    dots with a black edge, coloured by the class the model now predicts. The text in each panel is
    `cu.embedding.own_centre_share`: the share of forget samples whose nearest class centre in the full z
    is still their own."""
    from matplotlib.lines import Line2D

    from cu.embedding import own_centre_share, project_2d

    if not panels:
        raise ValueError("embedding_panels needs at least one panel")
    embs = _same_samples({name: _as_embedding(name, p) for name, p in panels.items()})
    classes = sorted({int(c) for e in embs.values() for c in np.r_[e.y, e.pred]})
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    color = {c: cmap(i % cmap.N) for i, c in enumerate(classes)}
    n = len(embs)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 4.0), squeeze=False, constrained_layout=True)
    ref = None
    for ax, (name, e) in zip(axes[0], embs.items()):
        xy = _procrustes_align(project_2d(e.z, method, seed), ref)
        ref = xy if ref is None else ref
        forget = e.is_forget
        ax.scatter(xy[~forget, 0], xy[~forget, 1], c=[color[int(c)] for c in e.y[~forget]], s=8, alpha=0.6,
                   linewidths=0)
        ax.scatter(xy[forget, 0], xy[forget, 1], c=[color[int(c)] for c in e.pred[forget]], s=30,
                   edgecolors="black", linewidths=0.8)
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi + 0.1 * (hi - lo))  # headroom for the share text
        share = own_centre_share(e.z, e.y, e.is_forget)
        ax.text(0.03, 0.97, "own centre: " + ("n/a" if np.isnan(share) else f"{100 * share:.0f} %"),
                transform=ax.transAxes, ha="left", va="top", fontsize=9,
                bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.8))
        ax.set_title(display_name(name), fontsize=12)
        ax.set_xticks([])
        ax.set_yticks([])
    names = list(class_names) if class_names is not None else [str(c) for c in classes]
    handles = [Line2D([], [], ls="", marker="o", ms=7, color=color[c], label=names[c] if c < len(names) else str(c))
               for c in classes]
    handles += [Line2D([], [], ls="", marker="o", ms=3, color="grey", label="retain sample (colour: true class)"),
                Line2D([], [], ls="", marker="o", ms=6, mfc="grey", mec="black", mew=0.8,
                       label="forget sample (colour: predicted class)")]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=9, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _as_embedding(name, panel):
    """`panel` as a `cu.embedding.Embedding` of numpy arrays (is_forget boolean), or a ValueError naming the fix."""
    from cu.embedding import Embedding

    if len(panel) != len(Embedding._fields):
        raise ValueError(f"panel {name!r} has {len(panel)} fields; pass the Embedding (z, y, is_forget, pred) "
                         f"that cu.embedding.embedding_sample returns")
    z, y, is_forget, pred = (np.asarray(a) for a in panel)
    if not len(z) == len(y) == len(is_forget) == len(pred):
        raise ValueError(f"panel {name!r}: z, y, is_forget and pred must have one entry per sample")
    return Embedding(z, y, is_forget.astype(bool), pred)


def _same_samples(embs: dict) -> dict:
    """`embs` unchanged when every panel shows the same samples (same labels and forget flags, in the same
    order), which the Procrustes alignment needs; else a ValueError naming the fix."""
    first, e0 = next(iter(embs.items()))
    for name, e in embs.items():
        if not (np.array_equal(e.y, e0.y) and np.array_equal(e.is_forget, e0.is_forget)):
            raise ValueError(f"panels {first!r} and {name!r} do not show the same samples; draw every panel with "
                             f"embedding_sample(model, data, split, n_retain, n_forget, seed) with the same "
                             f"split, sizes and seed")
    return embs


def _procrustes_align(xy: np.ndarray, ref: np.ndarray | None = None) -> np.ndarray:
    """`xy` (N x 2) centred and scaled to unit RMS distance from its centre, then, when `ref` (N x 2, already
    so standardised) is given, multiplied by the orthogonal matrix (rotation or reflection) that brings it
    closest to `ref` in least squares (scipy.linalg.orthogonal_procrustes); row i of both is one sample."""
    from scipy.linalg import orthogonal_procrustes

    xy = np.asarray(xy, np.float64) - np.mean(xy, axis=0)
    rms = np.sqrt((xy ** 2).sum(1).mean())
    xy = xy / rms if rms > 0 else xy
    if ref is None:
        return xy
    rotation, _ = orthogonal_procrustes(xy, ref)
    return xy @ rotation


def mia_bars(table, title: str = ""):
    """Member-prediction rates per model as grouped bars; `table` is `cu.mia.mia_table`'s frame
    (rows: sets, columns: models, percent) or a dict {model: MIAResult}."""
    if isinstance(table, dict):
        from cu.mia import mia_table

        table = mia_table(table)
    auc = table.loc[[r for r in table.index if r.startswith("AUC")][0]] if any(r.startswith("AUC") for r in table.index) else None
    rows = [r for r in table.index if not r.startswith("AUC") and "gap" not in r]
    models = list(table.columns)
    # the legend sits under the axes, so the bars keep the figure's full width however few models
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(models) + 2.0), 3.6), constrained_layout=True)
    width = 0.8 / len(rows)
    x = np.arange(len(models))
    for i, r in enumerate(rows):
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, table.loc[r].values, width, label=_math(r), color=f"C{i}")
    labels = [display_name(m) + (f"\nAUC {auc[m]:.0f} %" if auc is not None else "") for m in models]
    ax.set_xticks(x, labels, rotation=30 if len(models) > 5 else 0, ha="right" if len(models) > 5 else "center")
    forget_row = next((r for r in rows if r.startswith("D_tr^u")), None)
    if "retrain" in models and forget_row is not None:  # what a perfectly forgotten D_tr^u looks like to this attack
        ax.axhline(table.loc[forget_row, "retrain"], color="black", ls=":", lw=1, label="Retrain's $D_{tr}^u$ rate")
    ax.set(ylabel="predicted members (%)", ylim=(0, 105), title=title)
    ax.grid(axis="y", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=9, loc="outside lower center",
               ncol=len(rows) + 1 if len(models) >= 5 else 2,
               frameon=False, handlelength=1.2, columnspacing=1.2)
    return fig


def epsilon_distributions(eps: dict, n_models: int, title: str = ""):
    """Per-example epsilon of each method (`cu.forgetting.per_example_epsilon`) as box plots with the
    examples as points, on the challenge's half-unit buckets; the dotted line is where the forget score
    stops giving points (ceil(log(n_models - 1)))."""
    names = list(eps)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(names) + 2.0), 3.6), constrained_layout=True)
    vals = [np.minimum(np.asarray(eps[n], dtype=float), 12.0) for n in names]  # the cap (50) drawn at 12
    ax.boxplot(vals, showfliers=False, widths=0.5)
    rng = np.random.default_rng(0)
    for i, (n, v) in enumerate(zip(names, vals), 1):
        ax.scatter(i + rng.uniform(-0.18, 0.18, len(v)), v, s=6, alpha=0.5, color=method_color(n, i - 1))
    ax.axhline(math.ceil(math.log(n_models - 1)), ls=":", color="grey", lw=1)
    ax.set_xticks(range(1, len(names) + 1), [display_name(n) for n in names], rotation=30 if len(names) > 5 else 0,
                  ha="right" if len(names) > 5 else "center")
    ax.set(ylabel=r"per-example $\varepsilon$ (capped at 12)", title=title)
    ax.grid(axis="y", alpha=0.3)
    return fig


def utility_vs_forgetting(df, task: str, title: str = ""):
    """One point per method (mean over seeds of a results CSV, `class_unlearning.csv` or
    `sample_unlearning.csv` rows): x = distance of its D_tr^u accuracy to Retrain's (0 = forgets like
    Retrain), y = its utility (D_ts^r for a class, D_ts for samples), marker area proportional to its
    seconds; Retrain's utility as a dotted line. Up and left is better."""
    utility = "acc_test_retain" if task == "class" else "acc_test"
    if "retrain" not in set(df["method"]):
        raise ValueError("utility_vs_forgetting needs Retrain's rows (the reference)")
    ref_seed = df[df.method == "retrain"].set_index("seed")["acc_train_forget"]
    df = df.assign(distance=(df["acc_train_forget"] - df["seed"].map(ref_seed)).abs())  # per seed, then averaged
    mean = df.groupby("method")[[utility, "distance", "seconds"]].mean()
    ref = mean.loc["retrain"]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)
    secs = mean["seconds"].clip(lower=0)
    size = 30 + 400 * (secs / secs.max() if secs.max() > 0 else 0)
    for i, m in enumerate(method_order([m for m in mean.index if m not in ("original", "retrain")])):
        r = mean.loc[m]
        ax.scatter(100 * r["distance"], 100 * r[utility], s=size[m], color=method_color(m, i), alpha=0.8,
                   edgecolors="black", linewidths=0.5, zorder=3)
        ax.annotate(display_name(m), (100 * r["distance"], 100 * r[utility]), textcoords="offset points",
                    xytext=(6, 4), fontsize=8)
    ax.axhline(100 * ref[utility], color="black", ls=":", lw=1)
    ax.scatter([0], [100 * ref[utility]], marker="*", s=120, color="black", zorder=4)
    ax.annotate("Retrain", (0, 100 * ref[utility]), textcoords="offset points", xytext=(6, -12), fontsize=8)
    ax.set_xlim(left=-1)
    ax.set(xlabel=r"$|D_{tr}^u$ accuracy $-$ Retrain's$|$ (pt): forgetting, 0 is best",
           ylabel=("$D_{ts}^r$" if task == "class" else "$D_{ts}$") + " accuracy (%): utility", title=title)
    ax.grid(alpha=0.3)
    return fig


def _math(label: str) -> str:
    """'D_tr^u' -> mathtext, for the plain-text set names that tables print."""
    for a, b in (("D_tr^u", r"$D_{tr}^u$"), ("D_tr^r", r"$D_{tr}^r$"), ("D_ts", r"$D_{ts}$")):
        label = label.replace(a, b)
    return label


def show(fig) -> None:
    """Display `fig` once as the cell's output and close it. The cell then records the same
    text output ("<Figure size ... with N Axes>", plus a PNG under the inline backend) whether the
    kernel draws inline (papermill) or runs with MPLBACKEND=Agg (nbval), so nbval can compare it.
    Assign `save_figure`'s result (`paths = ...`) rather than ending the cell with `;`: nbval's
    replay does not honour the semicolon."""
    from IPython.display import display

    display(fig)
    plt.close(fig)
