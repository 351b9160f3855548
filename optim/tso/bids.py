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
whole file and raises :class:`BidFileError` listing every invalid row with its line number and
column; nothing is returned from a half-read file. Imports the standard library only (pandas
lazily, for :func:`bids_from_frame` and :meth:`BidTable.to_frame`).

Limits (a bid file comes from users, e.g. uploads in a workshop, so reading must stay bounded in
time and memory whatever it holds): at most :data:`MAX_FILE_BYTES` (20 MB, checked from the file
size before anything is parsed and again while reading), :data:`MAX_ROWS` rows (200,000) and a JSON
nesting depth of :data:`MAX_JSON_DEPTH` (32; Python's ``json`` recurses once per level, so the depth
is measured by a linear scan without recursion before any object is decoded). Rows are checked as
they are read, so besides the text only the checked rows are held. A file beyond a limit is
refused with one line (:class:`optim._errors.LimitError`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, NamedTuple

from optim._errors import InputError, LimitError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from optim.package import SensitivityPackage

log = logging.getLogger(__name__)

BID_COLUMNS: tuple[str, ...] = ("bid_id", "aggregator", "building_id", "p_mw", "price_eur_per_mwh")
OPTIONAL_COLUMNS: tuple[str, ...] = ("fpu",)
FPU_TYPES: tuple[str, ...] = ("pv", "battery", "ev", "heat_pump", "mixed")
#: Largest bid file read (bytes; 20 MB).
MAX_FILE_BYTES = 20_000_000
#: Most bid rows (asset shares) in one file or table.
MAX_ROWS = 200_000
#: Deepest JSON nesting accepted (the bid array and its objects need 2).
MAX_JSON_DEPTH = 32
#: Bad rows listed below the first line of a :class:`BidFileError` (all are in ``problems``).
MAX_LISTED_ROWS = 10
_REPORTED = object()  # a record whose problem is already listed (counted, not checked again)
_VALUE_CHARS = 40  # longest value repr quoted in a message

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
    "maxItems": MAX_ROWS,
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


class BidProblem(NamedTuple):
    """One thing wrong in a bid file.

    Attributes
    ----------
    where : ``"line N"`` (file line, the CSV header is line 1), ``"row LABEL"`` (a DataFrame or
        a dict of rows) or ``"file"``.
    column : the column concerned, or None for the whole row.
    reason : what is wrong, phrased to follow the column name (``"'x' is not a number"``).
    """

    where: str
    column: str | None
    reason: str

    def __str__(self) -> str:
        return f"{self.column} {self.reason}" if self.column else self.reason


class BidFileError(InputError):
    """An invalid bid file or table.

    The first line of the message summarises and says what to do; ``details`` has one line per bad
    row (at most :data:`MAX_LISTED_ROWS`; file line, column, reason) and ``problems`` every
    :class:`BidProblem`.
    """

    def __init__(self, message: str, problems: list[BidProblem], details: tuple[str, ...] = ()) -> None:
        super().__init__("\n".join([message, *details]))
        self.problems = problems
        self.details = details


@dataclass(frozen=True, slots=True)  # slots: 200,000 rows stay small
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
            records = ((f"row {k}", _row_as_record(r)) for k, r in enumerate(self.rows))
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
            ((f"row {k}", r) for k, r in enumerate(rows)), source=str(data.get("source", "")), package=None
        )


def _row_as_record(row: BidRow) -> dict[str, Any]:
    record: dict[str, Any] = {c: getattr(row, c) for c in BID_COLUMNS}
    if row.fpu is not None:
        record["fpu"] = row.fpu
    return record


# --- checking ------------------------------------------------------------------------------------


def _as_id(value: Any) -> str | None:
    """Return a non-empty id string, or None if ``value`` is not a usable id."""
    if type(value) is str:  # the common case first: a file has up to 600,000 ids
        return value.strip() or None
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
    if type(value) is float:
        return value
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


def _cut(text: str) -> str:
    """Return ``text`` cut so that a message line stays short."""
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 3] + "..."


def _short(value: Any) -> str:
    """Return ``repr(value)``, cut so that a message line stays short."""
    return _cut(repr(value))


