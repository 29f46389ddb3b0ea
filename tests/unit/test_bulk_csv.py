"""The device CSV format: labels encoding, header checks, row parsing and record splitting of a byte
stream (whatever the chunking), as bulk import and export use them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from muster.runtime.errors import InvalidArgument
from services.registry import bulk
from services.registry.bulk_csv import (
    EXPORT_COLUMNS,
    MAX_RECORD_BYTES,
    Header,
    ParsedRow,
    Record,
    RecordSplitter,
    RecordTooLong,
    RowError,
    decode_labels,
    device_cells,
    encode_labels,
    parse_row,
    to_csv,
)
from services.registry.domain import Device, DeviceState, Location

from .registry_handlers_support import A

_T = datetime(2026, 1, 1, tzinfo=UTC)
label_keys = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)
cell_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20)


@given(st.dictionaries(label_keys, cell_text, max_size=6))
def test_labels_survive_encode_then_decode(labels: dict[str, str]) -> None:
    assert decode_labels(encode_labels(labels)) == labels


def test_labels_format_is_key_value_pairs_with_backslash_escapes() -> None:
    assert encode_labels({"zone": "a;b", "floor": "3", "eq": "x=y"}) == r"eq=x\=y;floor=3;zone=a\;b"
    assert decode_labels("floor=3; zone = north;") == {"floor": "3", "zone": " north"}
    assert decode_labels("") == {}


@pytest.mark.parametrize(("text", "reason"), [("floor", "not key=value"), ("a=1;a=2", "appears twice")])
def test_bad_labels_name_the_entry(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        decode_labels(text)


def test_header_needs_a_key_column_and_known_columns() -> None:
    with pytest.raises(InvalidArgument) as caught:
        Header.parse(["display_name", "colour", "latitude"])
    reasons = " | ".join(v.description for v in caught.value.violations)
    assert {v.field for v in caught.value.violations} == {"header"}
    assert "'colour'" in reasons and "serial" in reasons and "come together" in reasons


def test_header_is_case_and_space_insensitive_and_refuses_repeats() -> None:
    assert Header.parse([" Serial ", "LABELS"]).columns == ("serial", "labels")
    with pytest.raises(InvalidArgument, match="twice"):
        Header.parse(["serial", "serial"])


def test_row_sets_only_the_columns_present() -> None:
    header = Header.parse(["serial", "site", "labels", "latitude", "longitude"])
    row = parse_row(header, 2, ["SN-1", "sites/berlin", "floor=3", "52.5", "13.4"])
    assert row == ParsedRow(2, "SN-1", None, {"site_id": "berlin", "labels": {"floor": "3"},
                                               "location": Location(52.5, 13.4, 0.0)})


def test_empty_cells_clear_and_missing_trailing_cells_count_as_empty() -> None:
    header = Header.parse(["serial", "site", "template", "notes"])
    assert parse_row(header, 3, ["SN-1"]) == ParsedRow(3, "SN-1", None, {"site_id": None, "template_id": None,
                                                                          "notes": ""})


@pytest.mark.parametrize(("cells", "column"), [
    (["", "x", "1", "2"], "serial"),
    (["SN", "Not An Id", "1", "2"], "site"),
    (["SN", "", "north", "2"], "latitude"),
    (["SN", "", "1", ""], "longitude"),
    (["SN", "", "1", "2", "extra"], ""),
])
def test_bad_cells_are_reported_with_their_column(cells: list[str], column: str) -> None:
    header = Header.parse(["serial", "site", "latitude", "longitude"])
    result = parse_row(header, 7, cells)
    assert isinstance(result, RowError) and result.row == 7
    assert column in {v.field for v in result.violations}


def test_name_identifies_a_device_and_must_look_like_one() -> None:
    header = Header.parse(["name", "serial"])
    assert parse_row(header, 2, ["devices/abcdefghij0123456789", ""]) == \
        ParsedRow(2, "", "abcdefghij0123456789", {})
    bad = parse_row(header, 2, ["devices/nope", "SN"])
    assert isinstance(bad, RowError) and bad.violations[0].field == "name"


def test_domain_rules_are_named_by_column() -> None:
    device = Device(tenant_id=A, id="d" * 20, create_time=_T, update_time=_T, labels={"Bad Key": "x"},
                    location=Location(91.0, 0.0))
    assert {v.field for v in bulk.check(device)} == {"labels", "latitude"}


def test_export_row_reimports_as_the_same_fields() -> None:
    device = Device(tenant_id=A, id="abcdefghij0123456789", create_time=_T, update_time=_T, display_name="pump, 1",
                    site_id="berlin", template_id="pump", labels={"floor": "3", "odd": "a;b=c\\"}, serial="SN-1",
                    notes="line 1\nline 2", location=Location(52.520008, 13.404954, 34.5), state=DeviceState.ACTIVE)
    text = to_csv([EXPORT_COLUMNS, device_cells(device)]).encode()
    records = [r.cells for r in _split([text])]
    header = Header.parse(records[0] or [])
    parsed = parse_row(header, 2, records[1] or [])
    assert isinstance(parsed, ParsedRow)
    assert bulk.apply_row(device, parsed, _T) == (device, frozenset())


# --- records out of chunks ------------------------------------------------------------------------

def _split(chunks: list[bytes]) -> list[Record]:
    splitter = RecordSplitter()
    out = [r for chunk in chunks for r in splitter.feed(chunk)]
    return out + list(splitter.close())


_ROWS = st.lists(st.lists(cell_text, min_size=1, max_size=4), min_size=1, max_size=6)


@given(_ROWS, st.data())
def test_records_do_not_depend_on_how_the_bytes_are_chunked(rows: list[list[str]], data: st.DataObject) -> None:
    payload = to_csv(rows).encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(payload)), max_size=8)))
    chunks = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
    records = _split(chunks)
    assert [r.cells for r in records] == rows
    assert [r.row for r in records] == list(range(1, len(rows) + 1))


def test_a_bom_is_dropped_and_a_last_line_without_newline_counts() -> None:
    records = _split([b"\xef\xbb", b"\xbfserial\r\nSN-1"])
    assert [r.cells for r in records] == [["serial"], ["SN-1"]]


def test_bad_utf8_costs_only_its_own_row() -> None:
    records = _split([b"serial\nSN-\xff\nSN-2\n"])
    assert [r.cells for r in records] == [["serial"], None, ["SN-2"]]
    assert "UTF-8" in records[1].problem


def test_an_unclosed_quote_at_the_end_is_reported() -> None:
    records = _split([b'serial\n"SN-1\n'])
    assert records[-1].cells is None and "not closed" in records[-1].problem


def test_a_runaway_record_stops_the_split_instead_of_growing_without_bound() -> None:
    splitter = RecordSplitter()
    list(splitter.feed(b'serial\n"'))
    with pytest.raises(RecordTooLong) as caught:
        for _ in range(MAX_RECORD_BYTES // 1024 + 2):
            list(splitter.feed(b"x" * 1023 + b"\n"))
    assert caught.value.row == 2
