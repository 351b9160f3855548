"""The bid table: balancing-energy bids per asset share, read from CSV or JSON and checked whole.

Format (one row per asset share; the DSO's scenario writes it, the BCM reads it):

==================== ======== ===================================================================
column               type     meaning
==================== ======== ===================================================================
``bid_id``           str      Bid identifier; rows sharing it form one (aggregated) bid.
``aggregator``       str      Who offers the bid; the same on every row of a bid.
``building_id``      str      Asset location: a key of ``SensitivityPackage.flex_of_asset``.
``p_mw``             float    Offered volume, signed: ``+`` = more injection / less consumption
                              (upward), ``-`` = downward. All rows of a bid have one sign (0 is
                              allowed and offers nothing).
``price_eur_per_mwh`` float   Energy price of the bid; the same on every row of a bid.
``fpu``              str      Optional: ``pv``, ``battery``, ``ev``, ``heat_pump`` or ``mixed``.
==================== ======== ===================================================================

CSV files have a header line with these column names (any order); JSON files hold one array of
objects with these keys (:data:`BID_SCHEMA`). ``docs/bids.md`` has an example. Reading checks the
whole file and raises :class:`BidFileError` listing every invalid row with its line number;
nothing is returned from a half-read file. Imports the standard library only (pandas lazily, for
:func:`bids_from_frame` and :meth:`BidTable.to_frame`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from optim._errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from optim.package import SensitivityPackage

log = logging.getLogger(__name__)

BID_COLUMNS: tuple[str, ...] = ("bid_id", "aggregator", "building_id", "p_mw", "price_eur_per_mwh")
OPTIONAL_COLUMNS: tuple[str, ...] = ("fpu",)
FPU_TYPES: tuple[str, ...] = ("pv", "battery", "ev", "heat_pump", "mixed")
MAX_LISTED_PROBLEMS = 50
_REPORTED = object()  # a record whose problem is already listed (counted, not checked again)

BID_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://digiplat.eu/schemas/bids-v1.json",
    "title": "DigIPlat balancing-energy bids",
    "description": (
        "One object per asset share. Objects sharing a bid_id form one aggregated bid: the same "
        "aggregator and price on every row, p_mw of one sign. The CSV form has the same columns. "
        "Not expressible here and checked by the reader: those per-bid rules, no duplicated "
        "(bid_id, building_id, fpu), building_id known to the sensitivity package."
    ),
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": list(BID_COLUMNS),
        "properties": {
            "bid_id": {"type": ["string", "integer"], "minLength": 1, "description": "bid identifier"},
            "aggregator": {"type": ["string", "integer"], "minLength": 1, "description": "who offers the bid"},
            "building_id": {
                "type": ["string", "integer"],
                "minLength": 1,
                "description": "asset location, a key of the package's flex_of_asset",
            },
            "p_mw": {
                "type": "number",
                "description": "offered volume in MW; + upward (more injection), - downward",
            },
            "price_eur_per_mwh": {"type": "number", "description": "energy price in EUR/MWh"},
            "fpu": {"enum": [*FPU_TYPES, None], "description": "flexibility-providing unit type"},
        },
    },
}


class BidFileError(InputError):
    """Invalid bid rows. ``problems`` lists ``(where, message)`` for every invalid row."""

    def __init__(self, message: str, problems: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.problems = problems


@dataclass(frozen=True)
class BidRow:
    """One asset share of a bid (one line of the bid file)."""

    bid_id: str
    aggregator: str
    building_id: str
    p_mw: float
    price_eur_per_mwh: float
    fpu: str | None = None


@dataclass(frozen=True)
class Bid:
    """One (possibly aggregated) bid: the rows sharing a ``bid_id``."""

    bid_id: str
    aggregator: str
    price_eur_per_mwh: float
    rows: tuple[BidRow, ...]

    @property
    def p_mw(self) -> float:
        """Total offered volume (signed MW)."""
        return math.fsum(r.p_mw for r in self.rows)

    @property
    def direction(self) -> int:
        """+1 upward, -1 downward, 0 if the bid offers nothing."""
        return (self.p_mw > 0) - (self.p_mw < 0)


@dataclass(frozen=True)
class BidTable:
    """A checked bid table (build it with :func:`read_bids` or :func:`bids_from_frame`).

    Parameters
    ----------
    rows
        The rows in file order.
    source
        Where they came from (file name or ``"<frame>"``), for messages.
    """

    rows: tuple[BidRow, ...]
    source: str = ""
    _checked: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self._checked:  # direct construction: run the same checks as the readers
            records = [(f"row {k}", _row_as_record(r)) for k, r in enumerate(self.rows)]
            checked = _table_from_records(records, source=self.source or "<rows>", package=None)
            object.__setattr__(self, "rows", checked.rows)
            object.__setattr__(self, "_checked", True)

    @cached_property
    def bids(self) -> tuple[Bid, ...]:
        """Aggregated bids in order of first appearance."""
        grouped: dict[str, list[BidRow]] = {}
        for row in self.rows:
            grouped.setdefault(row.bid_id, []).append(row)
        return tuple(
            Bid(bid_id=b, aggregator=rs[0].aggregator, price_eur_per_mwh=rs[0].price_eur_per_mwh, rows=tuple(rs))
            for b, rs in grouped.items()
        )

    @property
    def n_bids(self) -> int:
        return len(self.bids)

    def to_records(self) -> list[dict[str, Any]]:
        """Rows as dicts with the bid-file columns (``fpu`` only where set)."""
        return [_row_as_record(r) for r in self.rows]

    def to_frame(self) -> "pd.DataFrame":
        """Rows as a pandas DataFrame with the bid-file columns."""
        import pandas as pd

        frame = pd.DataFrame(
            [{**{c: getattr(r, c) for c in BID_COLUMNS}, "fpu": r.fpu} for r in self.rows],
            columns=[*BID_COLUMNS, "fpu"],
        )
        return frame

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "rows": self.to_records()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BidTable":
        rows = data.get("rows") if isinstance(data, Mapping) else None
        if not isinstance(rows, list):
            raise InputError("a bid table dict needs a 'rows' list")
        return _table_from_records(
            [(f"row {k}", r) for k, r in enumerate(rows)], source=str(data.get("source", "")), package=None
        )


def _row_as_record(row: BidRow) -> dict[str, Any]:
    record: dict[str, Any] = {c: getattr(row, c) for c in BID_COLUMNS}
    if row.fpu is not None:
        record["fpu"] = row.fpu
    return record


# --- checking ------------------------------------------------------------------------------------


def _as_id(value: Any) -> str | None:
    """Return a non-empty id string, or None if ``value`` is not a usable id."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        value = int(value)  # pandas turns integer ids with gaps into floats
    if isinstance(value, int):
        return str(value)
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalar
        return _as_id(value.item())
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _as_float(value: Any, *, from_text: bool) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        if not from_text:
            return None
        try:
            return float(value.strip())
        except ValueError:
            return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _table_from_records(
    records: list[tuple[str, Any]],
    *,
    source: str,
    package: "SensitivityPackage | None",
    from_text: bool = False,
    header_problems: Iterable[tuple[str, str]] = (),
) -> BidTable:
    """Check every record and build the table, or raise one :class:`BidFileError` listing all."""
    problems: list[tuple[str, str]] = list(header_problems)
    rows: list[tuple[str, BidRow]] = []
    allowed = set(BID_COLUMNS) | set(OPTIONAL_COLUMNS)
    for where, record in records:
        if record is _REPORTED:
            continue
        if not isinstance(record, Mapping):
            problems.append((where, f"expected an object with keys {', '.join(BID_COLUMNS)}"))
            continue
        msgs: list[str] = []
        missing = [c for c in BID_COLUMNS if c not in record]
        extra = sorted(str(k) for k in record if k not in allowed)
        if missing:
            msgs.append(f"missing column(s) {', '.join(missing)}")
        if extra:
            msgs.append(f"unknown column(s) {', '.join(extra)}")
        ids = {}
        for c in ("bid_id", "aggregator", "building_id"):
            if c in record:
                ids[c] = _as_id(record[c])
                if ids[c] is None:
                    msgs.append(f"{c} {record[c]!r} is empty or not an id")
        nums = {}
        for c in ("p_mw", "price_eur_per_mwh"):
            if c in record:
                value = _as_float(record[c], from_text=from_text)
                if value is None:
                    msgs.append(f"{c} {record[c]!r} is not a number")
                elif not math.isfinite(value):
                    msgs.append(f"{c} is {value} (must be finite)")
                else:
                    nums[c] = value
        fpu = record.get("fpu")
        if _is_missing(fpu):
            fpu = None
        elif not isinstance(fpu, str) or fpu.strip() not in FPU_TYPES:
            msgs.append(f"fpu {fpu!r} is not one of {', '.join(FPU_TYPES)}")
        else:
            fpu = fpu.strip()
        if msgs:
            problems.append((where, "; ".join(msgs)))
            continue
        rows.append(
            (
                where,
                BidRow(
                    bid_id=ids["bid_id"],
                    aggregator=ids["aggregator"],
                    building_id=ids["building_id"],
                    p_mw=nums["p_mw"] + 0.0,  # -0.0 -> 0.0
                    price_eur_per_mwh=nums["price_eur_per_mwh"],
                    fpu=fpu,
                ),
            )
        )

    # cross-row rules, on the rows that parsed
    seen: dict[tuple[str, str, str | None], str] = {}
    first_of_bid: dict[str, tuple[str, BidRow]] = {}
    sign_of_bid: dict[str, tuple[str, int]] = {}
    known = set(package.flex_of_asset) if package is not None else None
    for where, row in rows:
        msgs = []
        key = (row.bid_id, row.building_id, row.fpu)
        if key in seen:
            msgs.append(
                f"duplicates {seen[key]} (bid {row.bid_id}, building {row.building_id}"
                + (f", fpu {row.fpu})" if row.fpu else ")")
            )
        else:
            seen[key] = where
        if row.bid_id in first_of_bid:
            w0, r0 = first_of_bid[row.bid_id]
            if row.aggregator != r0.aggregator:
                msgs.append(f"bid {row.bid_id} has aggregator {r0.aggregator!r} on {w0} but {row.aggregator!r} here")
            if row.price_eur_per_mwh != r0.price_eur_per_mwh:
                msgs.append(
                    f"bid {row.bid_id} has price {r0.price_eur_per_mwh:g} on {w0} but {row.price_eur_per_mwh:g} here"
                )
        else:
            first_of_bid[row.bid_id] = (where, row)
        sign = (row.p_mw > 0) - (row.p_mw < 0)
        if sign:
            if row.bid_id in sign_of_bid and sign_of_bid[row.bid_id][1] != sign:
                w0, s0 = sign_of_bid[row.bid_id]
                msgs.append(
                    f"bid {row.bid_id} mixes signs: {'upward' if s0 > 0 else 'downward'} on {w0}, "
                    f"{'upward' if sign > 0 else 'downward'} here"
                )
            sign_of_bid.setdefault(row.bid_id, (where, sign))
        if known is not None and row.building_id not in known:
            msgs.append(f"building {row.building_id!r} is unknown to the sensitivity package (no flexible bus)")
        if msgs:
            problems.append((where, "; ".join(msgs)))

    if not problems and not rows:
        problems.append(("file", "contains no bids"))
    if problems:
        raise _bid_error(source, problems, total=len(records))
    return BidTable(rows=tuple(r for _, r in rows), source=source, _checked=True)


