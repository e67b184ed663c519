import os

import pytest
import torch

from cu.checkpoints import CheckpointError, checkpoint_path, load_checkpoint, save_checkpoint
from cu.models import build_model
from cu.runtime import get_device
from cu.training import TrainConfig, accuracy, model_config, per_class_accuracy, train, train_cached


def test_original_learns_digits(data, original):
    assert accuracy(original, data, "test") > 0.9
    per_class = per_class_accuracy(original, data)
    assert len(per_class) == 10 and min(per_class) > 0.6


def test_same_seed_same_numbers(data):
    idx = torch.arange(300)
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        m = build_model("resnet18", 10, 1, width=4)
        h = train(m, data, idx, TrainConfig(epochs=2, seed=3), progress=False)
        runs.append((h["train_loss"], [p.detach().clone() for p in m.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_killed_training_resumes_batch_for_batch(tmp_path, data, monkeypatch):
    """Killed during epoch 3 of 4 and called again with its state file, a training ends with the weights and
    losses of one that never stopped (same machine); a state file of another recipe is refused."""
    import cu.training as tr
    idx, recipe = torch.arange(300), TrainConfig(epochs=4, seed=3)

    def fresh():  # what a new process builds before resuming
        torch.manual_seed(1)
        return build_model("resnet18", 10, 1, width=4)

    whole = fresh()
    h_whole = train(whole, data, idx, recipe, progress=False)
    real, calls = tr.batches, {"n": 0}

    def dying(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    state = tmp_path / "run.partial.pt"
    monkeypatch.setattr(tr, "batches", dying)
    with pytest.raises(KeyboardInterrupt):
        train(fresh(), data, idx, recipe, progress=False, resume=state)
    monkeypatch.setattr(tr, "batches", real)
    assert torch.load(state, weights_only=True)["epoch"] == 2
    resumed = fresh()
    h = train(resumed, data, idx, recipe, progress=False, resume=state)
    assert h["epoch"] == [1, 2, 3, 4]
    assert h["train_loss"] == h_whole["train_loss"] and h["train_acc"] == h_whole["train_acc"]
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))
    with pytest.raises(CheckpointError, match="another recipe"):
        train(fresh(), data, idx, TrainConfig(epochs=4, seed=4), progress=False, resume=state)
    state.write_bytes(b"not a state")
    with pytest.raises(CheckpointError, match="delete it"):
        train(fresh(), data, idx, recipe, progress=False, resume=state)


def test_recipe_validation():
    with pytest.raises(ValueError):
        TrainConfig(epochs=0)
    assert TrainConfig(epochs="3").epochs == 3


def test_device_choice():
    assert get_device("cpu").type == "cpu"
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    assert get_device("auto").type == ("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    with pytest.raises(ValueError, match="not a device"):
        get_device("tpu9")


def _cfg(**kw):
    return model_config("digits", "resnet18", 4, 10, 1, TrainConfig(epochs=1, **kw))


def test_cache_trains_once_then_loads(tmp_path, data):
    recipe = TrainConfig(epochs=1, seed=0)
    m1, h1 = train_cached(data, "resnet18", 4, 1, recipe, cache_dir=tmp_path, progress=False)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"
    mtime = files[0].stat().st_mtime_ns
    m2, h2 = train_cached(data, "resnet18", 4, 1, recipe, cache_dir=tmp_path, progress=False)
    assert files[0].stat().st_mtime_ns == mtime and h1 == h2
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    # another seed is another key
    train_cached(data, "resnet18", 4, 1, TrainConfig(epochs=1, seed=1), cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.pt"))) == 2
    assert not list(tmp_path.glob("*.tmp"))


def test_checkpoint_of_another_configuration_is_refused(tmp_path):
    m = build_model("resnet18", 10, 1, 4)
    path = checkpoint_path(tmp_path, _cfg())
    save_checkpoint(path, m, _cfg(lr=0.1))
    with pytest.raises(CheckpointError, match="another configuration.*Delete the file"):
        load_checkpoint(path, m, _cfg())


def test_truncated_and_foreign_checkpoints_are_refused(tmp_path):
    m = build_model("resnet18", 10, 1, 4)
    path = tmp_path / "x.pt"
    save_checkpoint(path, m, _cfg())
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        load_checkpoint(path, m, _cfg())
    torch.save(m.state_dict(), path)  # a bare state dict: not our format
    with pytest.raises(CheckpointError, match="is not a cu-checkpoint"):
        load_checkpoint(path, m, _cfg())


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickle_in_cache_is_not_executed(tmp_path, monkeypatch, data):
    monkeypatch.chdir(tmp_path)
    recipe = TrainConfig(epochs=1)
    cfg = model_config("digits", "resnet18", 4, 10, 1, recipe)
    torch.save({"format": "cu-checkpoint-v1", "payload": _Evil()}, checkpoint_path(tmp_path, cfg))
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        train_cached(data, "resnet18", 4, 1, recipe, cache_dir=tmp_path, progress=False)
    assert not (tmp_path / "pwned").exists()