def _table_from_records(
    records: Iterable[tuple[str, Any]],
    *,
    source: str,
    package: "SensitivityPackage | None",
    from_text: bool = False,
    header_problems: Iterable[BidProblem] = (),
) -> BidTable:
    """Check every record and build the table, or raise one :class:`BidFileError` listing all.

    ``records`` is consumed once (it may be a generator reading the file), so besides the checked
    rows nothing of the input is held; more than :data:`MAX_ROWS` records raise a LimitError.
    """
    problems: list[BidProblem] = []
    rows: list[tuple[str, BidRow]] = []
    allowed = set(BID_COLUMNS) | set(OPTIONAL_COLUMNS)
    total = 0
    for where, record in records:
        total += 1
        if total > MAX_ROWS:
            raise LimitError(
                f"{source}: more than {MAX_ROWS:,} rows ({where}); split the bids into files of at most "
                f"{MAX_ROWS:,} rows"
            )
        if record is _REPORTED:
            continue
        if not isinstance(record, Mapping):
            problems.append(BidProblem(where, None, f"expected an object with keys {', '.join(BID_COLUMNS)}"))
            continue
        found: list[BidProblem] = []
        missing = [c for c in BID_COLUMNS if c not in record]
        extra = sorted(str(k) for k in record if k not in allowed)
        if missing:
            found.append(BidProblem(where, ", ".join(missing), "is missing" if len(missing) == 1 else "are missing"))
        if extra:
            found.append(BidProblem(where, _cut(", ".join(extra)), "is not a column of the bid format"))
        ids = {}
        for c in ("bid_id", "aggregator", "building_id"):
            if c in record:
                ids[c] = _as_id(record[c])
                if ids[c] is None:
                    found.append(BidProblem(where, c, f"{_short(record[c])} is empty or not an id"))
        nums = {}
        for c in ("p_mw", "price_eur_per_mwh"):
            if c in record:
                value = _as_float(record[c], from_text=from_text)
                if value is None:
                    found.append(BidProblem(where, c, f"{_short(record[c])} is not a number"))
                elif not math.isfinite(value):
                    found.append(BidProblem(where, c, f"is {value} (must be finite)"))
                else:
                    nums[c] = value
        fpu = record.get("fpu")
        if _is_missing(fpu):
            fpu = None
        elif not isinstance(fpu, str) or fpu.strip() not in FPU_TYPES:
            found.append(BidProblem(where, "fpu", f"{_short(fpu)} is not one of {', '.join(FPU_TYPES)}"))
        else:
            fpu = fpu.strip()
        if found:
            problems.extend(found)
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
    problems[:0] = header_problems  # after the loop: a generator adds its header problems as it reads

    # cross-row rules, on the rows that parsed
    seen: dict[tuple[str, str, str | None], str] = {}
    first_of_bid: dict[str, tuple[str, BidRow]] = {}
    sign_of_bid: dict[str, tuple[str, int]] = {}
    known = set(package.flex_of_asset) if package is not None else None
    for where, row in rows:
        key = (row.bid_id, row.building_id, row.fpu)
        if key in seen:
            problems.append(BidProblem(
                where, None,
                f"duplicates {seen[key]} (bid {_short(row.bid_id)}, building {_short(row.building_id)}"
                + (f", fpu {row.fpu})" if row.fpu else ")"),
            ))
        else:
            seen[key] = where
        if row.bid_id in first_of_bid:
            w0, r0 = first_of_bid[row.bid_id]
            if row.aggregator != r0.aggregator:
                problems.append(BidProblem(
                    where, "aggregator",
                    f"of bid {_short(row.bid_id)} is {_short(r0.aggregator)} on {w0} but {_short(row.aggregator)} here",
                ))
            if row.price_eur_per_mwh != r0.price_eur_per_mwh:
                problems.append(BidProblem(
                    where, "price_eur_per_mwh",
                    f"of bid {_short(row.bid_id)} is {r0.price_eur_per_mwh:g} on {w0} but "
                    f"{row.price_eur_per_mwh:g} here",
                ))
        else:
            first_of_bid[row.bid_id] = (where, row)
        sign = (row.p_mw > 0) - (row.p_mw < 0)
        if sign:
            if row.bid_id in sign_of_bid and sign_of_bid[row.bid_id][1] != sign:
                w0, s0 = sign_of_bid[row.bid_id]
                problems.append(BidProblem(
                    where, "p_mw",
                    f"of bid {_short(row.bid_id)} mixes signs: {'upward' if s0 > 0 else 'downward'} on {w0}, "
                    f"{'upward' if sign > 0 else 'downward'} here",
                ))
            sign_of_bid.setdefault(row.bid_id, (where, sign))
        if known is not None and row.building_id not in known:
            problems.append(BidProblem(
                where, "building_id",
                f"{_short(row.building_id)} is unknown to the sensitivity package (no flexible bus)",
            ))

    if not problems and not rows:
        raise BidFileError(f"{source}: contains no bids; add at least one row", [BidProblem("file", None, "contains no bids")])
    if problems:
        raise _bid_error(source, problems, total=total)
    return BidTable(rows=tuple(r for _, r in rows), source=source, _checked=True)


