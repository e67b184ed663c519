"""'What this shows': a few sentences on what a notebook's run found, written from its own numbers.

Every numbered notebook ends with a "What this shows" cell that calls one function of this module
with what the notebook has just computed (its rows, tables, attack results, scores) and displays the
Markdown it returns: three to six bullets that say in words what the run shows, with the run's
numbers. The rule: no number in that text is typed by hand; every one comes from the arguments, so
the text is true of the run that printed it, for any profile, seed and METHODS (a method that did
not run is left out or said to be missing; nothing here raises because a method is absent).

The cell is tagged `nbval-ignore-output`: its floats differ between CPUs (kernel dispatch, thread
count), so nbval does not compare them. It does not assert anything either: the claims a notebook
must reproduce are asserted, with tolerances that hold on any CPU, by its checks cell (`cu.checks`),
which runs just before it. Thresholds that the text uses (chance level 1/C, the fit floor, the
attack's no-power AUC, the D_ts^r margin) are the checks' own constants or the notebook's parameters.

Conventions: accuracies and rates are fractions in the arguments and percent with one decimal in the
text; a gap is `method - Retrain` in percentage points ('-0.7 pt'), computed from the two percentages
as printed (so that '84.2 % vs 84.9 %' always reads '-0.7 pt'); Retrain is the ideal of every
unlearning method (not 100 % or 0 %). Methods appear under `cu.plots.display_name`, variants too
('contrastive:tuned' is 'Contrastive (tuned)').
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from cu.checks import FIT_FLOOR, NO_POWER_AUC
from cu.plots import display_name

REFERENCES = ("original", "retrain", "retrain (held out)")


# --------------------------------------------------------------------------- formatting helpers

def _num(row: Any, key: str) -> float | None:
    """row[key] (a mapping, a pandas row or an object's attribute) as a float; None if absent or NaN."""
    if row is None:
        return None
    if isinstance(row, Mapping):
        v = row.get(key)
    elif hasattr(row, key):
        v = getattr(row, key)
    else:
        try:
            v = row[key]
        except (KeyError, IndexError, TypeError):
            return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _p(x: float) -> float:
    """A fraction as percent, rounded to one decimal (the printed value)."""
    return round(100 * x, 1)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{_p(x):.1f} %"


def _gap(a: float, b: float) -> float:
    """a - b in percentage points, from the two percentages as printed."""
    g = round(_p(a) - _p(b), 1)
    return 0.0 if g == 0 else g


def _fmt_gap(g: float) -> str:
    return "0.0 pt" if g == 0 else f"{g:+.1f} pt"


def _name(method: str) -> str:
    if method == "retrain (held out)":
        return "Retrain (held out)"
    return display_name(method)


def _names(methods: Iterable[str]) -> str:
    shown = [_name(m) for m in methods]
    if not shown:
        return "none"
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def _seconds(s: float) -> str:
    return f"{s:.3g} s"


def _times(r: float) -> str:
    return f"{r:.1f}×" if r < 10 else f"{r:.0f}×"


def _rows(rows) -> list[dict]:
    """`rows` as a list of dicts (a list of dicts or a pandas DataFrame, its methods a column or the index)."""
    if hasattr(rows, "to_dict"):
        if "method" not in rows.columns and rows.index.name == "method":
            rows = rows.reset_index()
        return rows.to_dict("records")
    return [dict(r) for r in rows or []]


def _by_method(rows) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in _rows(rows):
        out.setdefault(str(r.get("method")), r)
    return out


def _primary(names: Iterable[str], base: str = "contrastive") -> str | None:
    """`base` if it ran, else its first variant ('contrastive:tuned'), else None."""
    names = list(names)
    if base in names:
        return base
    return next((n for n in names if n.partition(":")[0] == base), None)


def _bullets(lines: Iterable[str]) -> str:
    return "\n".join(f"- {line}" for line in lines if line) + "\n"


def _ranking(values: Mapping[str, float], descending: bool, decimals: int = 3) -> str:
    """'A (0.310) > B = C (0.000)' (or 'A (1.0) < B (2.0)' ascending): methods ordered by value, ties (at the
    printed precision) joined by '='."""
    groups: list[tuple[float, list[str]]] = []
    for name, v in sorted(values.items(), key=lambda kv: -kv[1] if descending else kv[1]):
        shown = round(v, decimals)
        if groups and groups[-1][0] == shown:
            groups[-1][1].append(name)
        else:
            groups.append((shown, [name]))
    return (" > " if descending else " < ").join(f"{' = '.join(_name(n) for n in names)} ({v:.{decimals}f})"
                                                for v, names in groups)


def _order(values: Mapping[str, float], descending: bool, decimals: int = 3) -> list[tuple[str, int]]:
    """(method, dense rank) with ties at the printed precision sharing a rank."""
    shown = {n: round(v, decimals) for n, v in values.items()}
    levels = sorted(set(shown.values()), reverse=descending)
    return sorted(((n, levels.index(v)) for n, v in shown.items()), key=lambda t: (t[1], t[0]))


def _stopping(row: Mapping, condition: str) -> str:
    stopped, passes = row.get("stopped"), row.get("passes")
    n = "" if passes is None else f" after {int(passes)} pass{'es' if int(passes) != 1 else ''}"
    if stopped == "condition":
        return f"stopped by its own condition ({condition}){n}"
    if stopped == "max_passes":
        return f"hit its pass cap{n} without meeting {condition}"
    return f"ran a fixed budget{n.replace(' after', ' of')}" if stopped == "fixed" else ""


def _time_fraction(row: Mapping, retrain: Mapping | None) -> str:
    s, r = _num(row, "seconds"), _num(retrain, "seconds") if retrain is not None else None
    if s is None or r is None or r <= 0:
        return ""
    frac = s / r
    shown = "<0.1 %" if 0 < frac < 0.0005 else _pct(frac)
    return f"took {_seconds(s)}, {shown} of Retrain's {_seconds(r)}"


# --------------------------------------------------------------------------- notebook 01

def training_findings(train_acc: float, test_acc: float, history: Mapping | None = None,
                      per_class: Iterable[float] | None = None, class_names: Iterable[str] | None = None,
                      fit_floor: float = FIT_FLOOR) -> str:
    """Notebook 01: the Original's training and test accuracy, whether it fits its training set
    (training accuracy >= `fit_floor`, the paper's regime), and from `history` (a `cu.training.train`
    history) and `per_class` (test accuracy per class) how it got there and where it is weakest."""
    lines = [f"The Original reaches {_pct(train_acc)} training accuracy and {_pct(test_acc)} test accuracy "
             f"(a generalisation gap of {abs(_gap(train_acc, test_acc)):.1f} pt)."]
    if train_acc >= fit_floor:
        lines.append(f"It fits its training set (training accuracy >= {100 * fit_floor:.1f} %): the paper's regime, "
                     "in which the forget samples are memorised and unlearning has something to remove.")
    else:
        lines.append(f"It does **not** fit its training set (training accuracy < {100 * fit_floor:.1f} %): unlike the "
                     "paper's regime, some training samples already look unseen, so forgetting them is partly free.")
    if history:
        epochs = list(history.get("epoch") or [])
        tests = [t for t in (history.get("test_acc") or []) if t is not None]
        secs = list(history.get("seconds") or [])
        parts = []
        if epochs:
            parts.append(f"{len(epochs)} epochs" + (f" in {_seconds(secs[-1])} (when it was trained)" if secs else ""))
        if tests:
            best = max(range(len(tests)), key=lambda i: tests[i])
            ep = epochs[best] if best < len(epochs) else best + 1
            parts.append(f"test accuracy peaked at {_pct(tests[best])} in epoch {ep} and ended at {_pct(tests[-1])}")
        if parts:
            lines.append("Training: " + "; ".join(parts) + ".")
    if per_class is not None:
        acc = [float(a) for a in per_class]
        if acc:
            names = [str(n) for n in class_names] if class_names is not None else [str(i) for i in range(len(acc))]
            lo, hi = min(range(len(acc)), key=acc.__getitem__), max(range(len(acc)), key=acc.__getitem__)
            lines.append(f"Per class, test accuracy ranges from {_pct(acc[lo])} (class {names[lo]}) "
                         f"to {_pct(acc[hi])} (class {names[hi]}).")
    return _bullets(lines)


# --------------------------------------------------------------------------- notebook 02

def class_findings(rows, num_classes: int, near_pt: float = 3.0) -> str:
    """Notebook 02 (Tables 1/2), from `cu.experiment.run_methods` rows: whether Contrastive forgot the class
    (D_tr^u and D_ts^u at most chance, 1/C, as Eq. 8 asks of D_ts^u), its D_ts^r gap to Retrain, how it stopped and
    its time as a fraction of Retrain's; which other methods forgot the class and which of those kept D_ts^r
    within `near_pt` points of Retrain's (at most `near_pt` under it, as the checks ask of Contrastive)."""
    by = _by_method(rows)
    chance = 1 / num_classes
    re, orig = by.get("retrain"), by.get("original")

    def forgot(r) -> bool | None:
        tr, ts = _num(r, "acc_train_forget"), _num(r, "acc_test_forget")
        return None if tr is None or ts is None else (tr <= chance and ts <= chance)

    def retain(r) -> str:
        a = _num(r, "acc_test_retain")
        if a is None:
            return "D_ts^r n/a"
        b = _num(re, "acc_test_retain") if re is not None else None
        return f"D_ts^r {_pct(a)}" + ("" if b is None else f" vs Retrain's {_pct(b)} ({_fmt_gap(_gap(a, b))})")

    def short(m) -> str:
        a, b = _num(by[m], "acc_test_retain"), _num(re, "acc_test_retain")
        return f"{_name(m)} (D_ts^r {_pct(a)}" + ("" if a is None or b is None else f", {_fmt_gap(_gap(a, b))}") + ")"

    def kept(r) -> bool:
        a, b = _num(r, "acc_test_retain"), _num(re, "acc_test_retain") if re is not None else None
        return a is not None and b is not None and _gap(a, b) >= -near_pt

    lines = []
    if re is not None:
        lines.append(f"Retrain (the ideal, never saw the class): D_tr^u {_pct(_num(re, 'acc_train_forget'))}, "
                     f"D_ts^u {_pct(_num(re, 'acc_test_forget'))}, D_ts^r {_pct(_num(re, 'acc_test_retain'))}"
                     + (f"; the Original knew the class (D_ts^u {_pct(_num(orig, 'acc_test_forget'))})."
                        if orig is not None else "."))
    else:
        lines.append("Retrain did not run: there is no reference for the D_ts^r gaps below.")
    co = _primary(by)
    if co is None:
        lines.append("Contrastive did not run (not in METHODS).")
    else:
        r = by[co]
        f = forgot(r)
        verdict = ("forgot the class" if f else "did **not** forget the class" if f is not None else
                   "has no forget accuracies")
        how = _stopping(r, "Eq. 8")
        lines.append(f"{_name(co)} {verdict} (D_tr^u {_pct(_num(r, 'acc_train_forget'))}, "
                     f"D_ts^u {_pct(_num(r, 'acc_test_forget'))}; chance 1/C = {_pct(chance)}) and keeps {retain(r)}"
                     + (f"; it {how}" if how else "") + ".")
        t = _time_fraction(r, re)
        if t:
            lines.append(f"{_name(co)} {t}.")
    others = [m for m in by if m not in REFERENCES and m != co]
    if others:
        gone = [m for m in others if forgot(by[m])]
        stayed = [m for m in others if forgot(by[m]) is False]
        line = f"Other methods that forgot the class (D_tr^u and D_ts^u <= {_pct(chance)}): {_names(gone)}"
        if gone and re is not None:
            good = [m for m in gone if kept(by[m])]
            bad = [m for m in gone if not kept(by[m])]
            line += (f"; of these, D_ts^r stays within {near_pt:g} pt of Retrain's for {_names(good)}"
                     + (f", and falls further for {'; '.join(short(m) for m in bad)}"
                        if bad else ""))
        lines.append(line + ".")
        if stayed:
            lines.append("Did not forget the class: " + "; ".join(
                f"{_name(m)} (D_tr^u {_pct(_num(by[m], 'acc_train_forget'))}, "
                f"D_ts^u {_pct(_num(by[m], 'acc_test_forget'))})"
                for m in stayed) + ".")
    return _bullets(lines)


# --------------------------------------------------------------------------- notebook 03

def sample_findings(rows, near_pt: float = 5.0) -> str:
    """Notebook 03 (Tables 4/5), from `cu.experiment.run_methods` rows: each method's D_ts and D_tr^u gaps
    to Retrain's (the ideal: Retrain never saw D_tr^u), the method closest to Retrain (smallest sum of the
    two absolute gaps), which methods stay within `near_pt` points on both, which left D_tr^u where the
    Original had it, and how Contrastive stopped and its time as a fraction of Retrain's."""
    by = _by_method(rows)
    re, orig = by.get("retrain"), by.get("original")
    methods = [m for m in by if m not in REFERENCES]
    lines = []
    if re is None:
        lines.append("Retrain did not run: without the ideal there are no gaps to report. Accuracies: " + "; ".join(
            f"{_name(m)} D_ts {_pct(_num(by[m], 'acc_test'))}, D_tr^u {_pct(_num(by[m], 'acc_train_forget'))}"
            for m in methods) + ".")
        return _bullets(lines)
    re_ts, re_u = _num(re, "acc_test"), _num(re, "acc_train_forget")
    lines.append(f"Retrain (the ideal: it never saw D_tr^u) scores D_ts {_pct(re_ts)} and D_tr^u {_pct(re_u)}; "
                 "a method forgets well when both of its accuracies sit at these, not at 0 %."
                 + (f" The Original (no unlearning) is at D_tr^u {_pct(_num(orig, 'acc_train_forget'))} "
                    f"({_fmt_gap(_gap(_num(orig, 'acc_train_forget'), re_u))})."
                    if orig is not None and _num(orig, "acc_train_forget") is not None and re_u is not None else ""))
    gaps = {}
    for m in methods:
        ts, u = _num(by[m], "acc_test"), _num(by[m], "acc_train_forget")
        if None not in (ts, u, re_ts, re_u):
            gaps[m] = (_gap(ts, re_ts), _gap(u, re_u))
    if not methods:
        lines.append("No unlearning method ran (METHODS is empty).")
        return _bullets(lines)
    lines.append("Gaps to Retrain (D_ts, D_tr^u): " + "; ".join(
        f"{_name(m)} {_pct(_num(by[m], 'acc_test'))} ({_fmt_gap(gaps[m][0])}), "
        f"{_pct(_num(by[m], 'acc_train_forget'))} ({_fmt_gap(gaps[m][1])})" if m in gaps else f"{_name(m)} n/a"
        for m in methods) + ".")
    if gaps:
        dist = {m: round(abs(g[0]) + abs(g[1]), 1) for m, g in gaps.items()}
        best = min(dist.values())
        closest = [m for m in gaps if dist[m] == best]
        line = (f"Closest to Retrain: {_names(closest)} (|D_ts gap| + |D_tr^u gap| = {best:.1f} pt"
                + (", tied" if len(closest) > 1 else "") + ")")
        if orig is not None and _num(orig, "acc_test") is not None and _num(orig, "acc_train_forget") is not None:
            d0 = round(abs(_gap(_num(orig, "acc_test"), re_ts)) + abs(_gap(_num(orig, "acc_train_forget"), re_u)), 1)
            line += f"; the Original, which unlearned nothing, is {d0:.1f} pt away"
        within = [m for m, g in gaps.items() if abs(g[0]) <= near_pt and abs(g[1]) <= near_pt]
        lines.append(line + f". Within {near_pt:g} pt of Retrain on both: {_names(within)}.")
    if orig is not None and _num(orig, "acc_train_forget") is not None:
        o_u = _p(_num(orig, "acc_train_forget"))
        same = [m for m in methods
                if _num(by[m], "acc_train_forget") is not None and _p(_num(by[m], "acc_train_forget")) == o_u]
        if same:
            lines.append(f"Left D_tr^u where the Original had it ({o_u:.1f} %): {_names(same)}.")
    co = _primary(by)
    if co is None:
        lines.append("Contrastive did not run (not in METHODS).")
    else:
        parts = [p for p in (_stopping(by[co], "Eq. 9"), _time_fraction(by[co], re)) if p]
        if parts:
            lines.append(f"{_name(co)} " + " and ".join(parts) + ".")
    return _bullets(lines)


# --------------------------------------------------------------------------- notebook 04

def mia_findings(results: Mapping[str, Any], rows=None, min_auc: float = NO_POWER_AUC,
                 collapse_pt: float = 10.0) -> str:
    """Notebook 04 (Table 6), from the paper attack's results ({model name: `cu.mia.MIAResult`}, rates as
    fractions) and optionally the `run_methods` rows: the attack's power (its AUC on the Original; below
    `min_auc` its rates say nothing about forgetting), each method's D_tr^u member rate and its gap to
    Retrain's (the ideal: after Retrain the forget samples are true non-members), the closest method, and
    methods whose low rate comes from a model that broke (test accuracy more than `collapse_pt` under Retrain's)."""
    results = dict(results or {})
    o, re = results.get("original"), results.get("retrain")
    methods = [m for m in results if m not in REFERENCES]
    lines = []
    powerless = False
    if o is None or _num(o, "mia_auc") is None:
        lines.append("The Original was not attacked: the attack's power is unknown, so read its rates with care.")
    else:
        auc = _num(o, "mia_auc")
        held = (f" (it calls {_pct(_num(o, 'mia_retain'))} of held-out members and {_pct(_num(o, 'mia_test'))} of "
                "held-out non-members members)" if _num(o, "mia_retain") is not None and _num(o, "mia_test") is not None
                else "")
        if auc < min_auc:
            powerless = True
            lines.append(f"Attack power: AUC {_pct(auc)} on the Original{held}, below {_pct(min_auc)} "
                         "(50 % = guessing): "
                         "**the attack has no power here, so its member rates say nothing about forgetting**; "
                         "judge forgetting by the accuracies (notebook 03) and the per-example scores (notebook 06).")
        else:
            lines.append(f"Attack power: AUC {_pct(auc)} on the Original{held}, at least {_pct(min_auc)}: "
                         "the attack tells members from non-members, so its rates on D_tr^u mean something.")
    if re is None or _num(re, "mia_forget") is None:
        lines.append("Retrain was not attacked: no ideal to measure the member rates against. D_tr^u member rates: "
                     + "; ".join(f"{_name(m)} {_pct(_num(results[m], 'mia_forget'))}" for m in ["original", *methods]
                                 if m in results) + ".")
        return _bullets(lines)
    re_u = _num(re, "mia_forget")
    lines.append("Retrain (the ideal: its D_tr^u samples are true non-members) gets a D_tr^u member rate of "
                 f"{_pct(re_u)}"
                 + (f"; the Original {_pct(_num(o, 'mia_forget'))} ({_fmt_gap(_gap(_num(o, 'mia_forget'), re_u))})"
                    if o is not None and _num(o, "mia_forget") is not None else "") + ".")
    gaps = {m: _gap(_num(results[m], "mia_forget"), re_u) for m in methods
            if _num(results[m], "mia_forget") is not None}
    if not gaps:
        lines.append("No unlearning method was attacked.")
        return _bullets(lines)
    lines.append("D_tr^u member rate and gap to Retrain's: " + "; ".join(
        f"{_name(m)} {_pct(_num(results[m], 'mia_forget'))} ({_fmt_gap(g)})" for m, g in gaps.items()) + ".")
    best = min(abs(g) for g in gaps.values())
    closest = [m for m, g in gaps.items() if abs(g) == best]
    lines.append(f"Closest to Retrain by this attack: {_names(closest)} ({best:.1f} pt away)"
                 + (", but the attack has no power, so this is no evidence of forgetting" if powerless else "") + ".")
    by = _by_method(rows) if rows is not None else {}
    if by.get("retrain") is not None:
        def acc(r):
            a = _num(r, "acc_test")
            return _num(r, "acc_test_retain") if a is None else a
        ra = acc(by["retrain"])
        broken = [m for m in methods if m in by and acc(by[m]) is not None and ra is not None
                  and -_gap(acc(by[m]), ra) > collapse_pt]
        if broken:
            lines.append(f"Test accuracy more than {collapse_pt:g} pt under Retrain's, so a low rate there is a broken "
                         "model rather than forgetting: " + "; ".join(
                             f"{_name(m)} {_pct(acc(by[m]))} ({_fmt_gap(_gap(acc(by[m]), ra))})" for m in broken) + ".")
    return _bullets(lines)


# --------------------------------------------------------------------------- notebook 05

def efficiency_findings(times, num_classes: int | None = None, methods: Iterable[str] = ("contrastive",)) -> str:
    """Notebook 05 (Tables 3/7), from its `times` table (one row per task and method: task, method, seconds,
    optionally retimed and the accuracies): per task each method's time as a fraction of Retrain's and its
    speed ratio (Retrain's time over its own), the fastest, the methods slower than Retrain, whether each
    of `methods` is faster than Retrain on every task, and where the times come from. With `num_classes`,
    class methods that did not forget (D_ts^u above 1/C) are named: their time does not count."""
    rows = _rows(times)
    tasks = list(dict.fromkeys(str(r.get("task")) for r in rows))
    lines = []
    faster: dict[str, dict[str, bool]] = {}
    for task in tasks:
        by = _by_method([r for r in rows if str(r.get("task")) == task])
        re = by.get("retrain")
        others = [m for m in by if m not in REFERENCES and _num(by[m], "seconds") is not None]
        r_s = _num(re, "seconds") if re is not None else None
        if r_s is None or r_s <= 0:
            lines.append(f"{task.capitalize()} unlearning: Retrain was not timed, so there is no reference; times: "
                         + "; ".join(f"{_name(m)} {_seconds(_num(by[m], 'seconds'))}" for m in others) + ".")
            continue
        parts = []
        for m in others:
            s = _num(by[m], "seconds")
            frac = s / r_s
            ratio = (f"{_times(r_s / s)} faster" if s < r_s else f"{_times(s / r_s)} slower" if s > r_s
                     else "as fast") if s > 0 else "no measurable time"
            parts.append(f"{_name(m)} {_seconds(s)} ({'<0.1 %' if 0 < frac < 0.0005 else _pct(frac)}, {ratio})")
            faster.setdefault(m, {})[task] = s < r_s
        line = (f"{task.capitalize()} unlearning, Retrain {_seconds(r_s)}: "
                + ("; ".join(parts) if parts else "no other method ran"))
        if others:
            fastest = min(others, key=lambda m: _num(by[m], "seconds"))
            slow = [m for m in others if _num(by[m], "seconds") >= r_s]
            line += f". Fastest: {_name(fastest)}; slower than Retrain: {_names(slow)}"
        lines.append(line + ".")
        if task == "class" and num_classes:
            chance = 1 / num_classes
            kept = [m for m in others if _num(by[m], "acc_test_forget") is not None
                    and _num(by[m], "acc_test_forget") > chance]
            if kept:
                lines.append(f"Fast does not count where a method did not unlearn: {_names(kept)} kept D_ts^u above "
                             f"1/C = {_pct(chance)} in the class task.")
    for m in methods:
        name = _primary(faster, m)
        if name is None:
            continue
        res = faster[name]
        if all(res.values()):
            lines.append(f"{_name(name)} is faster than Retrain on {'both tasks' if len(res) == 2 else _names(res)} "
                         "(the paper's efficiency claim).")
        else:
            slow = _names(t for t, ok in res.items() if not ok)
            lines.append(f"{_name(name)} is **not** faster than Retrain on {slow}.")
    retimed = {r.get("retimed") for r in rows if "retimed" in r}
    if retimed == {True}:
        lines.append("All times were measured in this run, one method after the other on this machine.")
    elif retimed:
        lines.append("Times come from the cache (each measured when its model was computed; Retrain's when it was "
                     "trained): compare the fractions, which carry over between machines, more than the seconds.")
    return _bullets(lines)


# --------------------------------------------------------------------------- notebook 06

def forgetting_findings(scores: Mapping[str, Mapping], n_models: int | None = None, comparison=None) -> str:
    """Notebook 06, from its `scores` ({name: `cu.forgetting.quality` scores}) and optionally the
    `cu.forgetting.compare_with_mia` table (None when mia.csv lacks this seed): the ceiling (Retrain held
    out) and floor (Original), the methods ranked by forget score and by final score, U-LiRA's AUC
    (0.5 = ideal), and whether the forget-score ranking agrees with the MIA's (smallest D_tr^u
    member-rate gap to Retrain first)."""
    scores = dict(scores or {})
    methods = [m for m in scores if m not in REFERENCES and _num(scores[m], "forget_score") is not None]
    lines = []
    n = f"{n_models} models per method" if n_models else "this many models"
    ceil, floor = scores.get("retrain (held out)"), scores.get("original")
    c, f0 = _num(ceil, "forget_score"), _num(floor, "forget_score")
    if c is not None:
        lines.append(f"With {n}, Retrain against other Retrains scores {c:.3f}: the best any method can score here"
                     + (f"; the Original (no unlearning) scores {f0:.3f}" if f0 is not None else "") + ".")
    elif f0 is not None:
        lines.append(f"With {n}, the Original (no unlearning) scores {f0:.3f}; Retrain held out was not scored, "
                     "so the ceiling at this number of models is unknown.")
    if not methods:
        lines.append("No unlearning method was scored (METHODS is empty).")
        return _bullets(lines)
    fs = {m: _num(scores[m], "forget_score") for m in methods}
    line = f"Forget score (1 = perfect): {_ranking(fs, descending=True)}"
    top = [m for m, r in _order(fs, True) if r == 0]
    if len(top) == len(fs) > 1:
        line += f"; all tied, so at {n} the score does not separate them"
    elif c and len(top) == 1:
        line += f"; the best, {_name(top[0])}, reaches {_pct(fs[top[0]] / c)} of the ceiling"
    lines.append(line + ".")
    final = {m: _num(scores[m], "final_score") for m in methods if _num(scores[m], "final_score") is not None}
    if final:
        same = dict(_order(final, True)) == dict(_order({m: fs[m] for m in final}, True))
        lines.append(f"Final score (forget score × accuracy relative to Retrain): {_ranking(final, descending=True)}"
                     + ("; the same order as the forget score." if same else
                        "; the accuracy factor changes the order."))
    au = {m: abs(_num(scores[m], "ulira_auc") - 0.5) for m in methods if _num(scores[m], "ulira_auc") is not None}
    if au:
        closest = min(au, key=au.get)
        lines.append("U-LiRA AUC (0.5 = indistinguishable from Retrain): " + "; ".join(
            f"{_name(m)} {_num(scores[m], 'ulira_auc'):.3f}" for m in au)
            + (f" (Retrain held out: {_num(ceil, 'ulira_auc'):.3f})" if _num(ceil, "ulira_auc") is not None else "")
            + f"; closest to 0.5: {_name(closest)}.")
    lines.append(_mia_agreement(comparison, methods))
    return _bullets(lines)


def _mia_agreement(comparison, methods: list[str]) -> str:
    if comparison is None:
        return "No comparison with notebook 04's attack: mia.csv has no paper attack for this seed."
    rows = _rows(comparison.reset_index().rename(columns={"index": "method"}) if hasattr(comparison, "reset_index")
                 else comparison)
    by = {str(r.get("method")): r for r in rows}
    both = [m for m in methods if m in by and _num(by[m], "forget_score") is not None
            and _num(by[m], "mia_gap_to_retrain_pt") is not None]
    if len(both) < 2:
        return (f"Notebook 04's attack covers {_names(both)} of the scored methods: too few to compare rankings.")
    fs = {m: _num(by[m], "forget_score") for m in both}
    gap = {m: _num(by[m], "mia_gap_to_retrain_pt") for m in both}
    a, b = dict(_order(fs, True)), dict(_order(gap, False, 1))
    order_mia = _ranking(gap, descending=False, decimals=1)
    head = f"The MIA ranking (D_tr^u member-rate gap to Retrain in pt, smallest first: {order_mia})"
    if all(a[m] == b[m] for m in both):
        return f"{head} **agrees** with the forget-score ranking."
    if len(set(a.values())) == 1:
        return (f"{head} cannot be checked against the forget score, which ties all of them: at this number of "
                "models the per-example score does not separate the methods.")
    flips = [(x, y) for i, x in enumerate(both) for y in both[i + 1:] if (a[x] - a[y]) * (b[x] - b[y]) < 0]
    if not flips:
        detail = " in which methods tie"
    elif len(flips) <= MAX_SWAPS_LISTED:
        detail = ": " + "; ".join(f"{_name(x)} and {_name(y)} swap places" for x, y in flips)
    else:  # many methods: the count of opposite pairs, the rank correlation and the methods that move most
        from scipy.stats import kendalltau

        tau = kendalltau([a[m] for m in both], [b[m] for m in both]).statistic
        la, lb = max(a.values()) + 1, max(b.values()) + 1
        moves = sorted(both, key=lambda m: (-abs(a[m] / max(la - 1, 1) - b[m] / max(lb - 1, 1)), m))[:3]
        detail = (f": {len(flips)} of {len(both) * (len(both) - 1) // 2} pairs of methods in opposite order "
                  f"(Kendall's tau-b {tau:.2f}); moving most, {'; '.join(f'{_name(m)} {_ordinal(a[m] + 1)} of {la} by the forget score and {_ordinal(b[m] + 1)} of {lb} by the MIA' for m in moves)} (tied methods share a rank)")
    return (f"{head} **disagrees** with the forget-score ranking{detail}"
            "; where they differ, trust the per-example score, the stronger test.")


MAX_SWAPS_LISTED = 3
"""More pairs of methods in opposite order than this are summarised (count, Kendall's tau-b, largest moves)."""


def _ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"
