"""What every notebook does first: load the data onto a device and get the Original model."""
from __future__ import annotations

from pathlib import Path

import torch

from cu.data import DeviceData, Dataset
from cu.datasets import load_dataset
from cu.runtime import get_device
from cu.training import TrainConfig, train_cached


def prepare(dataset: str, data_root: str | None, model: str, width: int, recipe: TrainConfig,
            device: str = "auto", cache_dir: str | Path | None = "checkpoints", progress: bool = False,
            download: bool = False) -> tuple[Dataset, DeviceData, torch.nn.Module, dict]:
    """(dataset, device data, Original model, its training history); the Original comes from the cache
    when one of the same configuration exists, otherwise it is trained and cached."""
    progress, download = as_bool(progress, "PROGRESS"), as_bool(download, "DOWNLOAD")
    ds = load_dataset(dataset, data_root, download=download)
    data = ds.to(get_device(device))
    original, history = train_cached(data, model, width, ds.in_channels, recipe, cache_dir=cache_dir,
                                     progress=progress)
    return ds, data, original, history


# --------------------------------------------------------------------------- unlearning runs

METRICS = {
    "class": ["acc_test_retain", "acc_train_forget", "acc_test_forget"],
    "sample": ["acc_test", "acc_train_forget"],
}
LABELS = {  # the paper's row names
    "acc_test_retain": "D_ts^r", "acc_train_forget": "D_tr^u", "acc_test_forget": "D_ts^u", "acc_test": "D_ts",
}
RECORDED_EXTRAS = {  # a method's own diagnostics (its Record's `extra`), kept as columns of its results row
    "shadow_rate": "Boundary Expansion: D_tr^u won by the shadow class",
    "attack_success_rate": "Boundary Shrink: FGSM neighbours leaving the true class",
}


def evaluate(model: torch.nn.Module, data: DeviceData, split, *others) -> dict | tuple[dict, ...]:
    """The paper's accuracies for the split's task (fractions): Tables 1/2 (class) or 4/5 (sample).

    With further splits of the same data (e.g. `cu.tuning.halves`), one dict per split, all from one pass
    over the test set and the forget set (their index sets are looked up in those predictions).
    """
    from cu.training import predict

    splits = (split, *others)
    pred = {"test": predict(model, data, "test").argmax(1)}
    forget = torch.cat([s.forget for s in splits]).unique()
    pred["train"] = torch.full((len(data.y_train),), -1, dtype=torch.long, device=pred["test"].device)
    pred["train"][forget.to(pred["test"].device)] = predict(model, data, "train", forget).argmax(1)

    def acc(part: str, idx: torch.Tensor) -> float:
        if len(idx) == 0:
            return float("nan")
        idx = idx.to(pred[part].device)
        y = (data.y_test if part == "test" else data.y_train)[idx].to(pred[part].device)
        return float((pred[part][idx] == y).float().mean())

    def one(s) -> dict:
        if s.task == "class":
            return {"acc_test_retain": acc("test", s.test_retain), "acc_train_forget": acc("train", s.forget),
                    "acc_test_forget": acc("test", s.test_forget)}
        return {"acc_test": acc("test", s.test), "acc_train_forget": acc("train", s.forget)}

    out = tuple(one(s) for s in splits)
    return out if others else out[0]


# The paper's comparison for each task (Sec. 5.1): class unlearning is compared with the class
# methods only, sample unlearning with the sample methods (the others are registered for both tasks
# and can be asked for by name, or all at once with METHODS="all").
PAPER_METHODS = {
    "class": ["contrastive", "boundary_shrink", "boundary_expansion", "scrub", "unsir"],
    "sample": ["contrastive", "finetune", "neggrad", "fisher", "lcodec"],
}


def base_name(name: str) -> str:
    """The registered method of a METHODS entry: 'contrastive:validated' is a *variant* of 'contrastive'
    (its own column in the tables, HPARAMS['contrastive'] then HPARAMS['contrastive:validated'] applied)."""
    return str(name).split(":", 1)[0]