def _order_key(where: str) -> tuple[int, str]:
    parts = where.split()
    if len(parts) == 2 and parts[1].lstrip("-").isdigit():
        return (int(parts[1]), where)
    return (-1, where)


def _bid_error(source: str, problems: list[BidProblem], *, total: int) -> BidFileError:
    """Return the error of invalid rows: a summary line, then one line per bad row (at most 10)."""
    by_row: dict[str, list[BidProblem]] = {}
    for problem in sorted(problems, key=lambda p: _order_key(p.where)):
        by_row.setdefault(problem.where, []).append(problem)
    bad = len(by_row)
    s = "s" if bad != 1 else ""
    head = (f"{source}: {bad} invalid row{s} of {total}, no bids were read; fix the row{s} listed below"
            + (f" (the first {MAX_LISTED_ROWS} of {bad})" if bad > MAX_LISTED_ROWS else "") + " and load the file again")
    details = tuple(f"  {where}: " + "; ".join(map(str, found)) for where, found in list(by_row.items())[:MAX_LISTED_ROWS])
    return BidFileError(head, sorted(problems, key=lambda p: _order_key(p.where)), details)


def _file_error(source: str, where: str, reason: str, advice: str) -> BidFileError:
    """Return the one-line error of a file that cannot be read as rows at all."""
    return BidFileError(f"{source} {where}: {reason}; {advice}", [BidProblem(where, None, reason)])


# --- readers and writer --------------------------------------------------------------------------


def _records_from_csv(lines: Iterable[str], source: str, header_problems: list[BidProblem]) -> Iterator[tuple[str, Any]]:
    """Yield ``(where, record)`` per CSV row; header problems are appended to ``header_problems``.

    ``lines`` may be the open file: the CSV is parsed as it is read, never held whole.
    """
    reader = csv.reader(lines)
    try:
        try:
            header = next(reader)
        except StopIteration:
            raise _file_error(source, "line 1", "the file is empty", "expected a header line naming the columns "
                              + ", ".join(BID_COLUMNS)) from None
        header = [h.strip().lstrip("\ufeff") for h in header]
        missing = [c for c in BID_COLUMNS if c not in header]
        extra = [h for h in header if h not in BID_COLUMNS and h not in OPTIONAL_COLUMNS]
        dupes = sorted({h for h in header if header.count(h) > 1})
        if missing or dupes:
            what = "; ".join([*([f"missing column(s) {', '.join(missing)}"] if missing else []),
                              *([f"unknown column(s) {_cut(', '.join(extra))}"] if extra else []),
                              *([f"repeated column(s) {_cut(', '.join(dupes))}"] if dupes else [])]) + " in the header"
            raise _file_error(source, "line 1", what,
                              "the header must name " + ", ".join(BID_COLUMNS) + " (and optionally fpu) once each")
        if extra:
            header_problems.append(BidProblem("line 1", _cut(", ".join(extra)),
                                              "in the header is not a column of the bid format"))
        line = reader.line_num
        for fields in reader:
            start, line = line + 1, reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            where = f"line {start}"
            if len(fields) != len(header):
                header_problems.append(BidProblem(where, None, f"has {len(fields)} fields, the header has {len(header)}"))
                yield where, _REPORTED
                continue
            yield where, {h: v for h, v in zip(header, fields) if h not in extra}
    except csv.Error as exc:
        raise _file_error(source, f"line {reader.line_num + 1}", f"not readable as CSV ({exc})",
                          "save the bids as a comma-separated UTF-8 file") from None


