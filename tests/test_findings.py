"""cu.findings: the 'what this shows' text states the run's own numbers and the right conclusions."""
import pandas as pd
import pytest

from cu import findings as F
from cu.mia import MIAResult


def bullets(md: str) -> list[str]:
    lines = md.strip().splitlines()
    assert lines and all(line.startswith("- ") for line in lines), md
    return [line[2:] for line in lines]


def line_with(md: str, text: str) -> str:
    hits = [b for b in bullets(md) if text in b]
    assert len(hits) == 1, f"{text!r} in {len(hits)} bullets of:\n{md}"
    return hits[0]


def cls(method, retain, tr_u, ts_u, seconds=1.0, passes=1, stopped="fixed"):
    return dict(method=method, setting="paper", acc_test_retain=retain, acc_train_forget=tr_u, acc_test_forget=ts_u,
                seconds=seconds, passes=passes, stopped=stopped)


CLASS_ROWS = [
    cls("original", 0.850, 1.0, 1.0, 0.0, 0),
    cls("retrain", 0.849, 0.0, 0.0, 20.0, 30),
    cls("contrastive", 0.842, 0.0, 0.027, 1.0, 2, "condition"),
    cls("neggrad", 0.830, 0.05, 0.08, 0.5, 5, "condition"),       # forgot, -1.9 pt: within 3
    cls("unsir", 0.500, 0.0, 0.0, 3.0, 2),                          # forgot, -34.9 pt: not within 3
    cls("scrub", 0.848, 0.95, 0.97, 2.0, 3),                        # did not forget
    cls("boundary_shrink", 0.845, 0.12, 0.05, 2.0, 10),             # D_tr^u above 1/C: did not forget
]


def test_class_findings_states_the_gap_time_and_who_forgot():
    md = F.class_findings(CLASS_ROWS, num_classes=10, near_pt=3.0)
    assert 3 <= len(bullets(md)) <= 6
    co = line_with(md, "Contrastive forgot the class")
    assert "84.2 %" in co and "84.9 %" in co and "(-0.7 pt)" in co
    assert "D_ts^u 2.7 %" in co and "10.0 %" in co and "Eq. 8" in co and "2 passes" in co
    assert "5.0 % of Retrain's" in line_with(md, "Contrastive took")
    others = line_with(md, "Other methods that forgot")
    forgot = others.split(":")[1].split(";")[0]
    assert "NegGrad" in forgot and "UNSIR" in forgot and "SCRUB" not in forgot and "Boundary Shrink" not in forgot
    within, further = others.split("within 3 pt of Retrain's for ")[1].split(", and falls further for ")
    assert "NegGrad" in within and "UNSIR" not in within
    assert "UNSIR" in further and "-34.9 pt" in further
    missed = line_with(md, "Did not forget the class")
    assert "SCRUB" in missed and "Boundary Shrink" in missed and "NegGrad" not in missed


def test_class_findings_says_when_contrastive_did_not_forget():
    rows = [r if r["method"] != "contrastive" else cls("contrastive", 0.84, 0.3, 0.2, stopped="max_passes", passes=50)
            for r in CLASS_ROWS]
    co = line_with(F.class_findings(rows, 10), "Contrastive did **not** forget the class")
    assert "pass cap" in co and "50 passes" in co


def test_class_findings_adapt_to_missing_methods_and_variants():
    rows = [r for r in CLASS_ROWS if r["method"] not in ("contrastive", "neggrad", "unsir", "boundary_shrink")]
    md = F.class_findings(rows, 10)
    assert "Contrastive did not run" in md
    variant = dict(CLASS_ROWS[2], method="contrastive:validated")
    md = F.class_findings([*rows, variant], 10)
    assert "(-0.7 pt)" in line_with(md, "Contrastive (validated) forgot the class")
    md = F.class_findings([r for r in CLASS_ROWS if r["method"] != "retrain"], 10)  # no reference: no gaps, no error
    assert "Retrain did not run" in md and "pt)" not in line_with(md, "Contrastive forgot")
    assert bullets(F.class_findings(CLASS_ROWS[:2], 10))  # only the references


