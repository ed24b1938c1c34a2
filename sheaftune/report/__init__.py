"""Renderers: a finished result record + a stream -> terminal tables, JSON, YAML or CSV.

Renderers compute nothing: they format what the record holds. ``render`` dispatches on the
output format; table and CSV renderers are registered per record schema.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from json.encoder import encode_basestring_ascii as _jstr
from typing import IO, Any

import numpy as np

from sheaftune.results import Record, plain


def console_for(stream: IO[str], width: int = 120) -> Any:
    """The rich console every table renderer writes through: no markup or highlighting (trace
    strings are data), NO_COLOR honoured; files and pipes get ``COLUMNS`` or ``width``
    columns rather than rich's 80."""
    import os

    from rich.console import Console

    cols = None
    if not (hasattr(stream, "isatty") and stream.isatty()):
        cols = int(os.environ.get("COLUMNS", "0") or 0) or width
    return Console(
        file=stream, width=cols, highlight=False, markup=False, emoji=False, soft_wrap=False
    )


TableRenderer = Callable[[Record, IO[str]], None]
CsvRenderer = Callable[[Record, IO[str]], None]
_TABLES: dict[str, TableRenderer] = {}
_CSVS: dict[str, CsvRenderer] = {}


def register_table(schema: str) -> Callable[[TableRenderer], TableRenderer]:
    def deco(fn: TableRenderer) -> TableRenderer:
        _TABLES[schema] = fn
        return fn

    return deco


def register_csv(schema: str) -> Callable[[CsvRenderer], CsvRenderer]:
    def deco(fn: CsvRenderer) -> CsvRenderer:
        _CSVS[schema] = fn
        return fn

    return deco


def to_json(record: Record) -> str:
    """``json.dumps(record.to_dict(), sort_keys=True, indent=2)`` and a newline, byte for byte.

    With an indent, :mod:`json` takes its pure-Python encoder (generators, a call per value)
    after ``to_dict`` has built a plain copy of the record; this one pass does both, writing
    numpy values as ``plain`` converts them (about 4 times faster on a 60-cache analysis). A
    value neither knows, or a record that overrides ``to_dict``, goes the ``json`` way.
    """
    if type(record).to_dict is Record.to_dict:
        out: list[str] = []
        try:
            _json_dict(
                {"schema": record.SCHEMA, "version": record.VERSION, **_record_body(record)},
                "\n",
                out,
            )
        except _NotPlain:
            pass
        else:
            out.append("\n")
            return "".join(out)
    return json.dumps(record.to_dict(), sort_keys=True, indent=2) + "\n"


class _NotPlain(Exception):
    """A value outside what ``to_json``'s own encoder writes."""


#: dataclass type -> its field names (``dataclasses.fields`` per object is slow)
_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _field_names(t: type) -> tuple[str, ...] | None:
    names = _FIELDS.get(t, ())
    if names == ():
        if dataclasses.is_dataclass(t):
            names = tuple(f.name for f in dataclasses.fields(t))
        else:
            names = None
        _FIELDS[t] = names
    return names


def _record_body(record: Record) -> dict[str, Any]:
    """``Record.body`` before ``plain``: the fields' own values (``_json`` converts them)."""
    if type(record).body is not Record.body:
        return record.body()
    names = _field_names(type(record)) or ()
    return {n: getattr(record, n) for n in names}


def _json_float(x: float) -> str:
    if x != x:
        return "NaN"
    if x == _INF:
        return "Infinity"
    if x == -_INF:
        return "-Infinity"
    return float.__repr__(x)


_INF = float("inf")


#: keys as JSON strings with their ``": "`` (a report repeats a few dozen names thousands
#: of times); bounded, for a long-lived process
_KEYS: dict[str, str] = {}
_KEYS_MAX = 1 << 14


def _json_key(k: str) -> str:
    kj = _KEYS.get(k)
    if kj is None:
        kj = _jstr(k) + ": "
        if len(_KEYS) < _KEYS_MAX:
            _KEYS[k] = kj
    return kj