def _order_key(where: str) -> tuple[int, str]:
    parts = where.split()
    if len(parts) == 2 and parts[1].lstrip("-").isdigit():
        return (int(parts[1]), where)
    return (-1, where)


def _bid_error(source: str, problems: list[tuple[str, str]], *, total: int) -> BidFileError:
    problems = sorted(problems, key=lambda p: _order_key(p[0]))
    bad = len({w for w, _ in problems})
    head = f"{source}: {bad} invalid row{'s' if bad != 1 else ''} of {total}; no bids were read"
    lines = [f"  {w}: {m}" for w, m in problems[:MAX_LISTED_PROBLEMS]]
    if len(problems) > MAX_LISTED_PROBLEMS:
        lines.append(f"  ... and {len(problems) - MAX_LISTED_PROBLEMS} more")
    return BidFileError("\n".join([head, *lines]), problems)


# --- readers and writer --------------------------------------------------------------------------


def _records_from_csv(text: str, source: str) -> tuple[list[tuple[str, Any]], list[tuple[str, str]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header_problems: list[tuple[str, str]] = []
    try:
        header = next(reader)
    except StopIteration:
        raise _bid_error(source, [("line 1", "the file is empty (expected a header line)")], total=0) from None
    header = [h.strip().lstrip("\ufeff") for h in header]
    missing = [c for c in BID_COLUMNS if c not in header]
    extra = [h for h in header if h not in BID_COLUMNS and h not in OPTIONAL_COLUMNS]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if missing:
        header_problems.append(("line 1", f"missing column(s) {', '.join(missing)} in the header"))
    if extra:
        header_problems.append(("line 1", f"unknown column(s) {', '.join(extra)} in the header"))
    if dupes:
        header_problems.append(("line 1", f"repeated column(s) {', '.join(dupes)} in the header"))
    records: list[tuple[str, Any]] = []
    line = reader.line_num
    for fields in reader:
        start, line = line + 1, reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue
        where = f"line {start}"
        if len(fields) != len(header):
            header_problems.append((where, f"has {len(fields)} fields, the header has {len(header)}"))
            records.append((where, _REPORTED))
            continue
        if missing or dupes:
            records.append((where, _REPORTED))  # counted, but not checked against a broken header
            continue
        records.append((where, {h: v for h, v in zip(header, fields) if h not in extra}))
    if missing or dupes:
        raise _bid_error(source, header_problems, total=len(records))
    return records, header_problems


def _records_from_json(text: str, source: str) -> list[tuple[str, Any]]:
    """Parse a JSON array of objects, keeping the line on which each object starts."""
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip())
    if not text[pos:].startswith("["):
        raise _bid_error(source, [("line 1", "expected a JSON array of bid objects")], total=0)
    pos += 1
    records: list[tuple[str, Any]] = []
    try:
        while True:
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            if pos < len(text) and text[pos] == "]":
                pos += 1
                break
            if records:
                if pos >= len(text) or text[pos] != ",":
                    raise json.JSONDecodeError("expected ',' or ']'", text, pos)
                pos += 1
                while pos < len(text) and text[pos] in " \t\r\n":
                    pos += 1
            line = text.count("\n", 0, pos) + 1
            obj, pos = decoder.raw_decode(text, pos)
            records.append((f"line {line}", obj))
    except json.JSONDecodeError as exc:
        raise _bid_error(source, [(f"line {exc.lineno}", f"invalid JSON: {exc.msg}")], total=len(records)) from None
    if text[pos:].strip():
        line = text.count("\n", 0, pos) + 1
        raise _bid_error(source, [(f"line {line}", "unexpected text after the JSON array")], total=len(records))
    return records


def read_bids(path: str | Path, *, package: "SensitivityPackage | None" = None) -> BidTable:
    """Read and check a bid file (``.csv`` or ``.json``).

    Parameters
    ----------
    path
        The bid file; its suffix selects the format.
    package
        If given, every ``building_id`` must be a key of ``package.flex_of_asset``.

    Returns
    -------
    BidTable
        The checked rows.

    Raises
    ------
    BidFileError
        Listing every invalid row with its line number (an :class:`InputError`).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"bid file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise InputError(f"bid file {path} must end in .csv or .json")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read bid file {path}: {exc}") from exc
    source = path.name
    if suffix == ".csv":
        records, header_problems = _records_from_csv(text, source)
        table = _table_from_records(
            records, source=source, package=package, from_text=True, header_problems=header_problems
        )
    else:
        table = _table_from_records(_records_from_json(text, source), source=source, package=package)
    log.info("read %d bids (%d rows) from %s", table.n_bids, len(table.rows), path)
    return table


def bids_from_frame(frame: "pd.DataFrame", *, package: "SensitivityPackage | None" = None) -> BidTable:
    """Check an in-memory bid table (pandas DataFrame with the bid-file columns).

    Problems are reported by ``row <index label>``. Raises :class:`BidFileError` like
    :func:`read_bids`.
    """
    if not hasattr(frame, "columns") or not hasattr(frame, "to_dict"):
        raise InputError("bids_from_frame expects a pandas DataFrame")
    header_problems = []
    cols = [str(c) for c in frame.columns]
    missing = [c for c in BID_COLUMNS if c not in cols]
    extra = [c for c in cols if c not in BID_COLUMNS and c not in OPTIONAL_COLUMNS]
    if missing or extra:
        if missing:
            header_problems.append(("columns", f"missing column(s) {', '.join(missing)}"))
        if extra:
            header_problems.append(("columns", f"unknown column(s) {', '.join(extra)}"))
        raise _bid_error("<frame>", header_problems, total=len(frame))
    records = [(f"row {label}", dict(rec)) for label, rec in zip(frame.index, frame.to_dict("records"))]
    table = _table_from_records(records, source="<frame>", package=package, from_text=False)
    log.info("checked %d bids (%d rows) from a frame", table.n_bids, len(table.rows))
    return table


def write_bids(bids: "BidTable | pd.DataFrame", path: str | Path) -> Path:
    """Write bids to ``.csv`` or ``.json`` (the format :func:`read_bids` reads).

    Floats are written with ``repr`` so a round trip is exact. Written to a temporary name and
    renamed, so a failed write never leaves half a file.
    """
    table = bids if isinstance(bids, BidTable) else bids_from_frame(bids)
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        buf = io.StringIO(newline="")
        has_fpu = any(r.fpu for r in table.rows)
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([*BID_COLUMNS, *(["fpu"] if has_fpu else [])])
        for r in table.rows:
            values = [r.bid_id, r.aggregator, r.building_id, repr(r.p_mw), repr(r.price_eur_per_mwh)]
            writer.writerow(values + ([r.fpu or ""] if has_fpu else []))
        text = buf.getvalue()
    elif suffix == ".json":
        text = "[\n" + ",\n".join(" " + json.dumps(rec) for rec in table.to_records()) + "\n]\n"
    else:
        raise InputError(f"bid file {path} must end in .csv or .json")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    log.info("wrote %d bid rows to %s", len(table.rows), path)
    return path