def smp(method, ts, tr_u, seconds=1.0, passes=1, stopped="fixed"):
    return dict(method=method, setting="paper", acc_test=ts, acc_train_forget=tr_u, seconds=seconds, passes=passes,
                stopped=stopped)


SAMPLE_ROWS = [
    smp("original", 0.91, 1.00, 0.0, 0),
    smp("retrain", 0.90, 0.88, 10.0, 30),
    smp("contrastive", 0.89, 0.90, 2.0, 11, "condition"),  # gaps -1.0, +2.0: sum 3.0, the closest
    smp("finetune", 0.90, 1.00, 4.0, 10),                  # D_ts spot on, but D_tr^u +12.0: not the closest
    smp("neggrad", 0.70, 0.60, 0.5, 5),                    # far under Retrain on both: 0 % is not the ideal
]


def test_sample_findings_gaps_to_retrain_and_the_closest_method():
    md = F.sample_findings(SAMPLE_ROWS, near_pt=5.0)
    assert 3 <= len(bullets(md)) <= 6
    assert "90.0 %" in line_with(md, "Retrain (the ideal")
    gaps = line_with(md, "Gaps to Retrain")
    assert "Contrastive 89.0 % (-1.0 pt), 90.0 % (+2.0 pt)" in gaps
    assert "Finetune 90.0 % (0.0 pt), 100.0 % (+12.0 pt)" in gaps
    assert "NegGrad 70.0 % (-20.0 pt), 60.0 % (-28.0 pt)" in gaps
    closest = line_with(md, "Closest to Retrain")
    assert closest.startswith("Closest to Retrain: Contrastive (") and "3.0 pt" in closest
    assert "Original, which unlearned nothing, is 13.0 pt away" in closest
    assert closest.endswith("Within 5 pt of Retrain on both: Contrastive.")
    assert "Finetune" in line_with(md, "Left D_tr^u where the Original had it (100.0 %)")
    co = line_with(md, "Contrastive stopped by its own condition (Eq. 9) after 11 passes")
    assert "20.0 % of Retrain's" in co


def test_sample_findings_ties_and_missing_methods():
    rows = [*SAMPLE_ROWS[:2], smp("scrub", 0.91, 0.87), smp("neggrad_plus", 0.89, 0.89)]  # both 2.0 pt away
    md = F.sample_findings(rows)
    assert "Closest to Retrain: SCRUB and NegGrad+ (|D_ts gap| + |D_tr^u gap| = 2.0 pt, tied)" in md
    assert "Contrastive did not run" in md
    md = F.sample_findings([r for r in SAMPLE_ROWS if r["method"] != "retrain"])
    assert "Retrain did not run" in md and "Closest" not in md
    assert "No unlearning method ran" in F.sample_findings(SAMPLE_ROWS[:2])


def mia(forget, auc=0.5, retain=0.6, test=0.4):
    return MIAResult(mia_forget=forget, mia_retain=retain, mia_auc=auc, mia_test=test, feature="softmax_sorted",
                     classifier="svc", n_train=100, n_eval=50, n_forget=100, seed=0)


def test_mia_findings_with_power_names_gaps_and_the_closest():
    res = {"original": mia(0.80, auc=0.70), "retrain": mia(0.30, auc=0.52), "contrastive": mia(0.33),
           "finetune": mia(0.60), "neggrad": mia(0.10)}
    md = F.mia_findings(res)
    assert 3 <= len(bullets(md)) <= 6
    power = line_with(md, "Attack power")
    assert "AUC 70.0 %" in power and "no power" not in md
    assert "(+50.0 pt)" in line_with(md, "Retrain (the ideal")
    gaps = line_with(md, "gap to Retrain's")
    assert "Contrastive 33.0 % (+3.0 pt)" in gaps and "Finetune 60.0 % (+30.0 pt)" in gaps
    assert "NegGrad 10.0 % (-20.0 pt)" in gaps  # a rate under Retrain's is a gap too, not better forgetting
    closest = line_with(md, "Closest to Retrain")
    assert closest.startswith("Closest to Retrain by this attack: Contrastive (3.0 pt away).")


