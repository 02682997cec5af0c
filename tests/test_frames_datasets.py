"""The one image pipeline (header check, gray/RGB, any size) and datasets by name: image
folders, RGB npz, and derived BASE:CORRUPTION:SEVERITY domains."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from peerdata.datasets import list_dataset_files, load_dataset, prepare_domain
from peerdata.errors import DataError
from peerdata.ml.frames import GRAY_28, ImageSpec, decode_frame, fit_batch, fit_image

RGB_64 = ImageSpec(64, 3)


NO_CORRUPTIONS = "imagecorruptions-imaug not installed: scripts/setup installs it (--no-deps)"


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)) + b"\x00" * 64)


def _jpeg(rgb: np.ndarray) -> bytes:
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return data.tobytes()


def test_decode_keeps_rgb_order_and_fits_any_size() -> None:
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[..., 0] = 220  # red camera frame
    rgb = decode_frame(_jpeg(frame), RGB_64)
    assert rgb.shape == (64, 64, 3) and rgb[..., 0].mean() > 200 and rgb[..., 2].mean() < 30
    gray = decode_frame(_jpeg(frame), GRAY_28)
    assert gray.shape == (28, 28) and 50 < gray.mean() < 90  # luminance of red
    assert fit_image(np.full((5, 300), 7, np.uint8), RGB_64).shape == (64, 64, 3)
    assert fit_image(np.zeros((10, 10, 4), np.uint8), GRAY_28).shape == (28, 28)
    assert fit_batch(np.zeros((0, 9, 9), np.uint8), RGB_64).shape == (0, 64, 64, 3)


def test_declared_size_is_refused_before_decoding() -> None:
    with pytest.raises(DataError, match="pixels"):
        decode_frame(_png_declaring(100_000, 100_000), RGB_64)
    with pytest.raises(DataError, match="too large|pixels"):
        decode_frame(_jpeg(np.zeros((64, 64, 3), np.uint8)), RGB_64, max_pixels=1000)
    with pytest.raises(DataError):
        decode_frame(b"GIF89a" + b"\x00" * 20, RGB_64)


def _write_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for domain in ("day", "night"):
        for label, cls in enumerate(("cat", "dog", "owl")):
            folder = root / "cams" / domain / cls
            folder.mkdir(parents=True)
            for i in range(4):
                size = (40, 50) if i % 2 else (30, 30)  # mixed sizes stack at the first's
                img = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
                img[..., 0] = 80 * label
                suffix = ".png" if i == 3 else ".jpg"
                ok, data = cv2.imencode(suffix, img)
                (folder / f"{i}{suffix}").write_bytes(data.tobytes())
    (root / "cams" / "day" / "README.txt").write_text("not a class")


def test_image_folder_dataset_by_name(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    names = [f.name for f in list_dataset_files(tmp_path)]
    assert "cams/day" in names and "cams/night" in names
    splits = load_dataset("cams/night", tmp_path)
    assert splits.train is None and len(splits.test) == 12
    assert splits.test.images.shape[1:] == (30, 30, 3)
    assert np.array_equal(np.bincount(splits.test.labels), [4, 4, 4])  # cat, dog, owl = 0, 1, 2
    with pytest.raises(DataError, match="not found"):
        load_dataset("cams/dusk", tmp_path)


def test_rgb_npz_dataset(tmp_path: Path) -> None:
    x = np.random.default_rng(1).integers(0, 255, (20, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "photos.npz", x=x, y=np.arange(20) % 10)
    splits = load_dataset("photos", tmp_path)
    assert np.array_equal(splits.test.images, x)


def test_derived_domain_is_deterministic_per_image_and_lazy(tmp_path: Path) -> None:
    pytest.importorskip("imagecorruptions", reason=NO_CORRUPTIONS)
    rng = np.random.default_rng(2)
    x = rng.integers(60, 200, (40, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "base.npz", x=x, y=np.arange(40) % 10)
    fog = load_dataset("base:fog:3", tmp_path)
    assert fog.name == "base:fog:3" and "fog" in fog.origin
    idx = np.array([3, 7, 11])
    a = fog.test.take(idx).images
    assert a.shape == (3, 32, 32, 3) and not np.array_equal(a, x[idx])
    assert np.array_equal(a, load_dataset("base:fog:3", tmp_path).test.take(idx).images)
    # per image: an image's pixels do not depend on which others are read with it
    assert np.array_equal(fog.test.take(np.array([7])).images[0], a[1])
    # lazily split: the stream part stays derived and gives the same pixels by source position
    domain = prepare_domain(fog, 0.25, 10, seed=0)
    assert domain.stream.derive is not None and len(domain.evaluation) == 10
    first = int(domain.stream.ids[0])
    assert np.array_equal(domain.stream.take(np.array([0])).images[0],
                          fog.test.take(np.array([first])).images[0])
    stronger = load_dataset("base:fog:5", tmp_path).test.take(idx).images
    assert not np.array_equal(stronger, a)


@pytest.mark.parametrize(("name", "message"), [
    ("base:fog", "BASE:CORRUPTION:SEVERITY"),
    ("base:fog:9", "severity must be 1-5"),
    ("base:sunshine:2", "unknown corruption 'sunshine'"),
])
def test_bad_derived_names_are_refused(tmp_path: Path, name: str, message: str) -> None:
    pytest.importorskip("imagecorruptions", reason=NO_CORRUPTIONS)
    with pytest.raises(DataError, match=message):
        load_dataset(name, tmp_path)