def method_list(methods, task: str, skip_other_tasks: bool = False) -> list[str]:
    """METHODS as given, always with 'retrain' first. None: the paper's methods for `task` that are
    registered; 'all': every method registered for `task`; a list; or a string such as
    'contrastive,finetune' or '["contrastive"]', as papermill's -p passes it. An entry 'name:label'
    is a variant of method `name` with its own hyperparameters (`base_name`).

    A listed method that does not do `task` is an error, or is left out with `skip_other_tasks`
    (notebooks that cover both tasks with one METHODS list)."""
    import yaml

    from cu import unlearners

    if isinstance(methods, str):
        parsed = yaml.safe_load(methods) if methods.strip().startswith("[") else methods.split(",")
        methods = [str(m).strip() for m in parsed if str(m).strip()]
    if methods is None:
        methods = [m for m in PAPER_METHODS[task] if m in unlearners.UNLEARNERS]
    elif methods == ["all"]:
        methods = unlearners.names(task)
    if not isinstance(methods, (list, tuple)):
        raise TypeError(f"METHODS={methods!r}: expected a list of method names, e.g. ['contrastive', 'finetune']")
    for m in methods:
        unlearners.get(base_name(m))  # unknown names: error listing the valid ones
    if skip_other_tasks:
        methods = [m for m in methods if task in unlearners.get(base_name(m)).tasks]
    for m in methods:
        u = unlearners.get(base_name(m))
        if task not in u.tasks:
            raise ValueError(f"METHODS: {m} does not do {task} unlearning; methods for {task}: "
                             f"{', '.join(unlearners.names(task))}")
    return ["retrain"] + [m for m in methods if m != "retrain"]


def as_bool(value, name: str) -> bool:
    """A True/False parameter, also when papermill passes it as text: `-p NAME false` gives the string
    'false', which Python reads as true. Accepts bools, 0/1 and true/false/yes/no/on/off/1/0 in any case;
    anything else is an error that names the fix."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
    raise TypeError(f"{name}={value!r}: expected True or False (papermill: -p {name} False, or -y '{name}: false')")


def as_dict(value, name: str) -> dict:
    """A dict parameter, also when papermill passes it as a YAML/JSON string."""
    import yaml

    if isinstance(value, str):
        value = yaml.safe_load(value) or {}
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{name}={value!r}: expected a mapping such as {{'contrastive': {{'lr': 0.01}}}}")
    return value


def method_overrides(name: str, hparams: dict, recipe: TrainConfig, cache_dir, seed: int) -> dict:
    """Overrides for one method: the profile's recipe and cache for Retrain, the run's seed for all,
    then the user's HPARAMS[method] on top, and for a variant 'method:label' HPARAMS['method:label']."""
    import dataclasses

    from cu import unlearners

    base = base_name(name)
    fields = {f.name for f in dataclasses.fields(unlearners.get(base).config)}
    out = {"seed": seed} if "seed" in fields else {}
    if base == "retrain":
        out.update(dataclasses.asdict(recipe), cache_dir=cache_dir)
    out.update(hparams.get(base) or {})
    if name != base:
        out.update(hparams.get(name) or {})
    return out


def run_methods(methods, original, data: DeviceData, split, ident: dict, recipe: TrainConfig,
                hparams: dict | None = None, cache_dir=None, progress: bool = False, retime: bool = False,
                log=print):
    """Run each method on `split`, evaluate it, and return (rows, models, records).

    rows start with the untouched Original (method 'original'); each row is the method, its `setting`
    ('reference' for the Original and Retrain, 'paper' for a method at its published defaults, else the
    variant's label, e.g. 'tuned'), `ident` (dataset, model, width, seed), the paper's accuracies on the
    whole test set and, suffixed `_report`, on the report half that tuning never sees
    (`cu.tuning.halves`), then seconds, passes, why it stopped and `curve_zero_step` (Figure 2).
    retime=True runs every method here, one after the other in this process, Retrain included,
    instead of loading cached models and the times recorded when they were computed (the cache of
    unlearned models is then refreshed; Retrain's checkpoint is left as it is). `log` gets one line per
    method (its seconds, passes and why it stopped; a cached model's are those recorded when it ran).
    """
    from cu import unlearners
    from cu.results import Record

    hparams = as_dict(hparams, "HPARAMS")
    progress, retime = as_bool(progress, "PROGRESS"), as_bool(retime, "RETIME")
    unknown = sorted(k for k in hparams if base_name(k) not in unlearners.UNLEARNERS)
    if unknown:
        raise ValueError(f"HPARAMS names unknown methods {unknown}; valid: {', '.join(unlearners.UNLEARNERS)}")
    from cu.tuning import halves, setting_of

    report = halves(split)[1]

    def accuracies(model):  # the paper's accuracies on the whole test set, and on the half tuning never sees
        whole, half = evaluate(model, data, split, report)
        return {**whole, **{f"{k}_report": v for k, v in half.items()}}

    rows = [{"method": "original", "setting": setting_of("original"), **ident, **accuracies(original), "seconds": 0.0,
             "passes": 0, "stopped": "", "curve_zero_step": float("nan"), **dict.fromkeys(RECORDED_EXTRAS, float("nan"))}]
    models, records = {"original": original}, {}
    for name in methods:
        overrides = method_overrides(name, hparams, recipe, cache_dir, ident["seed"])
        model, rec = run_cached(name, original, data, split, overrides, cache_dir, progress, refresh=retime)
        assert isinstance(rec, Record)
        rows.append({"method": name, "setting": setting_of(name), **ident,
                     **accuracies(model), "seconds": rec.seconds, "passes": rec.passes, "stopped": rec.stopped,
                     "curve_zero_step": curve_zero_step(rec),
                     **{k: float((rec.extra or {}).get(k, float("nan"))) for k in RECORDED_EXTRAS}})
        models[name], records[name] = model, rec
        if log:  # one line per method, so that a long run is not silent (None: quiet)
            log(f"{name}: {rec.seconds:.1f} s, {rec.passes} passes, stopped: {rec.stopped}")
    return rows, models, records


