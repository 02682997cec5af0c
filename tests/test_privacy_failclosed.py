"""The privacy filter fails closed: bad bytes, bombs, broken detectors and forged results never
reach the network, and a missing or modified YuNet file is refused when the filter is built."""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import peerdata.ml.privacy.filter as filter_module
from peerdata.config import PrivacyConfig
from peerdata.errors import ConfigError, PrivacyError
from peerdata.ml.privacy import (
    Action,
    Box,
    DroppedImage,
    DropReason,
    FilteredImage,
    PrivacyFilter,
    RegionKind,
    dnn,
    require_filtered,
)
from peerdata.ml.privacy.detectors import Frame
from peerdata.ml.privacy.models import CENTERFACE, PPOCR_DET, ShippedModel, shipped_model_path
from peerdata.ml.privacy.results import _FILTER_TOKEN


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_declaring(width: int, height: int, idat: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def _encoded(ext: str, shape: tuple[int, ...] = (64, 48, 3)) -> bytes:
    rng = np.random.default_rng(1)
    ok, buf = cv2.imencode(ext, rng.integers(0, 255, shape, dtype=np.uint8))
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def filt() -> PrivacyFilter:
    return PrivacyFilter.from_config(PrivacyConfig())


def _dropped(result: object, reason: DropReason) -> DroppedImage:
    assert isinstance(result, DroppedImage), result
    assert result.reason is reason, result
    return result


# --- bad input -----------------------------------------------------------------------------


def test_empty_and_zero_size_images_are_dropped(filt: PrivacyFilter) -> None:
    _dropped(filt.filter_image(b""), DropReason.EMPTY)
    _dropped(filt.filter_image(_png_declaring(0, 10)), DropReason.EMPTY)
    _dropped(filt.filter_array(np.zeros((0, 10, 3), np.uint8)), DropReason.EMPTY)


def test_corrupt_and_truncated_png_is_dropped(filt: PrivacyFilter) -> None:
    png = _encoded(".png")
    _dropped(filt.filter_image(png[:40]), DropReason.UNDECODABLE)
    _dropped(filt.filter_image(png[:10]), DropReason.UNDECODABLE)
    broken = bytearray(png)
    broken[60:80] = b"\x00" * 20  # inside the compressed data: CRC and inflate fail
    _dropped(filt.filter_image(bytes(broken)), DropReason.UNDECODABLE)


def test_truncated_jpeg_is_dropped_or_filtered_never_passed_raw(filt: PrivacyFilter) -> None:
    jpeg = _encoded(".jpg")
    for cut in (3, 20, len(jpeg) // 2, len(jpeg) - 2):
        out = filt.filter_image(jpeg[:cut])
        # libjpeg may fill a cut-off scan with grey; such an image still went through detection.
        assert isinstance(out, DroppedImage | FilteredImage)
        if isinstance(out, FilteredImage):
            assert out.png.startswith(b"\x89PNG") and out.png != jpeg[:cut]


@pytest.mark.parametrize("data", [
    b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
    b"RIFF\x1a\x00\x00\x00WEBPVP8 ",
    b"II*\x00\x08\x00\x00\x00",
    b"hello, world",
], ids=["gif", "webp", "tiff", "text"])
def test_unsupported_formats_are_dropped(filt: PrivacyFilter, data: bytes) -> None:
    _dropped(filt.filter_image(data), DropReason.UNSUPPORTED_FORMAT)


@pytest.mark.parametrize("data", [None, 10**12, "\x89PNG", ["png"]], ids=repr)
def test_non_bytes_input_is_dropped(filt: PrivacyFilter, data: object) -> None:
    _dropped(filt.filter_image(data), DropReason.UNSUPPORTED_FORMAT)  # type: ignore[arg-type]


def test_formats_opencv_could_decode_are_still_refused(filt: PrivacyFilter) -> None:
    _dropped(filt.filter_image(_encoded(".bmp")), DropReason.UNSUPPORTED_FORMAT)


def test_unsupported_arrays_are_dropped(filt: PrivacyFilter) -> None:
    _dropped(filt.filter_array(np.zeros((32, 32), np.float32)), DropReason.UNSUPPORTED_FORMAT)
    _dropped(filt.filter_array(np.zeros((32, 32, 2), np.uint8)), DropReason.UNSUPPORTED_FORMAT)
    _dropped(filt.filter_array(np.zeros((4, 32, 32, 3), np.uint8)),
             DropReason.UNSUPPORTED_FORMAT)
    _dropped(filt.filter_array(b"raw bytes"), DropReason.UNSUPPORTED_FORMAT)  # type: ignore[arg-type]


# --- decompression bombs and the pixel limit -----------------------------------------------


def test_png_bomb_is_refused_from_its_header(filt: PrivacyFilter) -> None:
    # 100,000 x 100,000 grayscale declared in a file of under 100 bytes.
    bomb = _png_declaring(100_000, 100_000, zlib.compress(b"\x00" * 1000))
    assert len(bomb) < 100
    out = _dropped(filt.filter_image(bomb), DropReason.TOO_LARGE)
    assert "100000x100000" in out.detail


def test_jpeg_bomb_is_refused_from_its_header(filt: PrivacyFilter) -> None:
    jpeg = bytearray(_encoded(".jpg"))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", 65_000, 65_000)  # height, width
    _dropped(filt.filter_image(bytes(jpeg)), DropReason.TOO_LARGE)


def test_pixel_limit_applies_to_bytes_and_arrays() -> None:
    small = PrivacyFilter.from_config(PrivacyConfig(max_pixels=1000))
    _dropped(small.filter_image(_encoded(".png")), DropReason.TOO_LARGE)
    _dropped(small.filter_image(_encoded(".jpg")), DropReason.TOO_LARGE)
    _dropped(small.filter_array(np.zeros((40, 40, 3), np.uint8)), DropReason.TOO_LARGE)
    assert isinstance(small.filter_array(np.zeros((20, 20, 3), np.uint8)), FilteredImage)


# --- failures inside the filter --------------------------------------------------------------


class _BrokenDetector:
    name = "broken"
    kind = RegionKind.FACE
    min_size = (8, 8)
    version = "test-stand-in"

    def detect(self, frame: Frame) -> list[Box]:
        raise RuntimeError("detector exploded")


class _EverywhereDetector:
    name = "everywhere"
    kind = RegionKind.FACE
    min_size = (8, 8)
    version = "test-stand-in"

    def detect(self, frame: Frame) -> list[Box]:
        return [Box(0, 0, frame.width, frame.height)]


_BLUR = {RegionKind.FACE: Action.BLUR}


def test_detector_error_drops_the_image() -> None:
    filt = PrivacyFilter([_BrokenDetector()], _BLUR)
    out = _dropped(filt.filter_image(_encoded(".png")), DropReason.DETECTION_FAILED)
    assert "detector exploded" in out.detail
    assert filt.statistics().dropped_by_reason == (("detection_failed", 1),)


def test_redaction_and_encoder_errors_drop_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    filt = PrivacyFilter([_EverywhereDetector()], _BLUR)

    def fail(*args: object) -> None:
        raise MemoryError("no memory")

    monkeypatch.setattr(filter_module, "redact", fail)
    _dropped(filt.filter_array(np.zeros((32, 32, 3), np.uint8)), DropReason.REDACTION_FAILED)
    monkeypatch.undo()
    monkeypatch.setattr(filter_module, "encode_png", fail)
    _dropped(filt.filter_array(np.zeros((32, 32, 3), np.uint8)), DropReason.ENCODE_FAILED)


def test_a_filter_needs_detectors_and_an_action_for_each_kind() -> None:
    with pytest.raises(PrivacyError):
        PrivacyFilter([], _BLUR)
    with pytest.raises(PrivacyError, match="no action"):
        PrivacyFilter([_EverywhereDetector()], {RegionKind.PLATE: Action.BLUR})


# --- only the filter makes a FilteredImage ---------------------------------------------------


def _send(image: FilteredImage) -> int:
    """A stand-in for the node's sender: it accepts only what the filter returned."""
    return len(require_filtered(image).png)


def test_filtered_image_cannot_be_constructed_or_forged(filt: PrivacyFilter) -> None:
    with pytest.raises(PrivacyError):
        FilteredImage(b"raw", (), "0" * 64, 1, 1)
    with pytest.raises(PrivacyError):
        FilteredImage._create(object(), b"raw", (), 1, 1)
    with pytest.raises(TypeError):
        type("Forged", (FilteredImage,), {})
    real = filt.filter_array(np.zeros((16, 16), np.uint8))
    assert isinstance(real, FilteredImage)
    with pytest.raises(AttributeError):
        real.png = b"raw"  # type: ignore[misc]
    with pytest.raises(TypeError):
        dataclasses.replace(real, png=b"raw")  # type: ignore[type-var]
    with pytest.raises(TypeError):
        pickle.dumps(real)


def test_sender_rejects_anything_but_a_filtered_image(filt: PrivacyFilter) -> None:
    raw = _encoded(".png")
    for thing in (raw, bytearray(raw), np.zeros((8, 8), np.uint8), filt.filter_image(b"")):
        with pytest.raises(PrivacyError, match="only a FilteredImage"):
            _send(thing)  # type: ignore[arg-type]
    real = filt.filter_image(raw)
    assert isinstance(real, FilteredImage)
    assert _send(real) == len(real.png)
    assert FilteredImage._create(_FILTER_TOKEN, b"x", (), 1, 1).sha256 == hashlib.sha256(
        b"x").hexdigest()


# --- the YuNet model file is verified before use --------------------------------------------


def test_missing_yunet_model_is_refused(tmp_path: Path) -> None:
    cfg = PrivacyConfig(yunet_model=str(tmp_path / "absent.onnx"))
    with pytest.raises(PrivacyError, match="no such file"):
        PrivacyFilter.from_config(cfg)


def test_modified_yunet_model_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "face_detection_yunet_2023mar.onnx"
    model.write_bytes(b"not the model")
    with pytest.raises(PrivacyError, match="sha256"):
        PrivacyFilter.from_config(PrivacyConfig(yunet_model=model.name), models_dir=tmp_path)


def test_yunet_file_opencv_cannot_load_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "junk.onnx"
    model.write_bytes(b"junk that matches its own hash")
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    with pytest.raises(PrivacyError, match="cannot load"):
        PrivacyFilter.from_config(PrivacyConfig(yunet_model=str(model), yunet_sha256=digest))


# --- the default models (CenterFace, the PP-OCR text detector) are verified before use -----


def _build(model: ShippedModel) -> object:
    """What loads `model`: the float CenterFace (int8.py builds from it; tests below cover
    the int8 file) or the default filter (the text detector)."""
    if model is CENTERFACE or model.name == CENTERFACE.name:
        return dnn.CenterFaceDetector(int8=False)
    return PrivacyFilter.from_config(PrivacyConfig())


@pytest.mark.parametrize("model", [CENTERFACE, PPOCR_DET], ids=lambda m: m.name)
def test_default_model_missing_is_refused(model: ShippedModel, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:  # the package that ships the file is not installed
        patch.setattr(dnn, model.name.upper(),
                      dataclasses.replace(model, package="peerdata_no_such_package"))
        with pytest.raises(PrivacyError, match="not installed"):
            _build(model)
    # the package is there but the file is not
    monkeypatch.setattr(dnn, "shipped_model_path",
                        lambda m: tmp_path / "absent.onnx" if m == model else
                        shipped_model_path(m))
    with pytest.raises(PrivacyError, match="no such file"):
        _build(model)


@pytest.mark.parametrize("model", [CENTERFACE, PPOCR_DET], ids=lambda m: m.name)
def test_default_model_modified_is_refused(model: ShippedModel, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    data = bytearray(shipped_model_path(model).read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in the weights
    copy = tmp_path / "model.onnx"
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(dnn, "shipped_model_path",
                        lambda m: copy if m == model else shipped_model_path(m))
    with pytest.raises(PrivacyError, match="does not match"):
        _build(model)


@pytest.mark.parametrize("model", [CENTERFACE, PPOCR_DET], ids=lambda m: m.name)
def test_default_model_that_does_not_load_is_refused(model: ShippedModel, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # A broken file whose hash is the pinned one: truncated weights, pin moved to match.
    junk = tmp_path / "model.onnx"
    junk.write_bytes(shipped_model_path(model).read_bytes()[:5000])
    pinned = dataclasses.replace(model, sha256=hashlib.sha256(junk.read_bytes()).hexdigest())
    monkeypatch.setattr(dnn, model.name.upper(), pinned)
    monkeypatch.setattr(dnn, "shipped_model_path",
                        lambda m: junk if m == pinned else shipped_model_path(m))
    with pytest.raises(PrivacyError, match="cannot load"):
        _build(model)


def test_invalid_privacy_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="yunet_model is not set"):
        PrivacyFilter.from_config(PrivacyConfig(face_detectors=("yunet",)))
    with pytest.raises(ConfigError, match="face_detectors"):
        PrivacyFilter.from_config(PrivacyConfig(face_detectors=("dlib",)))
    with pytest.raises(ConfigError, match="plate_detectors"):
        PrivacyFilter.from_config(PrivacyConfig(plate_detectors=("alpr",)))
    with pytest.raises(ConfigError, match="centerface_score"):
        PrivacyFilter.from_config(PrivacyConfig(centerface_score=0.0))
    with pytest.raises(ConfigError, match="face_action"):
        PrivacyFilter.from_config(PrivacyConfig(face_action="hide"))


# --- the filter never raises ------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_filter_image_never_raises_on_random_bytes(filt: PrivacyFilter, data: bytes) -> None:
    assert isinstance(filt.filter_image(data), DroppedImage | FilteredImage)


_VALID = [_encoded(".png", (40, 40, 3)), _encoded(".jpg", (40, 40, 3)),
          _encoded(".png", (30, 30))]


@settings(max_examples=150, deadline=None)
@given(which=st.integers(0, len(_VALID) - 1),
       edits=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=6),
       cut=st.integers(0, 2000))
def test_filter_image_never_raises_on_corrupted_images(
        filt: PrivacyFilter, which: int, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(_VALID[which])
    for pos, value in edits:
        data[pos % len(data)] = value
    out = filt.filter_image(bytes(data[:max(cut, 1)]))
    assert isinstance(out, DroppedImage | FilteredImage)
    if isinstance(out, FilteredImage):
        assert out.width * out.height <= 40 * 40 * 2


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.int64]),
                  shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=12)))
def test_filter_array_never_raises(filt: PrivacyFilter, arr: np.ndarray) -> None:
    assert isinstance(filt.filter_array(arr), DroppedImage | FilteredImage)
