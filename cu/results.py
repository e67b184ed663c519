"""Result records and tidy CSV files.

Every table the notebooks write is tidy: one row per (method x dataset x model x width x seed),
accuracies as fractions in [0, 1] in memory and percent in the printed tables. `upsert_csv`
replaces rows with the same key and keeps the others, so runs of different models, seeds or
methods accumulate in one file; it writes atomically.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from cu.runtime import atomic_write

KEY = ["method", "dataset", "model", "width", "seed"]


@dataclass(frozen=True)
class Record:
    """What an unlearning run reports besides the model.

    method, task       : registry name and 'class' / 'sample'
    seconds            : wall time of the unlearning itself (no evaluation for records)
    passes             : passes over D_tr^u (or epochs for methods that train on D_tr^r)
    stopped            : why it stopped: 'condition' (its termination rule held), 'max_passes', 'fixed'
    curve              : forget-set accuracy after each forget batch (Figure 2), when the method has one
    hparams            : the hyperparameters it ran with
    """

    method: str
    task: str
    seconds: float
    passes: int = 0
    stopped: str = "fixed"
    curve: tuple = ()
    hparams: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Record":
        d = json.loads(text)
        d["curve"] = tuple(d.get("curve", ()))
        return cls(**d)

    def save(self, path: str | Path) -> Path:
        return atomic_write(path, lambda tmp: Path(tmp).write_text(self.to_json()))

    @classmethod
    def load(cls, path: str | Path) -> "Record":
        return cls.from_json(Path(path).read_text())


def upsert_csv(path: str | Path, rows: list[dict] | pd.DataFrame, key: list[str] | None = None) -> pd.DataFrame:
    """Write `rows` into the CSV at `path`, replacing existing rows with the same `key` values."""
    key = KEY if key is None else key
    new = pd.DataFrame(rows)
    missing = [k for k in key if k not in new.columns]
    if missing:
        raise ValueError(f"rows lack key columns {missing}; every row needs {key}")
    path = Path(path)
    with locked(path):
        return _upsert(path, new, key)


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive lock beside `path`, so runs side by side (a sweep's --jobs) do not lose rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _key_value(v) -> str:
    """A key cell as text, with 16, 16.0, np.int64(16) and '16' all the same key (a CSV read back
    gives floats where a column had a missing value; papermill passes numbers as strings at times)."""
    if isinstance(v, bool):
        return str(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return str(int(f)) if f.is_integer() else repr(f)


def _key_tuples(df: pd.DataFrame, key: list[str]) -> list[tuple]:
    return [tuple(_key_value(v) for v in row) for row in df[key].itertuples(index=False, name=None)]


def _upsert(path: Path, new: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    if path.exists():
        old = pd.read_csv(path)
        if all(k in old.columns for k in key):
            keys_new = set(_key_tuples(new, key))
            keep = [k not in keys_new for k in _key_tuples(old, key)]
            new = pd.concat([old[keep], new], ignore_index=True)
    new = new.sort_values(key, kind="stable").reset_index(drop=True)
    atomic_write(path, lambda tmp: new.to_csv(tmp, index=False, float_format="%.6g"))
    return new


def percent_table(df: pd.DataFrame, index: str, columns: list[str], labels: dict[str, str] | None = None,
                  decimals: int = 1) -> pd.DataFrame:
    """Rows of `df` indexed by `index` with `columns` (fractions) shown in percent, rounded."""
    out = df.set_index(index)[columns].astype(float) * 100
    return out.round(decimals).rename(columns=labels or {})