def test_mia_findings_without_power_say_the_rates_mean_nothing():
    res = {"original": mia(0.41, auc=0.446), "retrain": mia(0.47), "contrastive": mia(0.40)}
    md = F.mia_findings(res)
    power = line_with(md, "Attack power")
    assert "AUC 44.6 %" in power and "no power" in power and "say nothing about forgetting" in power
    assert "no evidence of forgetting" in line_with(md, "Closest to Retrain")
    assert "no power" in F.mia_findings({**res, "original": mia(0.41, auc=0.54)})
    assert "no power" not in F.mia_findings({**res, "original": mia(0.41, auc=0.55)})  # the checks' threshold


def test_mia_findings_missing_methods_and_a_broken_model():
    res = {"original": mia(0.8, auc=0.7), "retrain": mia(0.3), "unsir": mia(0.05)}
    rows = [smp("original", 0.9, 1.0), smp("retrain", 0.9, 0.88), smp("unsir", 0.2, 0.1)]
    assert "UNSIR 20.0 % (-70.0 pt)" in line_with(F.mia_findings(res, rows), "broken")
    md = F.mia_findings({"original": mia(0.8, auc=0.7), "contrastive": mia(0.4)})
    assert "Retrain was not attacked" in md and "Contrastive 40.0 %" in md
    assert "No unlearning method was attacked" in F.mia_findings({"original": mia(0.8, auc=0.7), "retrain": mia(0.3)})


def test_efficiency_findings_ratios_to_retrain():
    times = pd.DataFrame([
        dict(task="class", method="retrain", seconds=20.0, acc_test_forget=0.0, retimed=True),
        dict(task="class", method="contrastive", seconds=2.0, acc_test_forget=0.05, retimed=True),
        dict(task="class", method="scrub", seconds=5.0, acc_test_forget=0.9, retimed=True),
        dict(task="sample", method="retrain", seconds=10.0, retimed=True),
        dict(task="sample", method="contrastive", seconds=20.0, retimed=True),
        dict(task="sample", method="neggrad", seconds=0.5, retimed=True),
    ])
    md = F.efficiency_findings(times, num_classes=10)
    assert 3 <= len(bullets(md)) <= 6
    c = line_with(md, "Class unlearning")
    assert "Retrain 20 s" in c and "Contrastive 2 s (10.0 %, 10× faster)" in c
    assert "SCRUB 5 s (25.0 %, 4.0× faster)" in c
    assert "Fastest: Contrastive; slower than Retrain: none" in c
    s = line_with(md, "Sample unlearning")
    assert "Contrastive 20 s (200.0 %, 2.0× slower)" in s and "Fastest: NegGrad; slower than Retrain: Contrastive" in s
    assert "SCRUB" in line_with(md, "did not unlearn") and "Contrastive" not in line_with(md, "did not unlearn")
    assert "Contrastive is **not** faster than Retrain on sample" in md
    assert "measured in this run" in md
    md = F.efficiency_findings(times[times.method != "contrastive"].assign(retimed=False))
    assert "Contrastive" not in md and "from the cache" in md
    assert "Retrain was not timed" in F.efficiency_findings(times[times.method != "retrain"])


def scores(**fs):
    return {m: dict(forget_score=v, final_score=v * 0.9, ulira_auc=0.5 + v, n_models=8) for m, v in fs.items()}


def test_forgetting_findings_rank_and_compare_with_the_mia():
    sc = {"retrain (held out)": dict(forget_score=0.4, final_score=0.4, ulira_auc=0.45), **scores(original=0.0),
          **scores(contrastive=0.3, finetune=0.1, neggrad=0.2)}
    agree = pd.DataFrame({"forget_score": [0.0, 0.3, 0.1, 0.2], "mia_gap_to_retrain_pt": [9.0, 1.0, 3.0, 2.0]},
                         index=["original", "contrastive", "finetune", "neggrad"])
    md = F.forgetting_findings(sc, 8, agree)
    assert 3 <= len(bullets(md)) <= 6
    assert "0.400" in line_with(md, "Retrain against other Retrains")
    rank = line_with(md, "Forget score")
    assert "Contrastive (0.300) > NegGrad (0.200) > Finetune (0.100)" in rank and "75.0 % of the ceiling" in rank
    assert "**agrees**" in line_with(md, "MIA ranking")
    disagree = agree.assign(mia_gap_to_retrain_pt=[9.0, 3.0, 1.0, 2.0])
    line = line_with(F.forgetting_findings(sc, 8, disagree), "MIA ranking")
    assert "**disagrees**" in line and "Contrastive and Finetune swap places" in line
    assert "NegGrad and" not in line  # NegGrad keeps its middle place against both
    top_agrees = agree.assign(mia_gap_to_retrain_pt=[9.0, 1.0, 2.0, 3.0])  # the best agrees, the other two swap
    line = line_with(F.forgetting_findings(sc, 8, top_agrees), "MIA ranking")
    assert "**disagrees**" in line and "Finetune and NegGrad swap places" in line and "Contrastive and" not in line
    assert "No comparison" in F.forgetting_findings(sc, 8, None)


