"""Contrastive unlearning: what the termination check and a few settings cost and give.

    python benchmarks/contrastive_study.py [-f configs/cifar10-cpu.yaml] [--out results/<profile>/contrastive_study.csv]

For the profile's cached Original and Retrain (the notebooks' checkpoint cache), runs contrastive
unlearning of class FORGET_CLASS and of N_FORGET random samples with:
  * the paper's check after each pass vs a check after every forget batch (check_every=1),
  * for samples also Eq. 9 with a tolerance of 1.96 standard errors (eq9_z), and lambda_CE 3.
Every variant is reported (time, passes, forget batches, the paper's accuracies) next to Retrain;
nothing is selected on the test set.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import yaml

import cu.unlearners as U
from cu.data import class_split, random_split
from cu.experiment import evaluate, method_overrides, prepare
from cu.results import upsert_csv
from cu.training import TrainConfig

DEFAULTS = dict(PROFILE="default", DATASET="digits", DATA_ROOT="data", MODEL="resnet18", WIDTH=16, EPOCHS=30,
                LR=0.05, MOMENTUM=0.9, WEIGHT_DECAY=5e-4, BATCH_SIZE=128, SEED=0, FORGET_CLASS=5, N_FORGET=100,
                HPARAMS={"contrastive": {"lr": 1e-2}}, DEVICE="auto", CACHE_DIR="checkpoints")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-f", "--profile", help="a papermill parameter file; paths in it are relative to notebooks/")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    p = dict(DEFAULTS)
    if args.profile:
        p.update(yaml.safe_load(Path(args.profile).read_text()))
        if not Path(p["DATA_ROOT"]).is_absolute():
            p["DATA_ROOT"] = str(Path("notebooks") / p["DATA_ROOT"])
    recipe = TrainConfig(p["EPOCHS"], p["LR"], p["MOMENTUM"], p["WEIGHT_DECAY"], p["BATCH_SIZE"], p["SEED"])
    ds, data, original, _ = prepare(p["DATASET"], p["DATA_ROOT"], p["MODEL"], p["WIDTH"], recipe, p["DEVICE"],
                                    p["CACHE_DIR"], True)
    base = method_overrides("contrastive", p["HPARAMS"] or {}, recipe, p["CACHE_DIR"], p["SEED"])
    ident = dict(dataset=p["DATASET"], model=p["MODEL"], width=p["WIDTH"], seed=p["SEED"])
    rows = []
    for split, variants in (
        (class_split(data, p["FORGET_CLASS"]), {"paper (check per pass)": {}, "check every batch": {"check_every": 1}}),
        (random_split(data, p["N_FORGET"], p["SEED"]), {
            "paper (check per pass)": {}, "check every batch": {"check_every": 1},
            "Eq. 9 + 1.96 SE": {"eq9_z": 1.96}, "Eq. 9 + 1.96 SE, check every batch": {"eq9_z": 1.96, "check_every": 1},
            "lambda_CE 3": {"lambda_ce": 3.0}}),
    ):
        model, rec = U.run("retrain", original, data, split, progress=True,
                           **method_overrides("retrain", {}, recipe, p["CACHE_DIR"], p["SEED"]))
        rows.append({"task": split.task, "variant": "retrain", **ident, **evaluate(model, data, split),
                     "seconds": rec.seconds, "passes": rec.passes, "forget_batches": 0, "stopped": rec.stopped})
        for name, kw in variants.items():
            model, rec = U.run("contrastive", original, data, split, **{**base, **kw})
            rows.append({"task": split.task, "variant": name, **ident, **evaluate(model, data, split),
                         "seconds": rec.seconds, "passes": rec.passes,
                         "forget_batches": rec.extra["forget_batches"], "stopped": rec.stopped})
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    out = args.out or f"results/{p['PROFILE']}/contrastive_study.csv"
    upsert_csv(out, df.assign(method=df["variant"]), key=["task", "method", "dataset", "model", "width", "seed"])
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df.drop(columns=["dataset", "model", "width"]).round(4).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