def _json_dict(d: dict[Any, Any], nl: str, out: list[str]) -> None:
    if not d:
        out.append("{}")
        return
    for k in d:
        if type(k) is not str:
            d = {str(k): v for k, v in d.items()}  # as ``plain`` keys them (the last one wins)
            break
    inner = nl + "  "
    sep = "{" + inner
    more = "," + inner
    append = out.append
    for k in sorted(d):
        v = d[k]
        t = type(v)
        kj = _KEYS.get(k) or _json_key(k)
        # (one append per simple value: the pieces joined here cost less than three calls)
        if t is str:
            append(sep + kj + _jstr(v))
        elif t is int:
            append(sep + kj + int.__repr__(v))
        elif t is float:
            append(sep + kj + _json_float(v))
        else:
            append(sep + kj)
            _json(v, inner, out)
        sep = more
    append(nl + "}")


def _json_list(items: Any, nl: str, out: list[str]) -> None:
    if not items:
        out.append("[]")
        return
    inner = nl + "  "
    sep = "[" + inner
    more = "," + inner
    append = out.append
    for v in items:
        t = type(v)
        if t is str:
            append(sep + _jstr(v))
        elif t is int:
            append(sep + int.__repr__(v))
        elif t is float:
            append(sep + _json_float(v))
        else:
            append(sep)
            _json(v, inner, out)
        sep = more
    append(nl + "]")


def _json(v: Any, nl: str, out: list[str]) -> None:
    """Append ``v`` as ``json.dumps(plain(v), sort_keys=True, indent=2)`` would write it at the
    indentation ``nl``; the checks follow ``plain``'s order, then ``json``'s."""
    t = type(v)
    if t is str:
        out.append(_jstr(v))
    elif v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif t is int:
        out.append(int.__repr__(v))
    elif t is float:
        out.append(_json_float(v))
    elif t is dict:
        _json_dict(v, nl, out)
    elif t is list or t is tuple:
        _json_list(v, nl, out)
    elif isinstance(v, Record):
        _json_dict(_record_body(v), nl, out)
    elif (names := _field_names(t)) is not None:
        _json_dict({n: getattr(v, n) for n in names}, nl, out)
    elif isinstance(v, dict):
        _json_dict(dict(v), nl, out)
    elif isinstance(v, (list, tuple)):
        _json_list(v, nl, out)
    elif isinstance(v, np.ndarray):
        _json_list(v.tolist(), nl, out)
    elif isinstance(v, (np.integer, np.floating, np.bool_)):
        _json(plain(v), nl, out)
    elif isinstance(v, str):
        out.append(_jstr(v))
    elif isinstance(v, int):
        out.append(int.__repr__(v))
    elif isinstance(v, float):
        out.append(_json_float(v))
    else:
        raise _NotPlain


def to_yaml(record: Record) -> str:
    import yaml  # only for --format yaml and tables without a renderer (about 15 ms)

    return yaml.safe_dump(record.to_dict(), sort_keys=True, default_flow_style=False)


def render(record: Record, fmt: str, stream: IO[str]) -> None:
    """Write ``record`` to ``stream`` as ``fmt`` (table, json, yaml, csv)."""
    if fmt == "json":
        stream.write(to_json(record))
    elif fmt == "yaml":
        stream.write(to_yaml(record))
    elif fmt == "csv":
        _load_renderers()
        if record.SCHEMA not in _CSVS:
            raise ValueError(f"no CSV form for {record.SCHEMA}")
        _CSVS[record.SCHEMA](record, stream)
    elif fmt == "table":
        _load_renderers()
        fn = _TABLES.get(record.SCHEMA)
        if fn is None:
            stream.write(to_yaml(record))
        else:
            fn(record, stream)
    else:
        raise ValueError(f"unknown format {fmt!r}")


def _load_renderers() -> None:
    # renderer modules register themselves on import
    import importlib
    import pkgutil

    import sheaftune.report as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"sheaftune.report.{info.name}")


def fmt_count(n: Any) -> str:
    """1234567 -> '1,234,567'; None -> '-'."""
    return "-" if n is None else f"{int(n):,}"


def fmt_share(x: Any) -> str:
    return "-" if x is None else f"{100 * float(x):.1f}%"


def fmt_ns(ns: Any) -> str:
    """A duration in ns as the shortest readable unit."""
    if ns is None:
        return "-"
    ns = float(ns)
    for unit, div in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= div:
            return f"{ns / div:.3g}{unit}"
    return f"{ns:.0f}ns"


def fmt_bytes(n: Any) -> str:
    """Bytes in binary units: 1536 -> '1.5 KiB'."""
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
