"""Carry a data file larger than the lent GPU machine's 64 MiB per-call transfer, in parts, and join it there.

The device tool sends the working tree (at most 64 MiB, carried paths included) with each call, and a warm
machine keeps what earlier calls left outside the repository until it is given back (30 s idle). CIFAR-10
(`data/cifar10.npz`, 169 MB) therefore travels in parts over consecutive calls, each moved out of the tree
at once, then joined and checked against the whole file's SHA-256:

    python benchmarks/device_data.py split data/cifar10.npz            # here: .xfer/cifar10.npz.part0..2 + manifest

    device run, carry [".xfer/cifar10.npz.part0", ".xfer/cifar10.npz.manifest.json"]:
        python3 benchmarks/device_data.py stash .xfer                 # -> /tmp/xfer, outside the tree
    device run, carry [".xfer/cifar10.npz.part1"]:   the same command (call again within the 30 s warm window)
    device run, carry [".xfer/cifar10.npz.part2"]:
        python3 benchmarks/device_data.py stash .xfer && python3 benchmarks/device_data.py join /tmp/xfer data \\
        && PYTHONPATH=$PWD MPLBACKEND=Agg python3 -m cu.sweep configs/sweeps/NAME.yaml --cluster inline \\
           --budget-s 420 2>&1 | tee $OUT/sweep.log; cp results/PROFILE/*.csv $OUT/

(`--cluster inline` because the machine has PyTorch but not papermill; `--budget-s` stops between notebooks so
every finished notebook's rows come back.) `.xfer/` is ignored by git. Each part is at most `--part-mib` MiB
(default 56: the tree itself is ~6 MiB).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path


def _sha256(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def split(src: Path, folder: Path, part_mib: float = 56) -> list[Path]:
    """src -> folder/<name>.part0..k-1 (each <= part_mib MiB) and folder/<name>.manifest.json."""
    folder.mkdir(parents=True, exist_ok=True)
    size, step = src.stat().st_size, int(part_mib * 2**20)
    parts = []
    with open(src, "rb") as fh:
        for k in range((size + step - 1) // step):
            part = folder / f"{src.name}.part{k}"
            part.write_bytes(fh.read(step))
            parts.append(part)
    manifest = {"name": src.name, "size": size, "sha256": _sha256([src]), "parts": [p.name for p in parts]}
    (folder / f"{src.name}.manifest.json").write_text(json.dumps(manifest, indent=1))
    return parts


def stash(folder: Path, to: Path) -> list[str]:
    """Copy the parts and manifests present in `folder` to `to` (outside the working tree); returns their names."""
    to.mkdir(parents=True, exist_ok=True)
    names = []
    for p in sorted(folder.glob("*.part*")) + sorted(folder.glob("*.manifest.json")):
        shutil.copyfile(p, to / p.name)
        names.append(p.name)
    return names


def join(folder: Path, dest: Path) -> list[Path]:
    """Join every manifest's parts found in `folder` into `dest`/<name>, checked against its SHA-256; raises
    naming the parts still missing."""
    out = []
    for m in sorted(folder.glob("*.manifest.json")):
        manifest = json.loads(m.read_text())
        parts = [folder / p for p in manifest["parts"]]
        missing = [p.name for p in parts if not p.exists()]
        if missing:
            raise FileNotFoundError(f"{manifest['name']}: parts {missing} have not arrived in {folder}: carry each "
                                    f"in a call and run `stash` there")
        digest = _sha256(parts)
        if digest != manifest["sha256"]:
            raise ValueError(f"{manifest['name']}: the joined parts do not match the manifest's SHA-256 (a part is "
                             f"damaged or from another file): split it again")
        dest.mkdir(parents=True, exist_ok=True)
        target, tmp = dest / manifest["name"], dest / f".{manifest['name']}.tmp"
        with open(tmp, "wb") as fh:
            for p in parts:
                fh.write(p.read_bytes())
        tmp.replace(target)
        out.append(target)
    if not out:
        raise FileNotFoundError(f"no *.manifest.json in {folder}: carry the manifest with the first part")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("split", help="cut a file into parts under --dir (default .xfer)")
    a.add_argument("src", type=Path)
    a.add_argument("--dir", type=Path, default=Path(".xfer"))
    a.add_argument("--part-mib", type=float, default=56)
    b = sub.add_parser("stash", help="copy the parts that arrived with this call out of the working tree")
    b.add_argument("folder", type=Path)
    b.add_argument("--to", type=Path, default=Path("/tmp/xfer"))
    c = sub.add_parser("join", help="join and check the stashed parts into a data folder")
    c.add_argument("folder", type=Path)
    c.add_argument("dest", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "split":
        for p in split(args.src, args.dir, args.part_mib):
            print(p, p.stat().st_size)
    elif args.cmd == "stash":
        print("stashed:", ", ".join(stash(args.folder, args.to)) or "nothing")
    else:
        for p in join(args.folder, args.dest):
            print("joined", p, p.stat().st_size)


if __name__ == "__main__":
    sys.exit(main())
