"""The checkpoint cache: trained models stored under a key derived from their configuration.

A file holds {'format', 'config', 'state_dict', 'history'}; it is written atomically (temporary
file + rename) and read with `torch.load(..., weights_only=True)`, so no pickle the project did
not write is ever executed. A file whose stored configuration differs from the one asked for is
an error, never silently used.

Every key also holds `code_fingerprint(...)` of the modules that computed the model (the module and
every `cu` module it imports, transitively), so a changed method or training loop is computed
again instead of being served from a warm cache.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from cu.runtime import atomic_write

FORMAT = "cu-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: corrupt, of another configuration, or not ours."""


@functools.lru_cache(maxsize=None)
def _source(module: str) -> tuple[str, tuple[str, ...]]:
    """(source text, `cu` modules it imports anywhere, functions included) of a `cu` module."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"code_fingerprint: no module {module!r}")
    text = Path(spec.origin).read_text()
    deps = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            deps.update(a.name for a in node.names if a.name.split(".")[0] == "cu")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "cu":
            package = importlib.util.find_spec(node.module).submodule_search_locations
            for a in node.names:  # `from cu import plots` names a module; `from cu.x import f` does not
                sub = f"{node.module}.{a.name}"
                deps.add(sub if package and importlib.util.find_spec(sub) is not None else node.module)
    deps.discard(module)
    return text, tuple(sorted(deps))


def code_fingerprint(*modules: str) -> str:
    """A short hash of the source of `modules` and of every `cu` module they import (transitively).

    Imports are read from the source (those inside functions count), so the set does not depend on
    what happens to be imported; a package's `__init__` counts, the modules it loads dynamically
    (the unlearner registry's plug-ins) do not. Comments and docstrings count too: a cache keyed by
    this is recomputed after any edit to the code that made it, never served stale.
    """
    seen: dict[str, str] = {}
    todo = list(modules)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen[m], deps = _source(m)
        todo.extend(deps)
    h = hashlib.sha256()
    for m in sorted(seen):
        h.update(m.encode() + b"\0" + seen[m].encode() + b"\0")
    return h.hexdigest()[:16]


def config_key(config: dict) -> str:
    """A short stable hash of a JSON-able configuration."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def checkpoint_path(cache_dir: str | Path, config: dict) -> Path:
    name = f"{config.get('dataset', 'model')}-{config.get('model', '')}-w{config.get('width', '')}"
    return Path(cache_dir) / f"{name}-{config_key(config)}.pt"


def save_checkpoint(path: str | Path, model: nn.Module, config: dict, history: dict | None = None) -> Path:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    obj = {"format": FORMAT, "config": json.dumps(config, sort_keys=True), "state_dict": state,
           "history": json.dumps(history or {})}
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_checkpoint(path: str | Path, model: nn.Module, config: dict) -> dict:
    """Load weights into `model` after checking that the file was written for `config`; returns history."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated file, foreign pickle refused by weights_only, ...
        raise CheckpointError(f"{path} cannot be read safely ({type(err).__name__}: {str(err)[:200]}). "
                              f"It is not a checkpoint this project wrote, or it is damaged: delete it "
                              f"and the model is trained again.") from err
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or "state_dict" not in obj:
        raise CheckpointError(f"{path} is not a {FORMAT} file: delete it and the model is trained again.")
    stored = json.loads(obj["config"])
    config = json.loads(json.dumps(config, sort_keys=True))  # tuples -> lists, as stored
    if stored != config:
        diff = {k: (stored.get(k), config.get(k)) for k in set(stored) | set(config) if stored.get(k) != config.get(k)}
        raise CheckpointError(f"{path} was written for another configuration (stored vs asked: {diff}). "
                              f"Delete the file, or point cache_dir elsewhere.")
    try:
        model.load_state_dict(obj["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the model ({str(err)[:200]}); delete the file.") from err
    return json.loads(obj.get("history", "{}"))


def cached(cache_dir: str | Path | None, config: dict, build: Callable[[], nn.Module],
           fit: Callable[[nn.Module], dict]) -> tuple[nn.Module, dict]:
    """build() a model, then load it from the cache, or fit() it and store it; returns (model, history)."""
    model = build()
    if cache_dir is None:
        return model, fit(model)
    path = checkpoint_path(cache_dir, config)
    if path.exists():
        return model, load_checkpoint(path, model, config)
    history = fit(model)
    save_checkpoint(path, model, config, history)
    return model, history
