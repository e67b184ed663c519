"""Reading a dataset from its files into a `cu.data.Dataset` (uint8 images (N, C, H, W), labels, class names).

    load_dataset("digits")                             # scikit-learn's 8x8 digits, embedded
    load_dataset("cifar10", "data")                    # data/cifar10.npz
    load_dataset("cifar10", "data", download=True)     # torchvision's download, kept as data/cifar10.npz
    load_dataset("svhn", "data")                       # SVHN's train_32x32.mat / test_32x32.mat under data/

An `.npz` archive holds `x_train` (N, H, W, C) or (N, H, W) uint8, `y_train`, `x_test`, `y_test` and optionally
`class_names`; MNIST and CIFAR-10 are read from `<root>/<name>.npz` when it is there. With `download=True` and no
archive, torchvision downloads the dataset's own files and the images are written once as `<root>/<name>.npz`
(atomically), which later runs read without torchvision. SVHN is read from its `.mat` files by torchvision,
whose MD5 check guards them; with `download=True` missing files are downloaded first.

This module is apart from `cu.data` on purpose: the models' cache keys fingerprint `cu.data` (normalisation,
splits and batches change what a model learns), not how the arrays were read from disk.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cu.data import Dataset
from cu.runtime import atomic_write

DATASETS = ("digits", "mnist", "cifar10", "svhn")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")


def load_dataset(name: str = "digits", root: str | Path | None = None, download: bool = False) -> Dataset:
    """Load a whole dataset into memory.

    name: 'digits' (scikit-learn's 8x8 digits, embedded; fixed seeded 80/20 split), 'mnist', 'cifar10' (from
          `<root>/<name>.npz`; downloaded by torchvision and kept as that file when `download`) or 'svhn'
          (SVHN's two .mat files under root; downloaded when missing and `download`).
    root: the folder holding those files; default `data` (the repository's `data/` seen from its root; the
          notebooks, which run in notebooks/, pass `../data`).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if name == "digits":
        return _load_digits()
    root = Path(root) if root is not None else Path("data")
    if name == "svhn":
        missing = [f for f in SVHN_FILES if not (root / f).is_file()]
        if missing and not download:
            raise FileNotFoundError(
                f"dataset 'svhn' not found: looked for {', '.join(missing)} under {root.resolve()}. Put SVHN's "
                f"train_32x32.mat and test_32x32.mat (http://ufldl.stanford.edu/housenumbers/) in that folder, pass "
                f"data_root= the folder that holds them, or download=True on a machine with internet.")
        return _load_svhn(root, download=bool(missing))
    npz = root / f"{name}.npz"
    if npz.is_file():
        return _load_npz(name, npz)
    if not download:
        raise FileNotFoundError(
            f"dataset {name!r} not found: looked for {npz.resolve()}. Put {name}.npz there (keys x_train, y_train, "
            f"x_test, y_test; e.g. a link to a copy you have: see the README's 'Data'), pass data_root= the folder "
            f"that holds it, or download=True on a machine with internet (torchvision's files, kept as {name}.npz).")
    ds = _download_torchvision(name, root)
    save_npz(ds, npz)
    return ds


def save_npz(ds: Dataset, path: str | Path) -> Path:
    """Write `ds` as an archive `load_dataset` reads (images (N, H, W, C), or (N, H, W) for one channel), atomically."""
    def hwc(x):
        return x[:, 0] if x.shape[1] == 1 else x.transpose(0, 2, 3, 1)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = dict(x_train=hwc(ds.x_train), y_train=ds.y_train, x_test=hwc(ds.x_test), y_test=ds.y_test,
                  class_names=np.array(ds.class_names))

    def write(tmp):
        with open(tmp, "wb") as fh:  # a file object: np.savez would append .npz to the temporary name
            np.savez(fh, **arrays)

    atomic_write(path, write)
    return path


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    # 0..16 intensities -> 0..255 uint8, one channel
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return Dataset("digits", x_tr, y_tr, x_te, y_te, tuple(str(i) for i in range(10)))


def _nchw(x: np.ndarray) -> np.ndarray:
    if x.ndim == 3:  # (N, H, W) grey
        return np.ascontiguousarray(x[:, None])
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (N, H, W, C) -> (N, C, H, W)


def _load_npz(name: str, path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
            names = tuple(str(c) for c in f["class_names"]) if "class_names" in f.files else None
    except (KeyError, ValueError, OSError) as err:
        raise ValueError(f"{path} is not a valid {name} archive (needs x_train, y_train, x_test, y_test): "
                         f"{err}. Replace it with a good copy or pass another data_root.") from err
    if names is None:
        names = CIFAR10_CLASSES if name == "cifar10" else tuple(str(i) for i in range(10))
    return Dataset(name, _nchw(arrays["x_train"].astype(np.uint8)), arrays["y_train"].astype(np.int64),
                   _nchw(arrays["x_test"].astype(np.uint8)), arrays["y_test"].astype(np.int64), names)


def _load_svhn(root: Path, download: bool) -> Dataset:
    """SVHN through torchvision (its .mat reader, MD5 check and label 10 -> digit 0)."""
    import torchvision.datasets as tvd

    tr = tvd.SVHN(str(root), split="train", download=download)
    te = tvd.SVHN(str(root), split="test", download=download)
    return Dataset("svhn", tr.data, tr.labels.astype(np.int64), te.data, te.labels.astype(np.int64),
                   tuple(str(i) for i in range(10)))


def _download_torchvision(name: str, root: Path) -> Dataset:
    """MNIST or CIFAR-10 downloaded by torchvision into `root`, as a Dataset."""
    import torchvision.datasets as tvd

    cls = tvd.MNIST if name == "mnist" else tvd.CIFAR10
    tr = cls(str(root), train=True, download=True)
    te = cls(str(root), train=False, download=True)
    as_np = lambda a: a.numpy() if hasattr(a, "numpy") else np.asarray(a)  # noqa: E731
    return Dataset(name, _nchw(as_np(tr.data)), np.asarray(tr.targets, dtype=np.int64),
                   _nchw(as_np(te.data)), np.asarray(te.targets, dtype=np.int64), tuple(tr.classes))