def curve_zero_step(record) -> float:
    """Figure 2's reading: the first recorded step (`extra['curve_steps']`: forget batches for Contrastive,
    see each method's docstring) at which the tracked forget accuracy is 0; nan when it never is or the
    method tracked no curve (Retrain, `track_size=0`)."""
    steps = (record.extra or {}).get("curve_steps") or []
    return next((float(s) for s, a in zip(steps, record.curve) if a == 0), float("nan"))


def fingerprint(model: torch.nn.Module) -> str:
    """A hash of a model's weights and buffers (names the Original in the unlearned-model cache)."""
    import hashlib

    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def run_cached(name: str, original, data: DeviceData, split, overrides: dict, cache_dir=None, progress=False,
               refresh: bool = False):
    """cu.unlearners.run, with the unlearned model and its record cached under `cache_dir/unlearned`
    (keyed by the method, its full configuration, the split, the Original's weights and a fingerprint of
    the method's code, `cu.checkpoints.code_fingerprint`), so that
    notebooks 04 and 05 reuse what 02 and 03 computed. Retrain has its own cache (overrides['cache_dir'],
    its checkpoint); cache_dir=None runs. refresh=True runs the method even when it is cached: it
    overwrites the cached model and record, and trains Retrain again without reading or writing its
    checkpoint."""
    import copy
    import dataclasses
    import hashlib

    from cu import unlearners
    from cu.checkpoints import checkpoint_path, code_fingerprint, load_checkpoint, save_checkpoint
    from cu.results import Record

    name = base_name(name)  # a variant differs from its method by its configuration alone
    if name == "retrain" and refresh:
        overrides = {**overrides, "cache_dir": None}
    if cache_dir is None or name == "retrain":
        return unlearners.run(name, original, data, split, progress=progress, **overrides)
    cfg = unlearners.make_config(name, **overrides)
    key = {"dataset": data.name, "model": f"unlearned-{name}", "width": original.arch.get("width"),
           "method": name, "config": dataclasses.asdict(cfg), "task": split.task,
           "forget": hashlib.sha256(split.forget.numpy().tobytes()).hexdigest()[:16],
           "original": fingerprint(original), "code": code_fingerprint(unlearners.get(name).fn.__module__)}
    path = checkpoint_path(Path(cache_dir) / "unlearned", key)
    if path.exists() and not refresh:
        model = copy.deepcopy(original)
        history = load_checkpoint(path, model, key)
        return model.eval(), Record.from_json(history["record"])
    model, rec = unlearners.run(name, original, data, split, config=cfg, progress=progress)
    save_checkpoint(path, model, key, {"record": rec.to_json()})
    return model, rec


def paper_table(rows: list[dict], task: str, decimals: int = 1):
    """The paper's layout (Tables 1/2 or 4/5): evaluation sets as rows, methods as columns, percent."""
    import pandas as pd

    df = pd.DataFrame(rows).set_index("method")[METRICS[task]] * 100
    return df.round(decimals).T.rename(index=LABELS)
