"""Reader of sheaftune's own columnar event file (``sheaftune convert -o OUT.npz``)."""

from __future__ import annotations

import os
import tempfile

from sheaftune.events import EventTable, is_native, load_native
from sheaftune.readers.base import ReadOptions, Source


class NativeReader:
    name = "native"
    description = "sheaftune's columnar event file (.npz), written by `sheaftune convert`"

    def sniff(self, head: bytes) -> bool:
        return is_native(head)

    def read(self, source: Source, options: ReadOptions) -> EventTable:
        if source.mmap_path is not None:
            return load_native(source.mmap_path)
        # stdin or a compressed .npz: numpy needs a seekable file
        with tempfile.NamedTemporaryFile(suffix=".npz", delete=False) as tmp:
            with source.open() as fh:
                while chunk := fh.read(1 << 20):
                    tmp.write(chunk)
        try:
            table = load_native(tmp.name)
        finally:
            os.unlink(tmp.name)
        return table
