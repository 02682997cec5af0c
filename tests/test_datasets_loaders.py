"""Dataset loaders, generated families, disjoint splits and checksum-verified fetch."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from peerdata.datasets import (
    allocate_disjoint,
    balanced_subset,
    find_dataset_files,
    list_dataset_files,
    load_dataset,
    prepare_domain,
    read_idx,
    read_npz,
    resolve_data_dir,
    stratified_split,
)
from peerdata.datasets.fetch import KNOWN_SOURCES, fetch_dataset, verify_checksum
from peerdata.datasets.synthetic import generate, synthetic_names
from peerdata.errors import DataError


def _arrays(n: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n, dtype=np.int64) % 10


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_npz_round_trip(tmp_path: Path) -> None:
    x, y = _arrays()
    np.savez(tmp_path / "toy.npz", x=x, y=y)
    data = read_npz(tmp_path / "toy.npz")
    assert data.images.shape == (20, 28, 28) and data.labels.dtype == np.int64
    assert np.array_equal(data.images, x) and np.array_equal(data.labels, y)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((3, 28, 28), np.uint8)}, "missing key"),
        ({"x": np.zeros((3, 28, 28), np.float32), "y": np.zeros(3, np.int64)}, "dtype float32"),
        ({"x": np.zeros((3, 32, 32, 4), np.uint8), "y": np.zeros(3, np.int64)}, "shape"),
        ({"x": np.zeros((3, 28, 28), np.uint8), "y": np.zeros(4, np.int64)}, "4 labels"),
        ({"x": np.zeros((3, 28, 28), np.uint8), "y": np.array([0, 1, 12])}, "0..9"),
    ],
)
def test_malformed_npz_names_file_and_problem(
    tmp_path: Path, arrays: dict[str, np.ndarray], message: str
) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message) as info:
        read_npz(path)
    assert str(path) in str(info.value)


def test_not_an_npz_and_missing_file(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="garbage.npz"):
        read_npz(garbage)
    with pytest.raises(DataError, match="no such file"):
        read_npz(tmp_path / "absent.npz")


def test_idx_gz_and_plain(tmp_path: Path) -> None:
    x, y = _arrays(12)
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(x)))
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(y)))
    (folder / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(x[:5]))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(y[:5]))
    splits = load_dataset("toy", tmp_path)
    assert splits.train is not None and np.array_equal(splits.train.images, x)
    assert np.array_equal(splits.test.labels, y[:5])
    assert [f.name for f in list_dataset_files(tmp_path)] == ["toy"]


def test_idx_rejects_bad_magic_and_truncation(tmp_path: Path) -> None:
    bad = tmp_path / "bad-idx"
    bad.write_bytes(b"\x01\x02\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError, match="magic"):
        read_idx(bad)
    short = tmp_path / "short-idx"
    short.write_bytes(_idx_bytes(np.zeros(10, np.uint8))[:-2])
    with pytest.raises(DataError, match="promises 10 bytes"):
        read_idx(short)


def test_lookup_by_name_convention(tmp_path: Path) -> None:
    x, y = _arrays()
    np.savez(tmp_path / "newset_train.npz", x=x, y=y)
    np.savez(tmp_path / "newset.npz", x=x[:6], y=y[:6])
    np.savez(tmp_path / "single.npz", x=x, y=y)
    files = find_dataset_files("newset", tmp_path)
    assert files is not None and files.train is not None and files.test is not None
    assert len(load_dataset("newset", tmp_path).test) == 6
    single = load_dataset("single", tmp_path)
    assert single.train is None and len(single.test) == 20
    assert [f.name for f in list_dataset_files(tmp_path)] == ["newset", "single"]


def test_unknown_dataset_and_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="'nope' not found"):
        load_dataset("nope", tmp_path)
    with pytest.raises(DataError, match="needs a data directory"):
        load_dataset("mnist", None)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("mnist", tmp_path / "absent")


def test_resolve_data_dir_prefers_option() -> None:
    assert resolve_data_dir(Path("/a"), {"PEERDATA_DATA_DIR": "/b"}) == Path("/a")
    assert resolve_data_dir(None, {"PEERDATA_DATA_DIR": "/b"}) == Path("/b")
    assert resolve_data_dir(None, {}) is None


def test_synthetic_families_are_deterministic_and_distinct() -> None:
    assert len(synthetic_names()) >= 3
    a, b = generate("bars", 50, seed=3), generate("bars", 50, seed=3)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(generate("rings", 50, 3).images, a.images)
    assert np.bincount(a.labels).tolist() == [5] * 10
    with pytest.raises(DataError, match="unknown synthetic"):
        load_dataset("synthetic-nothing", None)


def test_stratified_split_is_disjoint_balanced_and_seeded() -> None:
    labels = np.repeat(np.arange(10), 100)
    rest, held = stratified_split(labels, 0.2, seed=1)
    assert len(set(rest) & set(held)) == 0 and len(rest) + len(held) == 1000
    assert np.bincount(labels[held]).tolist() == [20] * 10
    again = stratified_split(labels, 0.2, seed=1)
    assert np.array_equal(again[1], held)


def test_single_file_dataset_is_split_without_overlap(tmp_path: Path) -> None:
    x, y = _arrays(200)
    x[:, 0, 0] = np.arange(200)  # make every image unique
    np.savez(tmp_path / "solo.npz", x=x, y=y)
    domain = prepare_domain(load_dataset("solo", tmp_path), 0.2, 1000, seed=0)
    assert len(domain.stream) == 160 and len(domain.evaluation) == 40
    stream_keys = {bytes(i) for i in domain.stream.images}
    assert not any(bytes(i) in stream_keys for i in domain.evaluation.images)


def test_balanced_subset_and_allocation() -> None:
    labels = np.repeat(np.arange(10), 7)
    picked = balanced_subset(labels, 30, seed=0)
    assert np.bincount(labels[picked]).tolist() == [3] * 10
    given = allocate_disjoint({"a": 100, "b": 10}, [{"a": 40, "b": 5}, {"a": 60, "b": 5}], 0)
    assert len(set(given[0]["a"]) | set(given[1]["a"])) == 100
    with pytest.raises(DataError, match="'b' has 10 stream images but the scenario needs 11"):
        allocate_disjoint({"b": 10}, [{"b": 6}, {"b": 5}], 0)


def _fake_download(payload: bytes):
    def download(url: str, dest: Path) -> None:
        dest.write_bytes(payload)

    return download


def test_fetch_verifies_checksums_and_cleans_up(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch_dataset("kmnist", tmp_path, download=_fake_download(b"not the real file"))
    assert not any((tmp_path / "kmnist").iterdir())  # the bad download is deleted


def test_fetch_refuses_unknown_name_and_corrupt_existing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no known download"):
        fetch_dataset("cifar", tmp_path, download=_fake_download(b""))
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"tampered")
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: checksum mismatch"):
        fetch_dataset("mnist", tmp_path, download=_fake_download(b""))


def test_fetch_accepts_matching_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from peerdata.datasets import fetch

    payload = b"pretend idx bytes"
    digest = hashlib.md5(payload, usedforsecurity=False).hexdigest()
    monkeypatch.setitem(
        fetch.KNOWN_SOURCES, "toy", (fetch.RemoteFile("https://example.invalid/a.gz", digest),)
    )
    paths = fetch_dataset("toy", tmp_path, download=_fake_download(payload))
    assert paths == [tmp_path / "toy" / "a.gz"] and paths[0].read_bytes() == payload
    verify_checksum(paths[0], digest)
    assert set(KNOWN_SOURCES) >= {"mnist", "kmnist", "fashion_mnist"}


@pytest.mark.data
def test_real_datasets_have_expected_shapes(data_dir: Path) -> None:
    for name, train_size in (("mnist", 60000), ("kmnist", None), ("fashion_mnist", 60000)):
        splits = load_dataset(name, data_dir)
        assert splits.test.images.shape == (10000, 28, 28)
        assert sorted(np.unique(splits.test.labels).tolist()) == list(range(10))
        if train_size is None:
            assert splits.train is None
        else:
            assert splits.train is not None and len(splits.train) == train_size
