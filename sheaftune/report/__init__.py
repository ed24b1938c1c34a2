"""Renderers: a finished result record + a stream -> terminal tables, JSON, YAML or CSV.

Renderers compute nothing: they format what the record holds. ``render`` dispatches on the
output format; table and CSV renderers are registered per record schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import IO, Any

import yaml

from sheaftune.results import Record


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
    return json.dumps(record.to_dict(), sort_keys=True, indent=2) + "\n"


def to_yaml(record: Record) -> str:
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
