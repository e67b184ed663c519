"""Shared fixtures: digits on the CPU and a small Original model trained once per session."""
import pytest
import torch

from cu.datasets import load_dataset
from cu.models import build_model
from cu.training import TrainConfig, train

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="session")
def data(digits):
    return digits.to("cpu")


@pytest.fixture(scope="session")
def original(data):
    """ResNet-18 width 8 trained 8 epochs on all digits training data (about 97 % test accuracy)."""
    torch.manual_seed(0)
    model = build_model("resnet18", 10, 1, width=8)
    train(model, data, torch.arange(len(data.y_train)), TrainConfig(epochs=8, lr=0.05, seed=0), progress=False)
    return model.eval()
