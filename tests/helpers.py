"""Small pieces several test files share: a tiny model and problem, and state comparisons."""
import torch
import torch.nn as nn

from cu.data import DeviceData, Split
from cu.training import accuracy


def tiny(seed=0, n=24, n_forget=8, classes=3):
    """A Conv-BatchNorm-Linear model and a 24-sample problem whose first 8 samples are forgotten."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 4, 4, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    data = DeviceData("tiny", x, y, x[:6], y[:6], classes, tuple(map(str, range(classes))))
    split = Split("sample", torch.arange(n_forget), torch.arange(n_forget, n), torch.empty(0, dtype=torch.long),
                  torch.arange(6), classes)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, classes))
    return model.eval(), data, split


def state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def forget_acc(model, data, split) -> float:
    return accuracy(model, data, "train", split.forget)
