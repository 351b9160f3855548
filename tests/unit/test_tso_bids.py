"""Bid table: reading, checking (every kind of error with its line number), writing, schema."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optim._errors import InputError
from optim.package import OperatingPoint, SensitivityPackage
from optim.tso.bids import (
    BID_COLUMNS,
    BID_SCHEMA,
    FPU_TYPES,
    BidFileError,
    BidRow,
    BidTable,
    bids_from_frame,
    read_bids,
    write_bids,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "bids.md"
HEADER = "bid_id,aggregator,building_id,p_mw,price_eur_per_mwh,fpu\n"
GOOD = HEADER + "B1,A1,h1,0.01,50,pv\nB1,A1,h2,0.02,50,battery\nB2,A2,h3,-0.005,12.5,\n"


@pytest.fixture
def package() -> SensitivityPackage:
    n = 2
    pt = OperatingPoint("none", np.zeros(n), p_mw=np.zeros(n), vm_pu=np.ones(1), loading_percent=np.zeros(1),
                        vtdf_pu_per_mw=np.zeros((1, n)), ltdf_percent_per_mw=np.zeros((1, n)))
    return SensitivityPackage(("F1", "F2"), ("V1",), ("L1",), (pt,), flex_of_asset={"h1": "F1", "h2": "F2", "h3": "F2"})


def write(tmp_path: Path, text: str, name: str = "bids.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path, **kwargs) -> dict[str, str]:
    with pytest.raises(BidFileError) as info:
        read_bids(path, **kwargs)
    assert isinstance(info.value, InputError)
    merged: dict[str, str] = {}
    for problem in info.value.problems:
        merged[problem.where] = f"{merged[problem.where]}; {problem}" if problem.where in merged else str(problem)
    return merged


def test_good_csv_reads_rows_and_aggregates_bids(tmp_path: Path) -> None:
    table = read_bids(write(tmp_path, GOOD))
    assert [r.building_id for r in table.rows] == ["h1", "h2", "h3"]
    assert table.rows[2].fpu is None and table.rows[0].fpu == "pv"
    assert [(b.bid_id, b.aggregator, b.direction) for b in table.bids] == [("B1", "A1", 1), ("B2", "A2", -1)]
    assert table.bids[0].p_mw == pytest.approx(0.03)
    assert table.bids[1].price_eur_per_mwh == 12.5


@pytest.mark.parametrize(
    ("body", "line", "pattern"),
    [
        ("B1,A1,h1,abc,50,pv\n", 2, r"p_mw 'abc' is not a number"),
        ("B1,A1,h1,0.1,xyz,pv\n", 2, r"price_eur_per_mwh 'xyz' is not a number"),
        ("B1,A1,h1,nan,50,pv\n", 2, r"p_mw is nan \(must be finite\)"),
        ("B1,A1,h1,0.1,inf,pv\n", 2, r"price_eur_per_mwh is inf"),
        ("B1,A1,h1,-inf,50,pv\n", 2, r"p_mw is -inf"),
        (",A1,h1,0.1,50,pv\n", 2, r"bid_id '' is empty"),
        ("B1,A1, ,0.1,50,pv\n", 2, r"building_id ' ' is empty"),
        ("B1,A1,h1,0.1,50,car\n", 2, r"fpu 'car' is not one of"),
        ("B1,A1,h1,0.1,50,pv,extra\n", 2, r"has 7 fields, the header has 6"),
        ("B1,A1,h1,0.1,50\n", 2, r"has 5 fields"),
        ("B1,A1,h1,0.1,50,pv\nB1,A1,h1,0.2,50,pv\n", 3, r"duplicates line 2"),
        ("B1,A1,h1,0.1,50,pv\nB1,A1,h2,-0.2,50,pv\n", 3, r"p_mw of bid 'B1' mixes signs: upward on line 2, downward here"),
        ("B1,A1,h1,0.1,50,pv\nB1,A1,h2,0.2,51,pv\n", 3, r"price_eur_per_mwh of bid 'B1' is 50 on line 2 but 51 here"),
        ("B1,A1,h1,0.1,50,pv\nB1,A9,h2,0.2,50,pv\n", 3, r"aggregator of bid 'B1' is 'A1' on line 2 but 'A9' here"),
    ],
)
def test_each_kind_of_bad_row_is_reported_with_its_line(tmp_path: Path, body: str, line: int, pattern: str) -> None:
    problems = problems_of(write(tmp_path, HEADER + body))
    assert re.search(pattern, problems[f"line {line}"]), problems


def test_all_problems_are_listed_at_once_with_a_summary(tmp_path: Path) -> None:
    text = HEADER + "B1,A1,h1,0.01,50,pv\nB2,A1,h2,x,50,pv\n\nB3,A1,h3,0.1,nan,\nB4,A1,h4,0.1,5,ev\n"
    with pytest.raises(BidFileError) as info:
        read_bids(write(tmp_path, text))
    lines = str(info.value).splitlines()
    assert lines[0] == ("bids.csv: 2 invalid rows of 4, no bids were read; fix the rows listed below and load the "
                        "file again")
    assert lines[1] == "  line 3: p_mw 'x' is not a number"
    assert lines[2] == "  line 5: price_eur_per_mwh is nan (must be finite)"  # blank line 4 skipped, still counted
    assert info.value.details == tuple(lines[1:])
    assert [(p.where, p.column) for p in info.value.problems] == [("line 3", "p_mw"), ("line 5", "price_eur_per_mwh")]
    assert len(lines) == 3


def test_quoted_multiline_field_keeps_line_numbers(tmp_path: Path) -> None:
    text = HEADER + 'B1,"A\n1",h1,0.01,50,pv\nB2,A2,h2,bad,50,pv\n'
    assert "line 4" in problems_of(write(tmp_path, text))


def test_header_problems(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, "bid_id,aggregator,p_mw,price_eur_per_mwh,colour\nB1,A1,0.1,5,red\n"))
    assert "missing column(s) building_id" in problems["line 1"]
    problems = problems_of(write(tmp_path, HEADER.strip() + ",colour\nB1,A1,h1,0.1,5,pv,red\n"))
    assert "colour in the header is not a column" in problems["line 1"]
    problems = problems_of(write(tmp_path, HEADER.strip() + ",p_mw\nB1,A1,h1,0.1,5,pv,0.2\n"))
    assert "repeated column(s) p_mw" in problems["line 1"]
    assert "file is empty" in problems_of(write(tmp_path, ""))["line 1"]
    assert "contains no bids" in problems_of(write(tmp_path, HEADER))["file"]


def test_unknown_building_only_with_a_package(tmp_path: Path, package: SensitivityPackage) -> None:
    path = write(tmp_path, GOOD + "B3,A3,h9,0.1,50,pv\n")
    assert len(read_bids(path).rows) == 4
    problems = problems_of(path, package=package)
    assert list(problems) == ["line 5"] and "building_id 'h9' is unknown" in problems["line 5"]


def test_json_reports_the_line_of_each_object(tmp_path: Path, package: SensitivityPackage) -> None:
    text = (
        "[\n"
        ' {"bid_id": "B1", "aggregator": "A1", "building_id": "h1", "p_mw": 0.01, "price_eur_per_mwh": 50},\n'
        ' {"bid_id": "B2", "aggregator": "A1", "building_id": "h2", "p_mw": "0.01", "price_eur_per_mwh": 50},\n'
        "\n"
        ' {"bid_id": "B3", "aggregator": "A1",\n'
        '  "building_id": "h3", "p_mw": 0.01, "price_eur_per_mwh": 50, "colour": 1},\n'
        ' {"bid_id": "B4", "aggregator": "A1", "building_id": "h3", "price_eur_per_mwh": 50},\n'
        ' [1, 2]\n'
        "]\n"
    )
    problems = problems_of(write(tmp_path, text, "bids.json"), package=package)
    assert set(problems) == {"line 3", "line 5", "line 7", "line 8"}
    assert "p_mw '0.01' is not a number" in problems["line 3"]  # JSON numbers must be numbers
    assert "colour is not a column" in problems["line 5"]
    assert "p_mw is missing" in problems["line 7"]
    assert "expected an object" in problems["line 8"]


@pytest.mark.parametrize(
    ("text", "pattern"),
    [('{"bid_id": 1}', "expected a JSON array"), ('[\n{"bid_id": "B1",\n', "invalid JSON"), ("[]", "no bids"),
     ('[{"bid_id": "B1", "aggregator": "A", "building_id": "h1", "p_mw": 1, "price_eur_per_mwh": 2}] x',
      "unexpected text")],
)
def test_malformed_json(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(BidFileError, match=pattern):
        read_bids(write(tmp_path, text, "bids.json"))


def test_bad_path_and_suffix(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_bids(tmp_path / "none.csv")
    with pytest.raises(InputError, match=r"\.csv or \.json"):
        read_bids(write(tmp_path, GOOD, "bids.txt"))


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_write_read_round_trip_is_exact(tmp_path: Path, suffix: str) -> None:
    rows = (
        BidRow("B1", "A1", "h1", 0.1 + 0.2, 1 / 3, "pv"),
        BidRow("B1", "A1", "h2", 1e-7, 1 / 3, None),
        BidRow("B2", "A,2", "h3", -2.5, -10.0, "heat_pump"),  # comma in a field, negative price
    )
    table = BidTable(rows=rows, source="test")
    back = read_bids(write_bids(table, tmp_path / f"bids{suffix}"))
    assert back.rows == rows
    assert not list(tmp_path.glob("*.tmp*"))


def test_frame_input_reports_index_labels() -> None:
    frame = pd.DataFrame(
        {"bid_id": ["B1", "B2", None], "aggregator": ["A", "A", "A"], "building_id": [7, 8, 9],
         "p_mw": [0.1, np.nan, 0.2], "price_eur_per_mwh": [10, 10, 10]},
        index=[10, 11, 12],
    )
    with pytest.raises(BidFileError) as info:
        bids_from_frame(frame)
    assert {p.where for p in info.value.problems} == {"row 11", "row 12"}
    good = bids_from_frame(frame.iloc[:1])
    assert good.rows[0].building_id == "7"  # integer ids become strings
    with pytest.raises(BidFileError, match="missing column"):
        bids_from_frame(frame.drop(columns=["p_mw"]))
    assert list(good.to_frame().columns) == [*BID_COLUMNS, "fpu"]


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(BidFileError, match=r"is nan \(must be finite\)"):
        BidTable(rows=(BidRow("B1", "A", "h1", math.nan, 1.0),))
    table = BidTable(rows=(BidRow("B1", "A", "h1", 0.5, 1.0),))
    assert BidTable.from_dict(json.loads(json.dumps(table.to_dict()))).rows == table.rows


def test_schema_matches_the_reader_and_the_docs_example_reads(tmp_path: Path) -> None:
    item = BID_SCHEMA["items"]
    assert item["required"] == list(BID_COLUMNS)
    assert set(item["properties"]) == {*BID_COLUMNS, "fpu"}
    assert item["properties"]["fpu"]["enum"][:-1] == list(FPU_TYPES)
    text = DOCS.read_text(encoding="utf-8")
    csv_block = re.search(r"```csv\n(.*?)```", text, re.S).group(1)
    json_block = re.search(r"```json\n(.*?)```", text, re.S).group(1)
    from_csv = read_bids(write(tmp_path, csv_block))
    from_json = read_bids(write(tmp_path, json_block, "bids.json"))
    assert [b.bid_id for b in from_csv.bids] == ["agg1-up", "B0005-up", "agg2-down"]
    assert from_csv.bids[0].p_mw == pytest.approx(0.031)
    assert from_json.rows[0] == from_csv.rows[0]
    try:
        import jsonschema
    except ImportError:
        return
    jsonschema.validate(json.loads(json_block), BID_SCHEMA)


# --- limits and hostile files (issue 9) ------------------------------------------------------------


def _row(k: int) -> str:
    return f"B{k},A1,h{k},0.01,50,pv\n"


def test_at_most_ten_bad_rows_are_listed_but_all_are_counted(tmp_path: Path) -> None:
    text = HEADER + "".join(f"B{k},A1,h{k},x{k},50,pv\n" for k in range(25)) + _row(99)
    with pytest.raises(BidFileError) as info:
        read_bids(write(tmp_path, text))
    first, *rest = str(info.value).splitlines()
    assert first.startswith("bids.csv: 25 invalid rows of 26") and "(the first 10 of 25)" in first
    assert len(rest) == 10 == len(info.value.details)
    assert rest[0] == "  line 2: p_mw 'x0' is not a number"
    assert rest[-1].startswith("  line 11: p_mw 'x9'")
    assert len(info.value.problems) == 25


def test_long_values_are_cut_in_messages(tmp_path: Path) -> None:
    text = HEADER + f"B1,A1,h1,{'9x' * 5000},50,pv\n"
    with pytest.raises(BidFileError) as info:
        read_bids(write(tmp_path, text))
    assert max(len(line) for line in str(info.value).splitlines()) < 200


def test_file_beyond_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    import tracemalloc

    from optim._errors import LimitError
    from optim.tso.bids import MAX_FILE_BYTES

    path = tmp_path / "big.csv"
    with path.open("wb") as fh:  # sparse: 50 MB on paper, nothing on disk
        fh.write(HEADER.encode())
        fh.truncate(50_000_000)
    tracemalloc.start()
    try:
        with pytest.raises(LimitError, match=r"big.csv: 50.0 MB is more than the 20 MB limit") as info:
            read_bids(path)
        peak_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak_bytes < 1_000_000  # nothing of the file was read
    assert len(str(info.value).splitlines()) == 1
    assert MAX_FILE_BYTES == 20_000_000


def test_rows_beyond_the_limit_are_refused(tmp_path: Path, monkeypatch) -> None:
    import optim.tso.bids as bids_module
    from optim._errors import LimitError

    monkeypatch.setattr(bids_module, "MAX_ROWS", 5)
    assert len(read_bids(write(tmp_path, HEADER + "".join(_row(k) for k in range(5)))).rows) == 5
    with pytest.raises(LimitError, match=r"more than 5 rows \(line 7\); split the bids"):
        read_bids(write(tmp_path, HEADER + "".join(_row(k) for k in range(6))))
    rows = ",\n".join(json.dumps({"bid_id": f"B{k}", "aggregator": "A", "building_id": f"h{k}", "p_mw": 0.1,
                                  "price_eur_per_mwh": 1.0}) for k in range(6))
    with pytest.raises(LimitError, match=r"more than 5 rows \(line 7\)"):
        read_bids(write(tmp_path, "[\n" + rows + "\n]\n", "bids.json"))
    with pytest.raises(LimitError, match="more than 5"):
        bids_from_frame(pd.DataFrame({c: ["1"] * 6 for c in BID_COLUMNS}))


def test_the_real_row_limit_is_200000(tmp_path: Path) -> None:
    from optim._errors import LimitError

    text = HEADER + "x\n" * 200_001  # rows with the wrong number of fields: the cheapest to count
    with pytest.raises(LimitError, match=r"more than 200,000 rows \(line 200002\)"):
        read_bids(write(tmp_path, text))


@pytest.mark.parametrize("depth, refused", [(32, False), (33, True), (100_000, True)])
def test_json_nesting_is_limited_without_recursion(tmp_path: Path, depth: int, refused: bool) -> None:
    from optim._errors import LimitError

    nested = "[" * (depth - 2) + "1" + "]" * (depth - 2)  # inside the bid array and its object
    text = ('[{"bid_id": "B1", "aggregator": "A", "building_id": "h1", "p_mw": 0.1, "price_eur_per_mwh": 1,\n'
            f' "fpu": {nested}}}]')
    path = write(tmp_path, text, "bids.json")
    if refused:
        with pytest.raises(LimitError, match=r"bids.json line 2: JSON nested deeper than 32 levels"):
            read_bids(path)
    else:  # within the limit: read, and the row is refused for its fpu
        assert re.search(r"fpu .* is not one of", problems_of(path)["line 1"])


def test_brackets_inside_json_strings_do_not_nest(tmp_path: Path) -> None:
    bid = {"bid_id": "[" * 100 + '\\"{' * 50, "aggregator": "A", "building_id": "h1", "p_mw": 0.1,
           "price_eur_per_mwh": 1.0}
    table = read_bids(write(tmp_path, json.dumps([bid]), "bids.json"))
    assert table.rows[0].bid_id == bid["bid_id"]


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("bids.csv", "bid_id,aggregator,building_id,p_mw,price_eur_per_mwh\nB1,\xff\xfe,h1,1,2\n".encode("latin-1"),
         r"cannot read bid file bids.csv: line 2 is not UTF-8 text; save the bids as UTF-8"),
        ("bids.csv", (HEADER + 'B1,"' + "a" * 200_000 + '",h1,1,2,\n').encode(), r"bids.csv line \d+: not readable as CSV"),
        ("bids.json", b'[{"bid_id": "B1", "p_mw": ' + b"9" * 5000 + b"}]", r"bids.json line 1: unreadable JSON value"),
        ("bids.json", b'[{"bid_id": "B1, "p_mw": 1}]', r"bids.json line 1: invalid JSON"),
        ("bids.json", b'[{"bid_id": "B1", "p_mw": 1}\n\n{}]', r"bids.json line 3: invalid JSON \(expected ',' or ']'"),
        ("bids.json", b"\x00\x01\x02", r"bids.json line 1: expected a JSON array"),
    ],
)
def test_unreadable_files_give_one_line(tmp_path: Path, name: str, content: bytes, pattern: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BidFileError) as info:
        read_bids(path)
    assert re.match(pattern, str(info.value)), str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_a_directory_is_not_a_bid_file(tmp_path: Path) -> None:
    folder = tmp_path / "bids.csv"
    folder.mkdir()
    with pytest.raises(InputError, match="is not a regular file"):
        read_bids(folder)
