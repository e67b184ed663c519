import numpy as np
import pytest
import torch

from cu.data import batches, class_split, make_split, random_split
from cu.datasets import load_dataset


def test_digits_is_embedded_and_split_fixed(digits):
    assert digits.name == "digits" and digits.num_classes == 10 and digits.in_channels == 1
    assert len(digits.y_train) == 1437 and len(digits.y_test) == 360
    assert digits.x_train.dtype == np.uint8 and digits.x_train.shape[1:] == (1, 8, 8)
    again = load_dataset("digits")
    assert np.array_equal(again.y_train, digits.y_train) and np.array_equal(again.x_test, digits.x_test)


def test_normalised_with_own_stats(data):
    x = data.x_train
    assert x.shape[1] == 1 and x.is_contiguous(memory_format=torch.channels_last)
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-2


@pytest.mark.parametrize("c", [0, 5, 9])
def test_class_split_partitions(data, c):
    s = class_split(data, c)
    n_tr, n_te = len(data.y_train), len(data.y_test)
    assert set(s.forget.tolist()).isdisjoint(s.retain.tolist())
    assert sorted(s.forget.tolist() + s.retain.tolist()) == list(range(n_tr))
    assert sorted(s.test_forget.tolist() + s.test_retain.tolist()) == list(range(n_te))
    assert (data.y_train[s.forget] == c).all() and (data.y_train[s.retain] != c).all()
    assert (data.y_test[s.test_forget] == c).all() and (data.y_test[s.test_retain] != c).all()
    assert len(s.forget) == int((data.y_train == c).sum())  # no sample of the class is left behind


def test_random_split_sizes_seeds_and_classes(data):
    a, b, c = random_split(data, 100, seed=1), random_split(data, 100, seed=1), random_split(data, 100, seed=2)
    assert len(a.forget) == 100 and len(a.retain) == len(data.y_train) - 100
    assert torch.equal(a.forget, b.forget) and not torch.equal(a.forget, c.forget)
    assert set(a.forget.tolist()).isdisjoint(a.retain.tolist())
    assert len(torch.unique(data.y_train[a.forget])) > 5  # drawn across classes, not the first indices
    assert a.forget.max() > 1000
    assert torch.equal(a.test, torch.arange(len(data.y_test)))


def test_batches_cover_once_and_are_seeded():
    idx = torch.arange(10, 47)
    got = list(batches(idx, 8, torch.Generator().manual_seed(0)))
    assert [len(b) for b in got] == [8, 8, 8, 8, 5]
    assert sorted(torch.cat(got).tolist()) == idx.tolist()
    again = list(batches(idx, 8, torch.Generator().manual_seed(0)))
    assert all(torch.equal(x, y) for x, y in zip(got, again))
    assert len(list(batches(idx, 8, torch.Generator(), drop_last=True))) == 4


def test_npz_loading(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "cifar10.npz", x_train=rng.integers(0, 255, (20, 32, 32, 3), dtype=np.uint8),
             y_train=np.arange(20) % 10, x_test=rng.integers(0, 255, (10, 32, 32, 3), dtype=np.uint8),
             y_test=np.arange(10), class_names=np.array(["c%d" % i for i in range(10)]))
    ds = load_dataset("cifar10", tmp_path)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.class_names[3] == "c3"
    assert ds.to("cpu").x_test.shape == (10, 3, 32, 32)


# ---- bad input: each a clear error that names the fix

def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: digits, mnist, cifar10, svhn"):
        load_dataset("imagenet")


def test_missing_data_says_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"looked for .*cifar10\.npz.*README's 'Data'.*download=True"):
        load_dataset("cifar10", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"train_32x32\.mat, test_32x32\.mat under .*download=True"):
        load_dataset("svhn", tmp_path / "nowhere")


def test_a_download_is_kept_as_the_npz_that_later_runs_read(tmp_path, monkeypatch):
    """DOWNLOAD: true on a machine with internet: torchvision's files once, then `<root>/<name>.npz`, read
    without torchvision (here the download itself is a stand-in: no internet on these machines)."""
    import cu.datasets as D

    rng = np.random.default_rng(0)
    fetched = D.Dataset("cifar10", rng.integers(0, 255, (12, 3, 32, 32), dtype=np.uint8), np.arange(12) % 10,
                        rng.integers(0, 255, (6, 3, 32, 32), dtype=np.uint8), np.arange(6), D.CIFAR10_CLASSES)
    calls = []
    monkeypatch.setattr(D, "_download_torchvision", lambda name, root: calls.append(root) or fetched)
    first = load_dataset("cifar10", tmp_path / "data", download=True)
    assert calls == [tmp_path / "data"] and (tmp_path / "data" / "cifar10.npz").is_file()
    again = load_dataset("cifar10", tmp_path / "data", download=True)  # the archive now: no second download
    assert len(calls) == 1 and not list((tmp_path / "data").glob(".*.tmp"))
    for ds in (first, again):
        assert all(np.array_equal(getattr(ds, k), getattr(fetched, k)) for k in ("x_train", "y_train", "x_test", "y_test"))
        assert ds.class_names == D.CIFAR10_CLASSES
    grey = D.Dataset("mnist", fetched.x_train[:, :1], fetched.y_train, fetched.x_test[:, :1], fetched.y_test,
                     tuple(str(i) for i in range(10)))
    back = load_dataset("mnist", D.save_npz(grey, tmp_path / "m" / "mnist.npz").parent)
    assert np.array_equal(back.x_train, grey.x_train) and back.in_channels == 1


