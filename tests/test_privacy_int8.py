"""The int8 CenterFace (built by scripts/setup) fails closed and finds what the float model finds;
the graph rewrites compute what the shipped graphs compute; one plate's lines become one box."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from peerdata.config import PrivacyConfig
from peerdata.errors import PrivacyError
from peerdata.ml.privacy import PrivacyFilter, dnn, int8
from peerdata.ml.privacy.detectors import Frame
from peerdata.ml.privacy.models import CENTERFACE, PPOCR_DET, onnx_session, shipped_model_path
from peerdata.ml.privacy.redact import merge_boxes, overlapping
from peerdata.ml.privacy.results import Box

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (dev extra) has astronaut")
FACE = Box(178, 63, 90, 113)  # the astronaut's face in the 512 px photo


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture
def cache_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the int8 cache that the detector reads instead of the venv's."""
    if not (int8.cache_dir() / int8.INT8_FILE).exists():
        pytest.skip("no int8 CenterFace in this environment: run scripts/setup")
    copy = tmp_path / "share" / "peerdata" / "privacy"
    shutil.copytree(int8.cache_dir(), copy)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    assert int8.cache_dir() == copy
    return copy


def test_default_filter_uses_the_int8_file(cache_copy: Path) -> None:
    filt = PrivacyFilter.from_config(PrivacyConfig())
    assert " int8 sha256:" in filt.detector_versions()["centerface"]


def test_missing_int8_file_is_refused(cache_copy: Path) -> None:
    (cache_copy / int8.INT8_FILE).unlink()
    with pytest.raises(PrivacyError, match="no such file"):
        PrivacyFilter.from_config(PrivacyConfig())
    shutil.rmtree(cache_copy)
    with pytest.raises(PrivacyError, match="scripts/setup"):
        PrivacyFilter.from_config(PrivacyConfig())


def test_modified_int8_file_is_refused(cache_copy: Path) -> None:
    path = cache_copy / int8.INT8_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(PrivacyError, match="does not match"):
        dnn.CenterFaceDetector()


def test_int8_manifest_from_another_model_or_broken_is_refused(cache_copy: Path) -> None:
    manifest_path = cache_copy / int8.MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps(manifest | {"source_sha256": "0" * 64}))
    with pytest.raises(PrivacyError, match="another model"):
        dnn.CenterFaceDetector()
    manifest_path.write_text("{not json")
    with pytest.raises(PrivacyError, match="unreadable"):
        dnn.CenterFaceDetector()


def test_int8_build_refuses_a_modified_float_model(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    data = bytearray(shipped_model_path(CENTERFACE).read_bytes())
    data[-100] ^= 0x01
    (tmp_path / "centerface.onnx").write_bytes(bytes(data))
    monkeypatch.setattr(int8, "shipped_model_path", lambda m: tmp_path / "centerface.onnx")
    with pytest.raises(PrivacyError, match="does not match"):
        int8.build_int8(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_int8_finds_the_face_the_float_model_finds(cache_copy: Path,
                                                   astronaut: np.ndarray) -> None:
    frame = Frame.from_pixels(astronaut)
    boxes = {name: dnn.CenterFaceDetector(int8=q).detect(frame)
             for name, q in (("int8", True), ("float", False))}
    for name, found in boxes.items():
        assert [b for b in found if b.iou(FACE) >= 0.5], (name, found)
    assert len(boxes["int8"]) == len(boxes["float"])


@pytest.mark.parametrize("model", [CENTERFACE, PPOCR_DET], ids=lambda m: m.name)
def test_rewritten_graph_computes_what_the_shipped_graph_computes(model: object,
                                                                   astronaut: np.ndarray) -> None:
    data = shipped_model_path(model).read_bytes()  # type: ignore[arg-type]
    rewritten = onnx_session(data, "test")
    import onnx

    from peerdata.ml.privacy.onnxgraph import free_input_size

    graph = onnx.load_from_string(data)
    free_input_size(graph)  # only what loading needs: no rewrite
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    shipped = ort.InferenceSession(graph.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    img = cv2.resize(astronaut, (256, 224))
    blob = (int8.centerface_blob(img) if model is CENTERFACE
            else cv2.dnn.blobFromImageWithParams(img, dnn._DB_BLOB))
    name = shipped.get_inputs()[0].name
    for a, b in zip(shipped.run(None, {name: blob}), rewritten.run(None, {name: blob}),
                    strict=True):
        assert np.abs(a - b).max() <= 1e-4 * max(1.0, float(np.abs(a).max()))


def test_overlapping_plate_outlines_merge_into_one() -> None:
    # a state name above the number: two text lines whose grown outlines overlap a little
    number, state = Box(100, 120, 160, 40), Box(130, 96, 100, 30)
    assert number.iou(state) < 0.3  # the filter's general rule would keep them apart
    merged = merge_boxes([(number, "text_plate"), (state, "text_plate"),
                          (Box(400, 40, 60, 20), "text_plate")], overlapping)
    assert [b for b, _ in merged] == [Box(400, 40, 60, 20), Box(100, 96, 160, 64)]


def test_a_two_line_plate_comes_out_as_one_region() -> None:
    img = np.full((300, 420, 3), 90, np.uint8)
    cv2.rectangle(img, (100, 80), (330, 200), (255, 255, 255), -1)
    cv2.putText(img, "CALIFORNIA", (150, 112), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (40, 40, 160), 2)
    cv2.putText(img, "7ABC123", (118, 178), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (0, 0, 0), 4)
    found = dnn.TextPlateDetector().detect(Frame.from_pixels(img))
    holding = [b for b in found if b.x <= 150 and b.y <= 95 and b.x + b.w >= 300
               and b.y + b.h >= 180]
    assert len(found) == 1 and holding, found