def _bounded_lines(lines: Iterable[str], source: str) -> Iterator[str]:
    """Yield ``lines`` while their total stays within the size limit (the file may grow after stat)."""
    total = 0
    for line in lines:
        total += len(line)
        if total > MAX_FILE_BYTES:
            raise LimitError(f"{source}: more than the {MAX_FILE_BYTES / 1e6:.0f} MB limit of a bid file; split the "
                             "bids into smaller files")
        yield line


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*+(?:"|\Z)', re.DOTALL)  # possessive: linear on any input
_JSON_OPEN_CLOSE = re.compile(r"[\[\]{}]")


def _line_too_deep(text: str, limit: int) -> int | None:
    """Return the line where JSON nesting first exceeds ``limit``, or None.

    Strings are blanked first (a bracket inside a string does not nest); the scan is a loop, not a
    recursion, and linear in the length of the text.
    """
    bare = _JSON_STRING.sub('""', text)
    if bare.count("[") + bare.count("{") <= limit:
        return None
    depth = 0
    for match in _JSON_OPEN_CLOSE.finditer(bare):
        if bare[match.start()] in "[{":
            depth += 1
            if depth > limit:
                return bare.count("\n", 0, match.start()) + 1
        else:
            depth -= 1
    return None


def _records_from_json(text: str, source: str) -> Iterator[tuple[str, Any]]:
    """Yield ``(where, object)`` of a JSON array of objects, keeping the line each object starts on."""
    deep = _line_too_deep(text, MAX_JSON_DEPTH)
    if deep is not None:
        raise LimitError(f"{source} line {deep}: JSON nested deeper than {MAX_JSON_DEPTH} levels; a bid file is "
                         "one array of flat objects (see docs/bids.md)")
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip())
    if not text[pos:].startswith("["):
        raise _file_error(source, "line 1", "expected a JSON array of bid objects", "see docs/bids.md for the format")
    pos += 1
    line, line_pos = 1, 0  # line of text[line_pos]; advanced incrementally (counting from 0 each time is quadratic)
    n = 0
    try:
        while True:
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            if pos < len(text) and text[pos] == "]":
                pos += 1
                break
            if n:
                if pos >= len(text) or text[pos] != ",":
                    raise json.JSONDecodeError("expected ',' or ']'", text, pos)
                pos += 1
                while pos < len(text) and text[pos] in " \t\r\n":
                    pos += 1
            line += text.count("\n", line_pos, pos)
            line_pos = pos
            obj, pos = decoder.raw_decode(text, pos)
            n += 1
            yield f"line {line}", obj
    except json.JSONDecodeError as exc:
        raise _file_error(source, f"line {exc.lineno}", f"invalid JSON ({exc.msg}, column {exc.colno})",
                          "fix the file and load it again") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise _file_error(source, f"line {line}", f"unreadable JSON value ({_cut(str(exc))})",
                          "fix the file and load it again") from None
    if text[pos:].strip():
        line += text.count("\n", line_pos, pos)
        raise _file_error(source, f"line {line}", "unexpected text after the JSON array", "remove it")


def _check_size(path: Path, source: str) -> None:
    """Refuse a file beyond the size limit from its size, before reading it."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise LimitError(f"{source}: {size / 1e6:.1f} MB is more than the {MAX_FILE_BYTES / 1e6:.0f} MB limit of a bid "
                         "file; split the bids into smaller files")


def _text_of(path: Path, source: str) -> str:
    """Return the file's text, refusing by size before reading more than the limit."""
    _check_size(path, source)
    with path.open("rb") as fh:
        raw = fh.read(MAX_FILE_BYTES + 1)  # bounded even if the file grows after stat
    if len(raw) > MAX_FILE_BYTES:
        raise LimitError(f"{source}: more than the {MAX_FILE_BYTES / 1e6:.0f} MB limit of a bid file; split the bids "
                         "into smaller files")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _not_utf8(raw, exc, source) from None


