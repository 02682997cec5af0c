"""Readers for image datasets (`.npz` with `x`/`y`, IDX `.gz`, image folders) and name-based
lookup.

Rule: a dataset is referenced by name; the files that back it are found by convention in a data
directory, so adding a new dataset needs files, never a code change:

- `<name>_train.npz` (stream split) and `<name>.npz` or `<name>_test.npz` (held-out split);
  `x` is uint8 N x H x W (gray) or N x H x W x 3 (RGB), `y` integer labels 0-9;
- only `<name>.npz`: one file, split by the experiment (see `peerdata.datasets.splits`);
- IDX: `<name>/train-images-idx3-ubyte[.gz]` + `train-labels-idx1-ubyte[.gz]` and/or
  `<name>/t10k-images-idx3-ubyte[.gz]` + `t10k-labels-idx1-ubyte[.gz]`;
- an image folder `<name>/<class>/*.jpg|png` (`<name>` may hold a slash: `pacs/photo`), one
  split (see `peerdata.datasets.folders`);
- `BASE:CORRUPTION:SEVERITY`: dataset BASE with a corruption applied per image (see
  `peerdata.datasets.derived`);
- `synthetic-<family>`: generated, no file (see `peerdata.datasets.synthetic`).
"""

from __future__ import annotations

import gzip
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from peerdata.datasets.folders import image_classes, read_image_folder
from peerdata.datasets.images import LabelledImages, checked
from peerdata.errors import DataError

DATA_DIR_ENV = "PEERDATA_DATA_DIR"
SYNTHETIC_PREFIX = "synthetic-"


@dataclass(frozen=True)
class DatasetFiles:
    """The files found for one dataset name; `train` or `test` may be absent (None)."""

    name: str
    train: tuple[Path, ...] | None
    test: tuple[Path, ...] | None

    @property
    def kind(self) -> str:
        """'npz', 'idx' or 'folder'."""
        first = (self.train or self.test or (Path("?"),))[0]
        if first.suffix == ".npz":
            return "npz"
        return "folder" if first.is_dir() else "idx"


@dataclass(frozen=True)
class DatasetSplits:
    """A dataset's train split (None when only one file exists) and its test split."""

    name: str
    train: LabelledImages | None
    test: LabelledImages
    origin: str


def resolve_data_dir(option: Path | None, env: dict[str, str] | None = None) -> Path | None:
    """The data directory: the explicit option, else PEERDATA_DATA_DIR, else None."""
    if option is not None:
        return option
    value = (os.environ if env is None else env).get(DATA_DIR_ENV)
    return Path(value) if value else None


def read_npz(path: Path) -> LabelledImages:
    """Read a `.npz` holding `x` (uint8 N x H x W [x 3]) and `y` (integer labels 0-9)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("x", "y") if k not in data.files]
            if missing:
                raise DataError(f"{path}: missing key(s) {missing}; expected 'x' and 'y'")
            return checked(data["x"], data["y"], str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None


def _read_idx_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    if path.suffix == ".gz":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: not a readable gzip file ({exc})") from None
    return raw


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) of unsigned bytes into an array."""
    raw = _read_idx_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise DataError(f"{path}: IDX element type {raw[2]:#x} is not unsigned byte (0x08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    count = int(np.prod(shape)) if shape else 0
    if len(raw) - header != count:
        held = len(raw) - header
        raise DataError(f"{path}: IDX header promises {count} bytes, file holds {held}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def read_idx_pair(images_path: Path, labels_path: Path) -> LabelledImages:
    """Read an IDX images file and its labels file."""
    images = read_idx(images_path)
    labels = read_idx(labels_path).astype(np.int64)
    return checked(images, labels, f"{images_path} + {labels_path.name}")


def _idx_pair(folder: Path, prefix: str) -> tuple[Path, ...] | None:
    for suffix in (".gz", ""):
        images = folder / f"{prefix}-images-idx3-ubyte{suffix}"
        labels = folder / f"{prefix}-labels-idx1-ubyte{suffix}"
        if images.is_file() and labels.is_file():
            return (images, labels)
    return None


def find_dataset_files(name: str, data_dir: Path) -> DatasetFiles | None:
    """The files backing `name` in `data_dir` by the conventions above, or None."""
    train = data_dir / f"{name}_train.npz"
    test = next(
        (p for p in (data_dir / f"{name}.npz", data_dir / f"{name}_test.npz") if p.is_file()), None
    )
    if train.is_file() or test is not None:
        return DatasetFiles(
            name, (train,) if train.is_file() else None, (test,) if test is not None else None
        )
    folder = data_dir / name
    if folder.is_dir():
        idx_train, idx_test = _idx_pair(folder, "train"), _idx_pair(folder, "t10k")
        if idx_train or idx_test:
            return DatasetFiles(name, idx_train, idx_test)
        if image_classes(folder) is not None:
            return DatasetFiles(name, None, (folder,))
    return None


def list_dataset_files(data_dir: Path) -> list[DatasetFiles]:
    """Every dataset found in `data_dir`, sorted by name."""
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory does not exist")
    names: set[str] = set()
    for path in data_dir.iterdir():
        if path.is_file() and path.suffix == ".npz":
            stem = path.stem
            for suffix in ("_train", "_test"):
                if stem.endswith(suffix):
                    stem = stem[: -len(suffix)]
            names.add(stem)
        elif path.is_dir():
            names.add(path.name)
            # a folder of image-folder domains (pacs/photo, pacs/sketch, ...)
            names.update(f"{path.name}/{d.name}" for d in path.iterdir()
                         if d.is_dir() and image_classes(d) is not None)
    found = (find_dataset_files(n, data_dir) for n in sorted(names))
    return [f for f in found if f is not None]


def _read(paths: tuple[Path, ...]) -> LabelledImages:
    if paths[0].suffix == ".npz":
        return read_npz(paths[0])
    return read_image_folder(paths[0]) if paths[0].is_dir() else read_idx_pair(*paths)


def load_dataset(name: str, data_dir: Path | None) -> DatasetSplits:
    """Load dataset `name`: generated when `synthetic-*`, else from files in `data_dir`.

    Raises:
        DataError: unknown name, no data directory, or malformed files (the message names them).
    """
    if name.startswith(SYNTHETIC_PREFIX):
        from peerdata.datasets.synthetic import generate_splits

        return generate_splits(name)
    from peerdata.datasets.derived import derived_splits, parse_derived

    derived = parse_derived(name)
    if derived is not None:
        base, corruption, severity = derived
        return derived_splits(name, load_dataset(base, data_dir), corruption, severity)
    if data_dir is None:
        raise DataError(
            f"dataset {name!r} needs a data directory: pass --data-dir or set {DATA_DIR_ENV}"
        )
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory does not exist")
    files = find_dataset_files(name, data_dir)
    if files is None:
        raise DataError(
            f"dataset {name!r} not found in {data_dir}: expected {name}.npz, {name}_train.npz "
            f", IDX files or <class>/ image folders under {name}/ (try `peerdata data list` or "
            f"`peerdata data fetch`)"
        )
    train = _read(files.train) if files.train else None
    if files.test is not None:
        test = _read(files.test)
    else:
        # only a train split exists: the experiment splits it like a single file
        assert train is not None
        test, train = train, None
    origin = ", ".join(str(p.name) for p in (files.train or ()) + (files.test or ()))
    return DatasetSplits(name, train, test, origin)
