"""Compressed data files, named by their last suffix: ``train.jsonl.gz``, ``rows.csv.zst``.

The codecs are pyarrow's (so reading, writing and pyarrow's own readers agree on what a suffix
means). Readers get a buffered binary stream that yields the decompressed lines, so errors name
the real line of the data inside, not a byte of the compressed file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, BinaryIO

from modelops.errors import DataError

COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".lz4": "lz4", ".br": "brotli"}


def split_suffix(path: str | os.PathLike) -> tuple[str, str | None]:
    """The suffix that says the file type (lower-case) and the codec: ``a.jsonl.gz`` -> (``.jsonl``, ``gzip``)."""
    path = Path(path)
    codec = COMPRESSIONS.get(path.suffix.lower())
    inner = Path(path.stem).suffix if codec else path.suffix
    return inner.lower(), codec


def open_read(path: str | os.PathLike) -> BinaryIO:
    """A binary, line-iterable stream of the file's data, decompressed when its suffix names a codec."""
    path = Path(path)
    _, codec = split_suffix(path)
    if codec is None:
        return path.open("rb")
    import pyarrow as pa

    return io.BufferedReader(_Decompressed(pa.input_stream(str(path), compression=codec), path, codec))


def open_write(path: str | os.PathLike, codec: str | None) -> Any:
    """A binary stream that writes `path`, compressed with `codec` (None: plain)."""
    import pyarrow as pa

    return pa.output_stream(str(path), compression=codec)


class _Decompressed(io.RawIOBase):
    """pyarrow's decompressing stream as a raw stream, so `io.BufferedReader` can give lines (pyarrow's cannot)."""

    def __init__(self, stream: Any, path: Path, codec: str):
        self._stream, self._path, self._codec = stream, path, codec

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        import pyarrow as pa

        try:
            data = self._stream.read(len(buffer))
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{self._path}: not a readable {self._codec} file ({exc})") from exc
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()
        super().close()
