"""Parsing of tracefs ``format`` files and ``events/header_page``.

The kernel describes every tracepoint payload in a ``format`` file (``events/<sys>/<ev>/format``)
and the ring-buffer page layout in ``events/header_page``; trace.dat embeds copies of both, and
live capture reads them from tracefs. Payloads are decoded only through these descriptions,
by field name: field offsets and sizes differ between kernels (``gfp_flags`` 4 or 8 bytes, 32-bit
longs, optional ``name``/``node``/``accounted``), so nothing here assumes a layout.
"""

from __future__ import annotations

import os
import re
from typing import Any

#: ``\tfield:<decl>;\toffset:<n>;\tsize:<n>;[\tsigned:<0|1>;]`` (very old kernels lack signed:)
_FIELD_RE = re.compile(
    r"^\s*field:(?P<decl>[^;]*);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);"
    r"(?:\s*signed:(?P<signed>\d+);)?",
    re.M,
)
_NAME_RE = re.compile(r"^name:\s*(\S+)\s*$", re.M)
_ID_RE = re.compile(r"^ID:\s*(\d+)\s*$", re.M)
_IDENT_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:\[[^\]]*\])?\s*$")
_BRACKET_CLOCK_RE = re.compile(r"\[([^\]\s]+)\]")


class FormatError(ValueError):
    """A format or header_page text does not follow the tracefs grammar."""


class _Value:
    """An immutable record compared, hashed and shown by its fields: what
    ``@dataclass(frozen=True)`` gives, without the millisecond each such class costs every run
    at import (these are imported by every read of a trace.dat)."""

    __slots__: tuple[str, ...] = ()

    def __init__(self, *values: Any) -> None:
        for name, value in zip(self.__slots__, values, strict=True):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, n) for n in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({args})"

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # (pickle and copy: no setattr)
        return type(self), self._values()


class Field(_Value):
    """One field of an event payload, as the format file declares it."""

    __slots__ = ("name", "decl", "offset", "size", "signed", "loc", "is_array")
    name: str
    decl: str
    offset: int
    size: int
    signed: bool
    #: ``"data_loc"`` / ``"rel_loc"`` for dynamic arrays (strings), None for fixed fields
    loc: str | None
    is_array: bool

    def __init__(
        self,
        name: str,
        decl: str,
        offset: int,
        size: int,
        signed: bool,
        loc: str | None = None,
        is_array: bool = False,
    ) -> None:
        super().__init__(name, decl, offset, size, signed, loc, is_array)


class EventFormat(_Value):
    """One tracepoint's payload layout: ``system:name``, its numeric ID and its fields."""

    __slots__ = ("system", "name", "id", "fields", "print_fmt")
    system: str
    name: str
    id: int
    fields: dict[str, Field]
    print_fmt: str

    def __init__(
        self,
        system: str,
        name: str,
        id: int,  # noqa: A002 - the format file's own word
        fields: dict[str, Field] | None = None,
        print_fmt: str = "",
    ) -> None:
        super().__init__(system, name, id, {} if fields is None else fields, print_fmt)

    def get(self, name: str) -> Field | None:
        return self.fields.get(name)


def _field_name(decl: str) -> str:
    decl = decl.strip()
    m = _IDENT_RE.search(decl)
    if not m:
        raise FormatError(f"cannot find the field name in {decl!r}")
    return m.group(1)


def parse_fields(text: str) -> dict[str, Field]:
    """Every ``field:`` line of a format (or header_page) text, by field name."""
    out: dict[str, Field] = {}
    for m in _FIELD_RE.finditer(text):
        decl = m.group("decl").strip()
        name = _field_name(decl)
        loc = None
        if decl.startswith("__data_loc"):
            loc = "data_loc"
        elif decl.startswith("__rel_loc"):
            loc = "rel_loc"
        signed = m.group("signed")
        out.setdefault(
            name,
            Field(
                name=name,
                decl=decl,
                offset=int(m.group("off")),
                size=int(m.group("size")),
                signed=signed == "1",
                loc=loc,
                is_array="[" in decl,
            ),
        )
    return out


def parse_format(text: str | bytes, system: str = "") -> EventFormat:
    """Parse one ``format`` file; FormatError when the name, ID or fields are missing."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    name = _NAME_RE.search(text)
    ident = _ID_RE.search(text)
    if not name or not ident:
        raise FormatError("event format without 'name:' or 'ID:' line")
    fields = parse_fields(text)
    if "common_type" not in fields:
        raise FormatError(f"event format {name.group(1)} has no common_type field")
    pf = ""
    i = text.find("print fmt:")
    if i >= 0:
        pf = text[i + len("print fmt:") :].strip()
    return EventFormat(system, name.group(1), int(ident.group(1)), fields, pf)


def format_id(text: bytes) -> int | None:
    """Only the ``ID:`` of a format text: cheap, for the many formats nobody decodes."""
    i = text.find(b"\nID:")
    if i < 0:
        return None
    j = text.find(b"\n", i + 4)
    try:
        return int(text[i + 4 : j if j >= 0 else len(text)].strip())
    except ValueError:
        return None


class HeaderPage(_Value):
    """The ring-buffer sub-buffer layout from ``events/header_page``.

    ``long_size`` is the kernel's long (the size of ``commit``), which sets the page-header
    length and the width of a stored missed-events count; it is not the recorder's long size.
    """

    __slots__ = ("long_size", "data_offset", "page_size")
    long_size: int
    data_offset: int
    page_size: int

    def __init__(self, long_size: int, data_offset: int, page_size: int) -> None:
        super().__init__(long_size, data_offset, page_size)


def parse_header_page(text: str | bytes) -> HeaderPage:
    """Parse ``events/header_page``; FormatError when it is empty (pre-2.6.31) or malformed."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    fields = parse_fields(text)
    commit = fields.get("commit")
    data = fields.get("data")
    ts = fields.get("timestamp")
    if commit is None or data is None or ts is None:
        raise FormatError("header_page lacks the timestamp/commit/data fields (unsupported layout)")
    if commit.size not in (4, 8):
        raise FormatError(f"header_page commit size {commit.size} (expected 4 or 8)")
    if ts.offset != 0 or ts.size != 8 or commit.offset != 8:
        raise FormatError("header_page timestamp/commit not at offsets 0/8 (unsupported layout)")
    if data.offset != 8 + commit.size:
        raise FormatError(f"header_page data offset {data.offset} != 8 + commit size")
    page_size = data.offset + data.size
    if page_size < 64 or page_size & (page_size - 1):
        raise FormatError(f"header_page gives a sub-buffer size of {page_size} bytes")
    return HeaderPage(commit.size, data.offset, page_size)


def clock_from_trace_clock(text: str) -> str | None:
    """The clock in use from ``trace_clock`` text (``[local] global ...``), None if unmarked."""
    m = _BRACKET_CLOCK_RE.search(text)
    if m:
        return m.group(1)
    text = text.strip().strip("\x00").strip()
    return text or None


def read_tracefs_formats(
    tracefs: str | os.PathLike[str], events: tuple[str, ...] = ("kmem",)
) -> tuple[HeaderPage, list[EventFormat]]:
    """header_page and the formats of the given systems from a mounted tracefs (live capture)."""
    from pathlib import Path  # (here: the reader of every trace.dat needs no pathlib)

    root = Path(tracefs)
    header = parse_header_page((root / "events" / "header_page").read_text())
    formats: list[EventFormat] = []
    for system in events:
        sysdir = root / "events" / system
        for fmt in sorted(sysdir.glob("*/format")):
            formats.append(parse_format(fmt.read_text(), system))
    return header, formats