def test_forgetting_findings_ties_and_missing_methods():
    sc = {**scores(original=0.0), **scores(contrastive=0.0, neggrad=0.0)}
    md = F.forgetting_findings(sc, 4)
    assert "all tied" in line_with(md, "Forget score") and "ceiling at this number of models is unknown" in md
    cmp = pd.DataFrame({"forget_score": [0.0, 0.0], "mia_gap_to_retrain_pt": [7.0, 4.0]},
                       index=["contrastive", "neggrad"])
    assert "ties all of them" in line_with(F.forgetting_findings(sc, 4, cmp), "MIA ranking")
    assert "No unlearning method was scored" in F.forgetting_findings(scores(original=0.0), 4)
    assert "too few" in F.forgetting_findings(sc, 4, cmp.iloc[:1])


def test_training_findings_fit_and_no_fit():
    hist = {"epoch": [1, 2, 3], "test_acc": [0.5, 0.97, 0.96], "train_acc": [0.4, 0.9, 1.0], "seconds": [1.0, 2.0, 3.5]}
    md = F.training_findings(0.9995, 0.961, hist, [1.0, 0.9, 0.95], ["a", "b", "c"])
    assert 3 <= len(bullets(md)) <= 6
    assert "100.0 % training accuracy and 96.1 % test accuracy" in md and "gap of 3.9 pt" in md
    assert "It fits its training set" in md
    assert "peaked at 97.0 % in epoch 2 and ended at 96.0 %" in md and "3 epochs" in md
    assert "90.0 % (class b) to 100.0 % (class a)" in md
    md = F.training_findings(0.95, 0.94)
    assert "does **not** fit" in md and "95.0 %" in md


@pytest.mark.parametrize("value, text", [(0.842 - 0.849, "-0.7 pt"), (0.0, "0.0 pt"), (0.02, "+2.0 pt")])
def test_gap_format(value, text):
    assert F._fmt_gap(F._gap(0.849 + value, 0.849)) == text


def test_many_disagreeing_pairs_are_summarised_not_listed():
    """Eleven methods gave 26 'X and Y swap places' clauses in one bullet; above MAX_SWAPS_LISTED pairs the line
    gives the count, Kendall's tau-b and the methods that move most."""
    names = [f"m{i}" for i in range(6)]
    sc = {**scores(original=0.0), **scores(**{m: 0.1 * (6 - i) for i, m in enumerate(names)})}
    reversed_mia = pd.DataFrame({"forget_score": [sc[m]["forget_score"] for m in names],
                                 "mia_gap_to_retrain_pt": [float(10 - i) for i in range(6)]}, index=names)
    line = line_with(F.forgetting_findings(sc, 8, reversed_mia), "MIA ranking")
    assert "**disagrees**" in line and "swap places" not in line
    assert "15 of 15 pairs of methods in opposite order" in line and "Kendall's tau-b -1.00" in line
    assert "m0 1st of 6 by the forget score and 6th of 6 by the MIA" in line
    one_swap = reversed_mia.assign(mia_gap_to_retrain_pt=[1.0, 2.0, 3.0, 4.0, 6.0, 5.0])
    line = line_with(F.forgetting_findings(sc, 8, one_swap), "MIA ranking")
    assert "m4 and m5 swap places" in line and "Kendall" not in line
    assert [F._ordinal(k) for k in (1, 2, 3, 4, 11, 12, 13, 21, 22)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd"]
