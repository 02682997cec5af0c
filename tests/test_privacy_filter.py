"""The privacy filter on the public-domain astronaut photo: faces found and blurred, policies,
grayscale digits, colour camera frames and statistics. The real default detectors throughout."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peerdata.config import PrivacyConfig
from peerdata.ml.privacy import (
    Action,
    DroppedImage,
    DropReason,
    FilteredImage,
    PrivacyFilter,
    RegionKind,
)

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (dev extra) has astronaut")


def _astronaut(size: int = 200) -> np.ndarray:
    bgr = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    return cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA)


def _decode(png: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None
    return img


@pytest.fixture(scope="module")
def default_filter() -> PrivacyFilter:
    return PrivacyFilter.from_config(PrivacyConfig())


def test_astronaut_face_is_found_and_blurred(default_filter: PrivacyFilter) -> None:
    img = _astronaut()
    out = default_filter.filter_array(img)
    assert isinstance(out, FilteredImage)
    faces = [r for r in out.regions if r.kind is RegionKind.FACE]
    assert faces and all(r.action is Action.BLUR for r in faces)
    # The face (YuNet box from faces.json, scaled to 200 px) lies under a redacted box.
    face = (np.array([178, 63, 90, 113]) * 200 / 512).astype(int)
    mask = np.zeros(img.shape[:2], bool)
    for r in faces:
        mask[r.covered.y:r.covered.y + r.covered.h, r.covered.x:r.covered.x + r.covered.w] = True
    x, y, w, h = face
    assert mask[y:y + h, x:x + w].mean() >= 0.9
    # The margin enlarges the detected box, and the pixels there really changed.
    after = _decode(out.png)
    for r in faces:
        assert r.covered.area > r.box.area
        c = r.covered
        assert not np.array_equal(after[c.y:c.y + c.h, c.x:c.x + c.w], img[c.y:c.y + c.h,
                                                                            c.x:c.x + c.w])
    assert out.sha256 == hashlib.sha256(out.png).hexdigest()
    assert np.array_equal(out.pixels(), after)
    assert (out.width, out.height) == (200, 200)


def test_blur_removes_detail_inside_the_box(default_filter: PrivacyFilter) -> None:
    img = _astronaut()
    out = default_filter.filter_array(img)
    assert isinstance(out, FilteredImage)
    c = out.regions[0].covered
    before = cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.CV_64F)
    after = cv2.Laplacian(cv2.cvtColor(_decode(out.png), cv2.COLOR_BGR2GRAY), cv2.CV_64F)
    inner = (slice(c.y + 2, c.y + c.h - 2), slice(c.x + 2, c.x + c.w - 2))
    assert after[inner].var() < 0.05 * before[inner].var()


def test_filter_image_accepts_jpeg_and_png_camera_frames(default_filter: PrivacyFilter) -> None:
    frame = cv2.resize(_astronaut(512), (640, 480), interpolation=cv2.INTER_AREA)
    for ext in (".jpg", ".png"):
        ok, buf = cv2.imencode(ext, frame)
        assert ok
        out = default_filter.filter_image(buf.tobytes())
        assert isinstance(out, FilteredImage), out
        assert (out.width, out.height) == (640, 480)
        assert any(r.kind is RegionKind.FACE for r in out.regions)
        assert out.png.startswith(b"\x89PNG") and _decode(out.png).shape == (480, 640, 3)


def test_drop_policy_shares_nothing_and_keep_policy_changes_nothing() -> None:
    img = _astronaut()
    dropping = PrivacyFilter.from_config(PrivacyConfig(face_action="drop"))
    dropped = dropping.filter_array(img)
    assert isinstance(dropped, DroppedImage)
    assert dropped.reason is DropReason.POLICY and dropped.regions
    assert dropping.statistics().dropped_by_reason == (("policy", 1),)

    keeping = PrivacyFilter.from_config(PrivacyConfig(face_action="keep", plate_action="keep"))
    kept = keeping.filter_array(img)
    assert isinstance(kept, FilteredImage)
    assert kept.regions and all(r.action is Action.KEEP for r in kept.regions)
    assert np.array_equal(_decode(kept.png), img)


def test_grayscale_digits_pass_unchanged(default_filter: PrivacyFilter) -> None:
    rng = np.random.default_rng(0)
    digit = np.zeros((28, 28), np.uint8)
    cv2.line(digit, (8, 5), (20, 22), 255, 3)
    cv2.circle(digit, (14, 14), 6, int(rng.integers(100, 255)), 2)
    out = default_filter.filter_array(digit)
    assert isinstance(out, FilteredImage) and out.regions == ()
    assert np.array_equal(_decode(out.png), digit)  # still grayscale, still 28x28


def test_images_below_every_detector_minimum_take_the_fast_path() -> None:
    filt = PrivacyFilter.from_config(PrivacyConfig())
    # faces from 12 px (CenterFace), text lines from 16x8 px (the plate detector)
    assert filt.too_small_to_scan(11, 400) and filt.too_small_to_scan(400, 7)
    assert not filt.too_small_to_scan(12, 12) and not filt.too_small_to_scan(16, 8)
    out = filt.filter_array(np.full((10, 10, 3), 128, np.uint8))
    assert isinstance(out, FilteredImage) and out.regions == ()
    stats = filt.statistics()
    assert (stats.images_seen, stats.images_filtered, stats.images_too_small_to_scan) == (1, 1, 1)


def test_alpha_channel_is_dropped_and_still_filtered(default_filter: PrivacyFilter) -> None:
    bgra = cv2.cvtColor(_astronaut(), cv2.COLOR_BGR2BGRA)
    out = default_filter.filter_array(bgra)
    assert isinstance(out, FilteredImage) and out.regions
    assert _decode(out.png).shape == (200, 200, 3)


def test_statistics_count_what_happened() -> None:
    filt = PrivacyFilter.from_config(PrivacyConfig())
    filt.filter_array(_astronaut())
    filt.filter_image(b"not an image")
    filt.filter_array(np.zeros((0, 5), np.uint8))
    stats = filt.statistics()
    assert stats.images_seen == 3 and stats.images_filtered == 1 and stats.images_dropped == 2
    assert stats.regions_blurred >= 1 and stats.regions_found == stats.regions_blurred
    assert dict(stats.dropped_by_reason) == {"unsupported_format": 1, "empty": 1}
    assert stats.as_dict()["dropped_by_reason"] == {"empty": 1, "unsupported_format": 1}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(150, 260), dx=st.integers(0, 40), dy=st.integers(0, 40),
       gain=st.floats(0.6, 1.3), flip=st.booleans())
def test_output_never_equals_input_where_a_face_was_found(
        default_filter: PrivacyFilter, size: int, dx: int, dy: int, gain: float,
        flip: bool) -> None:
    img = _astronaut(size + 40)[dy:dy + size, dx:dx + size]
    img = cv2.convertScaleAbs(img, alpha=gain)
    if flip:
        img = cv2.flip(img, 1)
    out = default_filter.filter_array(img)
    assert isinstance(out, FilteredImage)
    after = _decode(out.png)
    for r in out.regions:
        c = r.covered
        assert not np.array_equal(after[c.y:c.y + c.h, c.x:c.x + c.w],
                                  img[c.y:c.y + c.h, c.x:c.x + c.w]), r



def _synthetic_plate() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A white plate with a black rim and Russian-style characters on a grey background.

    Real plates are in tests/test_privacy_photos.py (with the shared data); this one always runs.
    """
    img = np.full((240, 400, 3), 90, np.uint8)
    x, y, w, h = 80, 100, 220, 48
    cv2.rectangle(img, (x, y), (x + w, y + h), (255, 255, 255), -1)
    cv2.rectangle(img, (x, y), (x + w, y + h), (0, 0, 0), 2)
    cv2.putText(img, "K 777 KK 99", (x + 6, y + 37), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 0, 0), 2)
    return img, (x, y, w, h)


def test_licence_plate_is_blurred_or_dropped_by_its_own_policy() -> None:
    img, (x, y, w, h) = _synthetic_plate()
    out = PrivacyFilter.from_config(PrivacyConfig()).filter_array(img)
    assert isinstance(out, FilteredImage)
    plates = [r for r in out.regions if r.kind is RegionKind.PLATE]
    assert plates and all(r.detectors == ("text_plate",) for r in plates)
    mask = np.zeros(img.shape[:2], bool)
    for r in plates:
        mask[r.covered.y:r.covered.y + r.covered.h, r.covered.x:r.covered.x + r.covered.w] = True
    assert mask[y:y + h, x:x + w].mean() >= 0.9
    dropped = PrivacyFilter.from_config(PrivacyConfig(plate_action="drop")).filter_array(img)
    assert isinstance(dropped, DroppedImage) and dropped.reason is DropReason.POLICY