def test_malformed_npz(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="not a valid mnist archive"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize("c", [10, -1, 99])
def test_class_out_of_range(data, c):
    with pytest.raises(ValueError, match=r"out of range.*0\.\.9"):
        class_split(data, c)


@pytest.mark.parametrize("n", [0, -3, 1437, 5000])
def test_random_count_out_of_range(data, n):
    with pytest.raises(ValueError, match="n_forget=.* must be between 1 and 1436"):
        random_split(data, n)


def test_string_ints_from_papermill_and_bad_types(data):
    assert len(random_split(data, "50", seed="3").forget) == 50
    assert class_split(data, "5").forget_class == 5
    with pytest.raises(TypeError, match="expected an integer"):
        random_split(data, 2.5)
    with pytest.raises(ValueError, match="unknown task"):
        make_split(data, "pixels")


# ---- SVHN: not downloadable on these machines, so its path is tested on a folder in SVHN's own format

def _fake_svhn(root, rng, n_train=30, n_test=20):
    """train_32x32.mat / test_32x32.mat as SVHN ships them: X (32, 32, 3, N) uint8, y (N, 1) in 1..10 (10 = digit 0)."""
    import scipy.io

    for split, n in (("train", n_train), ("test", n_test)):
        y = (np.arange(n) % 10) + 1
        x = rng.integers(0, 255, (32, 32, 3, n), dtype=np.uint8)
        x[0, 0, 0] = y  # a marker that lets the test follow each image through the loader's transpose
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x, "y": y[:, None].astype(np.uint8)})


@pytest.fixture
def svhn_folder(tmp_path, monkeypatch):
    """A fake SVHN folder that torchvision accepts: its MD5 check (which a fake file cannot pass) and the
    download (no internet here) are patched out; the .mat reading and label mapping are torchvision's own."""
    import torchvision.datasets as tvd

    _fake_svhn(tmp_path, np.random.default_rng(0))
    monkeypatch.setattr(tvd.SVHN, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tvd.SVHN, "download", lambda self: None)
    return tmp_path


def test_svhn_format_folder_loads(svhn_folder):
    ds = load_dataset("svhn", svhn_folder, download=True)  # the svhn-paper profile's DOWNLOAD: true
    assert ds.x_train.shape == (30, 3, 32, 32) and ds.x_test.shape == (20, 3, 32, 32)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    # SVHN's label 10 is the digit 0; the image travels with its label through the (N, C, H, W) transpose
    assert sorted(set(ds.y_train.tolist())) == list(range(10))
    assert np.array_equal(ds.x_train[:, 0, 0, 0] % 10, ds.y_train)
    assert ds.class_names == tuple(str(i) for i in range(10)) and ds.in_channels == 3


def test_svhn_files_in_place_load_without_download(svhn_folder, monkeypatch):
    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd.SVHN, "download", lambda self: pytest.fail("no download when the files are there"))
    ds = load_dataset("svhn", svhn_folder, download=False)
    assert ds.x_train.shape == (30, 3, 32, 32) and ds.x_test.shape == (20, 3, 32, 32)


def test_svhn_profile_trains_on_an_svhn_format_folder(svhn_folder, tmp_path):
    """The svhn-paper profile's data path and dataset, end to end through `prepare` (what notebook 01 runs),
    at a toy scale: one epoch of a width-4 ResNet-18."""
    from pathlib import Path

    import yaml

    from cu.experiment import prepare
    from cu.training import TrainConfig

    profile = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "svhn-paper.yaml").read_text())
    assert profile["DATASET"] == "svhn" and profile["DOWNLOAD"] is True
    recipe = TrainConfig(epochs=1, lr=profile["LR"], momentum=profile["MOMENTUM"],
                         weight_decay=profile["WEIGHT_DECAY"], batch_size=8, seed=0)
    ds, data, model, history = prepare(profile["DATASET"], svhn_folder, profile["MODEL"], 4, recipe, "cpu",
                                       tmp_path / "ckpt", False, profile["DOWNLOAD"])
    assert data.x_train.shape == (30, 3, 32, 32) and len(history["epoch"]) == 1
    assert list((tmp_path / "ckpt").glob("svhn-resnet18-w4-*.pt"))
