"""Explicit download of public MNIST-format datasets, verified against published checksums.

Rule: nothing downloads implicitly. Only `fetch_dataset`, called by `peerdata data fetch NAME`,
touches the network; every file is written to a temporary name, checked against its published
MD5, and renamed into `<data_dir>/<name>/` only when it matches.
"""

from __future__ import annotations

import functools
import hashlib
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from peerdata.errors import DataError


@dataclass(frozen=True)
class RemoteFile:
    """One public file and its published MD5 checksum."""

    url: str
    md5: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def _idx_set(base: str, md5s: tuple[str, str, str, str]) -> tuple[RemoteFile, ...]:
    names = (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    )
    return tuple(RemoteFile(f"{base}/{n}", m) for n, m in zip(names, md5s, strict=True))


# The checksums are the published ones of the original .gz files (as also listed by torchvision).
KNOWN_SOURCES: dict[str, tuple[RemoteFile, ...]] = {
    "mnist": _idx_set(
        "https://ossci-datasets.s3.amazonaws.com/mnist",
        (
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "d53e105ee54ea40749a09fcbcd1e9432",
            "9fb629c4189551a2d022fa330f9573f3",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
    ),
    "fashion_mnist": _idx_set(
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion",
        (
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ),
    ),
    "kmnist": _idx_set(
        "https://codh.rois.ac.jp/kmnist/dataset/kmnist",
        (
            "bdb82020997e1d708af4cf47b453dcf7",
            "e144d726b3acfaa3e44228e80efcd344",
            "5c965bf0a639b31b8f53240b1b52f4d7",
            "7320c461ea6c1c855c0b718fb2a4b134",
        ),
    ),
}

Downloader = Callable[[str, Path], None]
"""Writes the bytes at a URL to a local path (injected so tests never touch the network)."""

Progress = Callable[[str, int, int | None], None]
"""Told (file name, bytes so far, total bytes or None if unknown) as a download goes."""
CHUNK = 1 << 16


def md5_of(path: Path) -> str:
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: Path, expected_md5: str) -> None:
    """Raise DataError naming the file unless its MD5 equals `expected_md5`."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    actual = md5_of(path)
    if actual != expected_md5.lower():
        raise DataError(f"{path}: checksum mismatch (md5 {actual}, expected {expected_md5})")


def download_url(url: str, dest: Path, progress: Progress | None = None,
                 timeout_s: float = 60.0) -> None:
    """Default downloader: HTTP(S) GET to `dest` (`timeout_s` per socket operation), telling
    `progress` after every chunk."""
    name = url.rsplit("/", 1)[-1]
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, \
                dest.open("wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            if progress is not None:
                progress(name, 0, total)
            while chunk := response.read(CHUNK):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(name, done, total)
    except OSError as exc:
        raise DataError(f"download of {url} failed: {exc}") from None


def fetch_dataset(
    name: str, data_dir: Path, *, force: bool = False, download: Downloader | None = None,
    progress: Progress | None = None,
) -> list[Path]:
    """Download the IDX files of a known dataset into `data_dir/<name>/`, verified.

    Returns the paths written. Files already present and matching their checksum are kept.
    `download` defaults to `download_url` reporting to `progress`.

    Raises:
        DataError: unknown name, a present file with a wrong checksum (unless `force`), a
            failed download, or a downloaded file with a wrong checksum (it is deleted).
    """
    if name not in KNOWN_SOURCES:
        raise DataError(
            f"no known download for {name!r}; known: {', '.join(sorted(KNOWN_SOURCES))} "
            f"(other datasets: put {name}.npz or IDX files in the data directory yourself)"
        )
    if download is None:
        download = functools.partial(download_url, progress=progress)
    folder = data_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for remote in KNOWN_SOURCES[name]:
        target = folder / remote.filename
        if target.exists() and not force:
            verify_checksum(target, remote.md5)  # refuses a corrupt or foreign file in place
            written.append(target)
            continue
        partial = target.with_name(target.name + ".part")
        try:
            download(remote.url, partial)
            verify_checksum(partial, remote.md5)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(target)
        written.append(target)
    return written
