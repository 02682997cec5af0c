"""`peerdata data list|fetch`: what datasets the data directory holds, and explicit downloads."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from peerdata.cli.output import FORMAT_OPTION, Format, emit_json, guarded, say, table
from peerdata.datasets import DATA_DIR_ENV, list_dataset_files, load_dataset, resolve_data_dir
from peerdata.datasets.fetch import KNOWN_SOURCES, Progress, fetch_dataset
from peerdata.datasets.synthetic import synthetic_names
from peerdata.errors import DataError

data_app = typer.Typer(
    help=(
        "Datasets in the data directory (--data-dir or $PEERDATA_DATA_DIR).\n\n"
        "A dataset NAME is found as NAME.npz / NAME_train.npz (keys x: uint8 Nx28x28, y: labels "
        "0-9) or as IDX files under NAME/. Generated `synthetic-*` datasets need no files.\n\n"
        "Examples:\n\n"
        "  peerdata data list --data-dir ~/data\n\n"
        "  peerdata data fetch kmnist --data-dir ~/data   # downloads and verifies checksums"
    ),
    no_args_is_help=True,
)

DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help=f"dataset directory (default: ${DATA_DIR_ENV})"),
]


def _need_dir(option: Path | None) -> Path:
    data_dir = resolve_data_dir(option)
    if data_dir is None:
        raise DataError(f"no data directory: pass --data-dir or set {DATA_DIR_ENV}")
    return data_dir


@data_app.command("list")
@guarded
def list_command(
    data_dir: DataDirOption = None,
    check: Annotated[
        bool, typer.Option("--check", help="also load each dataset and validate it")
    ] = False,
    fmt: Format = FORMAT_OPTION,
) -> None:
    """List the datasets found in the data directory (and the generated ones).

    Example: peerdata data list --data-dir ~/data --check
    """
    folder = _need_dir(data_dir)
    rows = []
    for files in list_dataset_files(folder):
        row: dict[str, object] = {
            "name": files.name,
            "format": files.kind,
            "train": [p.name for p in files.train or ()],
            "test": [p.name for p in files.test or ()],
        }
        if check:
            splits = load_dataset(files.name, folder)
            row["train_images"] = len(splits.train) if splits.train is not None else 0
            row["test_images"] = len(splits.test)
        rows.append(row)
    generated = synthetic_names()
    if fmt is Format.json:
        emit_json({"data_dir": str(folder), "datasets": rows, "generated": generated})
        return
    columns = ["name", "format", "train", "test"] + (
        ["train_images", "test_images"] if check else []
    )
    table(
        f"datasets in {folder}",
        columns,
        [
            [", ".join(v) if isinstance(v, list) else v for v in (r[c] for c in columns)]
            for r in rows
        ],
    )
    say(f"generated (no files needed): {', '.join(generated)}")


@data_app.command("fetch")
@guarded
def fetch_command(
    name: Annotated[str, typer.Argument(help=f"one of: {', '.join(sorted(KNOWN_SOURCES))}")],
    data_dir: DataDirOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="download again even if files exist")
    ] = False,
    fmt: Format = FORMAT_OPTION,
) -> None:
    """Download a public dataset's IDX files into DATA_DIR/NAME/, verifying each MD5.

    Needs network access; nothing else in peerdata downloads. A file whose checksum does not
    match is deleted and the command fails (exit code 4).

    Example: peerdata data fetch kmnist --data-dir ~/data
    """
    folder = _need_dir(data_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: data directory does not exist")
    with _progress_bar() as progress:
        paths = fetch_dataset(name, folder, force=force, progress=progress)
    if fmt is Format.json:
        emit_json({"name": name, "files": [str(p) for p in paths]})
    else:
        for p in paths:
            say(f"verified {p}")


@contextlib.contextmanager
def _progress_bar() -> Iterator[Progress]:
    """A tqdm bar on stderr per downloaded file (stdout stays for the result)."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def progress(name: str, done: int, total: int | None) -> None:
        bar = bars.get(name)
        if bar is None:
            bar = bars[name] = tqdm(total=total, unit="B", unit_scale=True, desc=name,
                                    file=sys.stderr, leave=True)
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        for bar in bars.values():
            bar.close()


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