def _not_utf8(raw: bytes, exc: UnicodeDecodeError, source: str) -> BidFileError:
    line = raw.count(b"\n", 0, exc.start) + 1
    return BidFileError(f"cannot read bid file {source}: line {line} is not UTF-8 text; save the bids as UTF-8 CSV "
                        "or JSON", [BidProblem(f"line {line}", None, "not UTF-8 text")])


def read_bids(path: str | Path, *, package: "SensitivityPackage | None" = None) -> BidTable:
    """Read and check a bid file (``.csv`` or ``.json``).

    Parameters
    ----------
    path
        The bid file; its suffix selects the format. At most :data:`MAX_FILE_BYTES`,
        :data:`MAX_ROWS` rows and (JSON) :data:`MAX_JSON_DEPTH` levels of nesting.
    package
        If given, every ``building_id`` must be a key of ``package.flex_of_asset``.

    Returns
    -------
    BidTable
        The checked rows.

    Raises
    ------
    BidFileError
        Listing every invalid row with its line number and column (an :class:`InputError`).
    LimitError
        The file is beyond a limit (an :class:`InputError`).
    InputError
        The file does not exist or cannot be read.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"bid file {path} does not exist; check the path")
    if not path.is_file():
        raise InputError(f"bid file {path} is not a regular file; give a .csv or .json file")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise InputError(f"bid file {path} must end in .csv or .json")
    source = path.name
    try:
        if suffix == ".csv":
            _check_size(path, source)
            header_problems: list[BidProblem] = []
            with path.open("r", encoding="utf-8-sig", newline="") as fh:  # newline="": csv handles line ends
                try:
                    table = _table_from_records(
                        _records_from_csv(_bounded_lines(fh, source), source, header_problems), source=source,
                        package=package, from_text=True, header_problems=header_problems,
                    )
                except UnicodeDecodeError:  # decoded ahead in chunks: find the line in the bytes
                    raw = path.read_bytes()[: MAX_FILE_BYTES + 1]
                    try:
                        raw.decode("utf-8-sig")
                    except UnicodeDecodeError as exc:
                        raise _not_utf8(raw, exc, source) from None
                    raise
        else:
            table = _table_from_records(_records_from_json(_text_of(path, source), source), source=source,
                                        package=package)
    except OSError as exc:
        raise InputError(f"cannot read bid file {path}: {exc.strerror or exc}") from exc
    log.info("read %d bids (%d rows) from %s", table.n_bids, len(table.rows), path)
    return table


def bids_from_frame(frame: "pd.DataFrame", *, package: "SensitivityPackage | None" = None) -> BidTable:
    """Check an in-memory bid table (pandas DataFrame with the bid-file columns).

    Problems are reported by ``row <index label>``. Raises :class:`BidFileError` like
    :func:`read_bids` (and :class:`LimitError` beyond :data:`MAX_ROWS` rows).
    """
    if not hasattr(frame, "columns") or not hasattr(frame, "to_dict"):
        raise InputError("bids_from_frame expects a pandas DataFrame")
    if len(frame) > MAX_ROWS:
        raise LimitError(f"<frame>: {len(frame):,} rows, more than {MAX_ROWS:,}; split the bids")
    cols = [str(c) for c in frame.columns]
    missing = [c for c in BID_COLUMNS if c not in cols]
    extra = [c for c in cols if c not in BID_COLUMNS and c not in OPTIONAL_COLUMNS]
    if missing or extra:
        what = "; ".join([*([f"missing column(s) {', '.join(missing)}"] if missing else []),
                          *([f"unknown column(s) {_cut(', '.join(extra))}"] if extra else [])])
        raise _file_error("<frame>", "columns", what, "a bid table has the columns " + ", ".join(BID_COLUMNS)
                          + " (and optionally fpu)")
    records = ((f"row {label}", dict(rec)) for label, rec in zip(frame.index, frame.to_dict("records")))
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
