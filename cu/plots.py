"""Figures. Each function returns a matplotlib Figure; `save_figure` writes PNG and PDF."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from cu.runtime import atomic_write


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
    """`names` in the fixed order of METHOD_STYLE (variants after their method), unknown names last."""
    rank = {m: i for i, m in enumerate(METHOD_STYLE)}
    return sorted(names, key=lambda n: (rank.get(str(n).partition(":")[0], len(rank)), str(n)))


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


def forget_curves(curves: dict, title: str = "", ylabel: str = r"accuracy on $D_{tr}^u$ (%)", start: float | None = None,
                  log_x: bool = True):
    """Figure 2: forget-set accuracy (fractions) after each recorded step, one line per method, in display
    names and fixed colours, Contrastive drawn on top. `start` (the Original's accuracy) is drawn as a
    point at x = 0 shared by every method. With `log_x` the x axis is logarithmic (symlog, so 0 stays),
    so that a method that reaches 0 within a few batches is not squeezed against the axis by one that takes
    hundreds. The x axis counts the points each method records (forget batches for most; see each
    method's docstring)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6), constrained_layout=True)
    for i, name in enumerate(method_order(curves)):
        acc = [100 * a for a in curves[name]]
        if not acc:
            continue
        x = list(range(1, len(acc) + 1))
        if start is not None:
            x, acc = [0] + x, [100 * start] + acc
        top = str(name).startswith("contrastive")
        ax.plot(x, acc, "--" if ":" in str(name) else "-", color=method_color(name, i), label=display_name(name),
                marker="o" if len(acc) <= 30 else None, markersize=3, linewidth=2.2 if top else 1.4,
                zorder=3 if top else 2)
    if log_x:
        ax.set_xscale("symlog", linthresh=1)
    ax.set(xlabel="steps recorded (forget batches for most methods)" + (", log scale" if log_x else ""),
           ylabel=ylabel, ylim=(-2, 102), title=title)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(loc="upper right", fontsize=8)
    return fig


def embedding_panels(panels: dict, method: str = "tsne", seed: int = 0, class_names=None, title: str = ""):
    """Figure 1: one panel per model of its embeddings z projected to 2-D (`cu.embedding.project_2d`,
    t-SNE or PCA), coloured by class; retain samples are small filled dots, forget samples larger
    hollow circles with a black ring, drawn on top. `panels` maps a title to (z, y, is_forget)."""
    from matplotlib.lines import Line2D

    from cu.embedding import project_2d

    n = len(panels)
    if n == 0:
        raise ValueError("embedding_panels needs at least one panel")
    ncols = n if n <= 3 else (2 if n == 4 else 3)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.2 * nrows + 0.7), squeeze=False,
                             constrained_layout=True)
    classes = sorted({int(c) for _, y, _ in panels.values() for c in y})
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    color = {c: cmap(i % cmap.N) for i, c in enumerate(classes)}
    for ax, (name, (z, y, is_forget)) in zip(axes.flat, panels.items()):
        xy = project_2d(z, method, seed)
        cols = np.array([color[int(c)] for c in y]).reshape(len(y), 4)
        forget = np.asarray(is_forget, bool)
        ax.scatter(xy[~forget, 0], xy[~forget, 1], c=cols[~forget], s=9, alpha=0.6, linewidths=0)
        # forget samples: a black ring around a class-coloured ring, hollow so retain dots show through
        ax.scatter(xy[forget, 0], xy[forget, 1], s=26, facecolors="none", edgecolors="black", linewidths=1.3)
        ax.scatter(xy[forget, 0], xy[forget, 1], s=26, facecolors="none", edgecolors=cols[forget], linewidths=0.7)
        ax.set_title(name, fontsize=12)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[n:]:
        fig.delaxes(ax)
    names = list(class_names) if class_names is not None else [str(c) for c in classes]
    handles = [Line2D([], [], ls="", marker="o", ms=7, color=color[c], label=names[c] if c < len(names) else str(c))
               for c in classes]
    handles += [Line2D([], [], ls="", marker="o", ms=3, color="black", label="retain sample"),
                Line2D([], [], ls="", marker="o", ms=6, mfc="none", mec="black", mew=1.3, label="forget sample")]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=9, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


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
    import math

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
