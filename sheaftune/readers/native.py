"""Reader of sheaftune's own columnar event file (``sheaftune convert -o OUT.npz``)."""

from __future__ import annotations

import os

from sheaftune.errors import InputError
from sheaftune.events import EventTable, is_native, load_native
from sheaftune.readers.base import ReadOptions, Source


class NativeReader:
    name = "native"
    description = "sheaftune's columnar event file (.npz), written by `sheaftune convert`"

    def sniff(self, head: bytes) -> bool:
        return is_native(head)

    def read(self, source: Source, options: ReadOptions) -> EventTable:
        if source.mmap_path is not None:
            check_members(source.mmap_path, source.display)
            return _load(source.mmap_path, source.display)
        # stdin or a compressed .npz: numpy needs a seekable file
        import tempfile  # (here: every run sniffs with this reader first)

        with tempfile.NamedTemporaryFile(suffix=".npz", delete=False) as tmp:
            try:
                with source.open() as fh:
                    while chunk := fh.read(1 << 20):
                        tmp.write(chunk)
            except source.decompression_errors() as e:
                os.unlink(tmp.name)
                raise InputError(
                    f"cannot decompress ({source.compression}): {e}", source.display
                ) from None
            except BaseException:
                os.unlink(tmp.name)
                raise
        try:
            check_members(tmp.name, source.display)
            table = _load(tmp.name, source.display)
        finally:
            os.unlink(tmp.name)
        return table


def _load(path: str, display: str) -> EventTable:
    """load_native, with a header of the wrong shape (a JSON list, a number where a list of
    names belongs) reported as a corrupt file rather than an internal error."""
    try:
        return load_native(path)
    except (AttributeError, TypeError) as e:
        raise InputError(f"corrupt event file header: {e}", display) from None


def check_members(path: str, display: str) -> None:
    """Refuse an .npz whose arrays claim more data than their zip members hold.

    numpy allocates an array of the shape its header states before reading the data, so a
    damaged or hostile header (``'shape': (999999999999,)``) would ask for terabytes; the headers
    are read here first (at most a few KiB each) and held against the members' sizes.
    """
    import zipfile

    from numpy.lib import format as npformat

    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as fh:
                    version = npformat.read_magic(fh)
                    if version == (1, 0):
                        shape, _, dtype = npformat.read_array_header_1_0(fh)
                    elif version == (2, 0):
                        shape, _, dtype = npformat.read_array_header_2_0(fh)
                    else:
                        raise ValueError(f"unsupported .npy version {version}")
                count = 1
                for dim in shape:
                    count *= int(dim)
                if dtype.hasobject or count * dtype.itemsize > info.file_size:
                    raise InputError(
                        f"corrupt event file: array {info.filename!r} claims {count} items of "
                        f"{dtype.itemsize} bytes in a member of {info.file_size} bytes",
                        display,
                    )
    except InputError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise InputError(f"cannot read event file: {e}", display) from None
