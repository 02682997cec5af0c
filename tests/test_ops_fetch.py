"""The dataset downloader against a real HTTP server on 127.0.0.1 (no internet): progress is
reported to the last byte, the file is verified against its MD5, and a server that is not there
is a DataError naming the URL."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerdata.datasets import fetch
from peerdata.datasets.fetch import RemoteFile, download_url, fetch_dataset
from peerdata.errors import DataError

PAYLOAD = bytes(range(256)) * 1000  # 256,000 bytes: several chunks


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www" / "toy"
    root.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        (root / name).write_bytes(PAYLOAD + name.encode())

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = lambda *a: Quiet(*a, directory=str(tmp_path / "www"))  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/toy"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_download_reports_progress_and_verifies(server: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    files = tuple(RemoteFile(f"{server}/{n}", hashlib.md5(PAYLOAD + n.encode()).hexdigest())
                  for n in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"))
    monkeypatch.setitem(fetch.KNOWN_SOURCES, "toy", files)
    seen: list[tuple[str, int, int | None]] = []
    paths = fetch_dataset("toy", tmp_path / "data",
                          progress=lambda n, done, total: seen.append((n, done, total)))
    assert [p.name for p in paths] == ["train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"]
    for p in paths:
        size = len(PAYLOAD) + len(p.name)
        mine = [s for s in seen if s[0] == p.name]
        assert mine[0][1] == 0 and mine[-1] == (p.name, size, size) and len(mine) > 2
        assert [d for _, d, _ in mine] == sorted(d for _, d, _ in mine)
    # a tampered copy on the server: refused, nothing left behind
    bad = (RemoteFile(f"{server}/train-images-idx3-ubyte.gz", "0" * 32),)
    monkeypatch.setitem(fetch.KNOWN_SOURCES, "toy2", bad)
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch_dataset("toy2", tmp_path / "data")
    assert not any((tmp_path / "data" / "toy2").iterdir())


def test_unreachable_source_is_a_data_error(tmp_path: Path, server: str) -> None:
    with pytest.raises(DataError, match="download of .*/missing.gz failed"):
        download_url(f"{server}/missing.gz", tmp_path / "x", timeout_s=5)
