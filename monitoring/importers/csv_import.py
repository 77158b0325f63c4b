"""CSV import: patients, labs and medications, each kind recognised by its header (PRODUCT.md §6).

A file is read whole (UTF-8, with or without BOM; anything else is refused), its header names
the kind, and its records are checked and converted into ``PatientIn`` / ``LabIn`` / ``MedIn``.
Every problem of every row is collected (never only the first); the caller writes nothing when
there is any. Rows are numbered as records with the header as row 1, which is the line number for
files without quoted line breaks.

Speed: a year of a ward's results must import in seconds. Conversions are looked up once per
distinct (test, unit), date-time strings are parsed once per distinct text, and the records go to
``store.write_batch``, which inserts them in bulk.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

from monitoring import intake
from monitoring.catalogue import TestDef
from monitoring.importers.caps import MAX_CSV_COLUMNS
from monitoring.intake import ConvertedValue, LabConverter, Refused, today
from monitoring.store import LabColumns, LabIn, MedIn, PatientIn, Problem

__all__ = ["KINDS", "CsvKind", "ParsedCsv", "parse_csv", "parse_csv_bytes", "recognise"]


@dataclass(frozen=True)
class CsvKind:
    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional

    @property
    def header(self) -> str:
        return ",".join(self.required) + "".join(f"[,{c}]" for c in self.optional)


PATIENTS = CsvKind(
    "patients",
    ("mrn", "name"),
    ("sex", "birth_date", "weight_kg", "onset_date", "culprit_drug", "baseline_creatinine_mg_dl", "resolved_date", "setting"),
)
LABS = CsvKind("labs", ("mrn", "taken_at", "test", "value", "unit"), ("ref_low", "ref_high"))
MEDICATIONS = CsvKind("medications", ("mrn", "start_date", "drug", "daily_dose", "unit"), ("route",))
KINDS: tuple[CsvKind, ...] = (PATIENTS, LABS, MEDICATIONS)

@dataclass
class ParsedCsv:
    """What one CSV file holds, ready for ``store.write_batch``, and every problem found in it."""

    name: str
    kind: str | None = None
    rows: int = 0  # data records read (blank lines excluded)
    patients: list[PatientIn] = field(default_factory=list)
    lab_columns: LabColumns | None = None  # a labs file's results, in columns (bulk insert)
    meds: list[MedIn] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)  # what was dropped, not refused (placeholder birth dates)
    # (where, MRN) of the lab and medication rows refused for their own problems: their MRN is
    # checked against the database too, so a row's report is complete (issue 18 point 13).
    refused_mrns: list[tuple[str, str]] = field(default_factory=list)

    @property
    def labs(self) -> list[LabIn]:
        """The lab results as records, in file order."""
        return self.lab_columns.records() if self.lab_columns is not None else []


def parse_csv(path: str | Path, *, as_of: dt.date | None = None) -> ParsedCsv:
    """Read and check one CSV file; problems name it as given (``str(path)``)."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return ParsedCsv(name, problems=[Problem(name, None, None, f"cannot read the file: {exc.strerror or exc}")])
    return parse_csv_bytes(data, name, as_of=as_of)


def parse_csv_bytes(data: bytes, name: str, *, as_of: dt.date | None = None) -> ParsedCsv:
    """Check the bytes of one CSV file (an upload, or a file read by ``parse_csv``)."""
    out = ParsedCsv(name)
    text = _decode(data, out)
    if text is None:
        return out
    # The header alone is read first (a labs file that quotes nothing is then split, never copied
    # into a reader); a header with a quote may span lines, so then the reader reads from the start.
    first_eol = _LINE_END.search(text)
    end = first_eol.end() if first_eol else len(text)
    quoted_header = '"' in text[:end]
    reader = csv.reader(io.StringIO(text if quoted_header else text[:end], newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        out.problems.append(Problem(f"{name}: row 1", None, None, f"not readable as CSV: {exc}"))
        return out
    if header is None or not any(c.strip() for c in header):
        out.problems.append(Problem(name, None, None, f"empty file: expected a header line ({_expected()})"))
        return out
    if len(header) > MAX_CSV_COLUMNS.value():
        # Refused at the header: no column is checked, no row read (a 1 M-column header would
        # otherwise list a problem per column).
        out.problems.append(Problem(f"{name}: row 1", None, f"{len(header):,} columns",
                                    f"too many columns in the header: {MAX_CSV_COLUMNS.named()}"))
        return out
    columns = [c.strip().lower() for c in header]
    kind = _check_header(columns, header, out)
    if kind is None:
        return out
    out.kind = kind.name
    index = {c: i for i, c in enumerate(columns)}
    if kind is LABS:
        plain = _plain_columns(text, len(columns))
        if plain is not None and all(m.strip() for m in set(plain[index["mrn"]])):
            out.rows = len(plain[0])
            _lab_columns(plain, out.rows, range(2, out.rows + 2), index, name, intake.future_limit(as_of=as_of), out)
            return out
    if not quoted_header:
        reader = csv.reader(io.StringIO(text[end:], newline=""))
    rows: list[list[str]] = []
    try:
        rows.extend(reader)  # the records read before a csv.Error stay in the list
    except csv.Error as exc:
        out.problems.append(Problem(f"{name}: row {len(rows) + 2}", None, None, f"not readable as CSV: {exc}"))
    rows, rownums = _well_formed(rows, len(columns), index["mrn"], name, columns, out)
    day = as_of or today()
    if kind is LABS:
        _labs(rows, rownums, index, name, intake.future_limit(as_of=as_of), out)
    else:
        records = list(zip(rownums, rows, strict=True))
        if kind is MEDICATIONS:
            _meds(records, index, name, out)
        else:
            _patients(records, index, name, day, out)
    return out


def _plain_columns(text: str, width: int) -> list[list[str]] | None:
    """The fields of the records after the header line, column by column, of a CSV text that
    quotes nothing; None when ``csv.reader`` must read it.

    Without a quote character, CSV (RFC 4180, and Python's csv module in its default dialect) is
    one record per line ending ("\\n" or "\\r\\n") and one field per comma, so splitting the text
    gives exactly the fields csv.reader gives, at C speed (a million results: 0.2 s instead of
    1.3 s). Left to csv.reader: any '"', a "\\r" not before "\\n", a blank line (an empty record,
    passed over by ``_well_formed``), a record with another number of fields, a line longer than
    ``csv.field_size_limit()`` (csv.reader's own refusal), a file of the header alone."""
    if '"' in text:
        return None
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            return None
    body = text.partition("\n")[2]
    if body.endswith("\n"):
        body = body[:-1]
    if not body:
        return None
    lines = body.split("\n")
    if "" in lines or set(map(str.count, lines, repeat(","))) != {width - 1} or max(map(len, lines)) > csv.field_size_limit():
        return None
    fields = body.replace("\n", ",").split(",")
    return [fields[k::width] for k in range(width)]


def _well_formed(
    rows: list[list[str]], width: int, i_mrn: int, name: str, columns: list[str], out: ParsedCsv
) -> tuple[list[list[str]], Sequence[int]]:
    """The records that have the header's fields, with their row numbers (header = row 1).

    Blank lines and a spreadsheet's empty rows hold nothing to import and are passed over; a record
    with another number of fields is a problem. Checked set-wise first: most files have neither.
    """
    ragged = set(map(len, rows)) - {width}
    if ragged:
        blank_mrns = {m for m in {r[i_mrn] for r in rows if len(r) == width} if not m.strip()}
    else:
        blank_mrns = {m for m in set(map(operator.itemgetter(i_mrn), rows)) if not m.strip()}
    if not ragged and not blank_mrns:
        out.rows = len(rows)
        return rows, range(2, len(rows) + 2)
    kept: list[list[str]] = []
    numbers: list[int] = []
    for k, row in enumerate(rows):
        if not any(c.strip() for c in row):
            continue
        if len(row) != width:
            out.problems.append(
                Problem(f"{name}: row {k + 2}", None, None, f"has {len(row)} fields, the header has {width} ({','.join(columns)})")
            )
        else:
            kept.append(row)
            numbers.append(k + 2)
    out.rows = len(numbers) + sum(1 for row in rows if len(row) != width and any(c.strip() for c in row))
    return kept, numbers


def _expected() -> str:
    return "; ".join(f"{k.name}: {k.header}" for k in KINDS)


def _decode(data: bytes, out: ParsedCsv) -> str | None:
    if b"\x00" in data:
        out.problems.append(Problem(out.name, None, None, "a binary file, not CSV text (save it as CSV, UTF-8)"))
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        out.problems.append(
            Problem(
                f"{out.name}: row {line}",
                None,
                None,
                f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save the file as CSV UTF-8",
            )
        )
        return None


def recognise(columns: list[str]) -> CsvKind | None:
    """The kind whose distinctive columns (all but ``mrn``) the header shares most; None if unclear."""
    scores = []
    for kind in KINDS:
        distinctive = set(kind.columns) - {"mrn"}
        scores.append((len(distinctive & set(columns)), kind))
    scores.sort(key=lambda s: -s[0])
    best, kind = scores[0]
    if best == 0 or best == scores[1][0]:
        return None
    return kind


def _check_header(columns: list[str], raw: list[str], out: ParsedCsv) -> CsvKind | None:
    where = f"{out.name}: row 1"
    problems = out.problems
    seen: set[str] = set()
    bad = False
    for i, c in enumerate(columns):
        if not c:
            problems.append(Problem(where, f"#{i + 1}", raw[i], "empty column name in the header"))
            bad = True
        elif c in seen:
            problems.append(Problem(where, c, raw[i], "duplicate column in the header"))
            bad = True
        seen.add(c)
    kind = recognise(columns)
    if kind is None:
        problems.append(
            Problem(where, None, ",".join(raw), f"header not recognised as a patients, labs or medications file ({_expected()})")
        )
        return None
    extra = [c for c in columns if c and c not in kind.columns]
    for c in extra:
        problems.append(
            Problem(where, c, None, f"unexpected column for a {kind.name} file (allowed: {', '.join(kind.columns)})")
        )
    missing = [c for c in kind.required if c not in seen]
    if missing:
        problems.append(
            Problem(
                where,
                None,
                None,
                f"missing required column(s) {', '.join(missing)} for a {kind.name} file (required: {', '.join(kind.required)})",
            )
        )
    if bad or extra or missing:
        return None
    return kind


_LINE_END = re.compile(r"\r\n?|\n")  # what ends a record for csv.reader
_SPACE = re.compile(r"[ \t\r\x0b\x0c\x1c-\x1f]")
_LAB_FIELDS = (
    "mrn",
    "test",
    "loinc",
    "taken_at",
    "value",
    "unit",
    "value_text",
    "original_value",
    "original_unit",
    "ref_low",
    "ref_high",
    "comparator",
    "taken_at_offset_minutes",
)


def _labs(
    rows: list[list[str]], rownums: Sequence[int], index: dict[str, int], name: str, limit: dt.datetime, out: ParsedCsv
) -> None:
    """The records of a labs file, read as rows: ``_lab_columns`` of its columns."""
    if rows:
        _lab_columns(list(zip(*rows, strict=True)), len(rows), rownums, index, name, limit, out)


def _lab_columns(
    columns: Sequence[Sequence[str]],
    n_rows: int,
    rownums: Sequence[int],
    index: dict[str, int],
    name: str,
    limit: dt.datetime,
    out: ParsedCsv,
) -> None:
    """Column-wise: each distinct time, test and (test, unit) is checked once, values convert per
    (test, unit) group in one pass, and only rows with a problem are looked at one by one.

    The results are assembled in the order of the file (each group's values put back at their
    rows; what is the same for a whole group, per row through a lookup by (test, unit)): they then
    reach the indexes patient by patient and time by time, which keeps the B-tree inserts local
    (measured: a third of the insert time at a million rows)."""
    problems: list[tuple[int, int, Problem]] = []  # (record index, column order, problem): sorted at the end
    i_mrn, i_time, i_test, i_value, i_unit = (index[c] for c in LABS.required)
    order = {c: k for k, c in enumerate(LABS.columns)}
    bad = bytearray(n_rows)  # 1 = the record has a problem and is not imported

    def problem(i: int, column: str, value: object, reason: str) -> None:
        bad[i] = 1
        problems.append((i, order[column], Problem(f"{name}: row {rownums[i]}", column, value, reason)))

    mrn_col = columns[i_mrn]
    mrns = {m: m.strip() for m in set(mrn_col)}
    if any(not m for m in mrns.values()):
        for i, m in enumerate(mrn_col):
            if not mrns[m]:
                problem(i, "mrn", "", "an MRN is required")
    time_col = columns[i_time]
    times = {t: _lab_time(t, limit) for t in set(time_col)}
    if any(type(v) is str for v in times.values()):
        for i, t in enumerate(time_col):
            reason = times[t]
            if type(reason) is str:
                problem(i, "taken_at", t, reason)
    with_offset = any(type(v) is tuple for v in times.values())
    test_col, unit_col, value_col = columns[i_test], columns[i_unit], columns[i_value]
    low_col = columns[index["ref_low"]] if "ref_low" in index else None
    high_col = columns[index["ref_high"]] if "ref_high" in index else None
    # Each row's (test, unit) as a small number: what is the same for a group is then looked up
    # per row by position, without hashing a million pairs again.
    number = {key: k for k, key in enumerate(dict.fromkeys(zip(test_col, unit_col, strict=True)))}
    group_of = list(map(number.__getitem__, zip(test_col, unit_col, strict=True)))
    rows_of: list[list[int]] = [[] for _ in number]
    for i, k in enumerate(group_of):
        rows_of[k].append(i)
    groups = dict(zip(number, rows_of, strict=True))
    tests: dict[str, TestDef | str] = {}
    # Per (test, unit): (catalogue key, LOINC, canonical unit, unit as received); None when refused.
    constant: dict[tuple[str, str], tuple[str, str | None, str, str] | None] = {}
    value: list[Any] = [None] * n_rows
    text: list[str | None] | None = None  # PCR results given as text; None while no row has one
    comparator: list[str | None] | None = None  # censored results; None while no row has one
    low: list[float | None] | None = None
    high: list[float | None] | None = None
    for (raw_test, raw_unit), idx in groups.items():
        constant[(raw_test, raw_unit)] = None
        test = tests.get(raw_test)
        if test is None:
            test = tests[raw_test] = _test(raw_test)
        if isinstance(test, str):
            for i in idx:
                problem(i, "test", raw_test, test)
            continue
        conv = _converter(test, raw_unit)
        if isinstance(conv, str):
            for i in idx:
                problem(i, "unit", raw_unit, conv)
            continue
        code = raw_test.strip()
        loinc = code if code in test.loinc else test.primary_loinc
        constant[(raw_test, raw_unit)] = (test.key, loinc, test.canonical_unit, raw_unit.strip())
        raws = list(map(value_col.__getitem__, idx))
        values = _convert_group(conv, raws, "\n".join(raws))
        for k, v in enumerate(values):
            if type(v) is str:
                raw = raws[k]
                problem(idx[k], "value", raw, v if raw.strip() else "a value is required")
        lows, highs = (_convert_refs(conv, col, idx, label, problem) for col, label in ((low_col, "ref_low"), (high_col, "ref_high")))
        if lows is not None and highs is not None and low_col is not None:  # lows is None without its column
            for k, i in enumerate(idx):
                lo, hi = lows[k], highs[k]
                if lo is not None and hi is not None and lo > hi:
                    problem(i, "ref_low", low_col[i], "the reference range's lower limit is above its upper limit")
        if set(map(type, values)) <= {float}:
            for i, v in zip(idx, values, strict=True):
                value[i] = v
        else:  # PCR results given as text, censored results (a refused value's reason is never kept)
            text = text if text is not None else [None] * n_rows
            comparator = comparator if comparator is not None else [None] * n_rows
            for i, v in zip(idx, values, strict=True):
                if isinstance(v, ConvertedValue):
                    value[i], text[i], comparator[i] = v.value, v.value_text, v.comparator
                elif type(v) is float:
                    value[i] = v
        if lows is not None:
            low = low if low is not None else [None] * n_rows
            for i, x in zip(idx, lows, strict=True):
                low[i] = x
        if highs is not None:
            high = high if high is not None else [None] * n_rows
            for i, x in zip(idx, highs, strict=True):
                high[i] = x
    # map() over dictionary lookups runs at C speed: these columns are a million long. A refused
    # (test, unit) gets placeholders: its rows are left out below.
    per_group = [
        tuple(c[k] if c else placeholder for c in map(constant.__getitem__, number))
        for k, placeholder in enumerate(("", None, "", ""))
    ]
    test_of, loinc_of, unit_of, unit_as_received = (list(map(g.__getitem__, group_of)) for g in per_group)
    fields: dict[str, Any] = {
        # One string per patient, not one per row (the rows' own strings are freed with the file).
        "mrn": list(map(mrns.__getitem__, mrn_col)),
        "test": test_of,
        "loinc": loinc_of,
        "value": value,
        "unit": unit_of,
        "value_text": text if text is not None else [None] * n_rows,
        # Stripping a million values is skipped when no value holds white space (the usual file).
        "original_value": list(value_col) if _no_space(value_col) else [r.strip() for r in value_col],
        "original_unit": unit_as_received,
        "ref_low": low if low is not None else [None] * n_rows,
        "ref_high": high if high is not None else [None] * n_rows,
        "comparator": comparator,
    }
    taken = list(map(times.__getitem__, time_col))
    if with_offset:  # (time, offset) pairs where the file gave a UTC offset
        fields["taken_at_offset_minutes"] = [v[1] if type(v) is tuple else None for v in taken]
        taken = [v[0] if type(v) is tuple else v for v in taken]
    else:
        fields["taken_at_offset_minutes"] = None
    fields["taken_at"] = taken
    kept: Sequence[int] = range(n_rows)
    if any(bad):  # leave out the rows with a problem
        kept = [i for i in range(n_rows) if not bad[i]]
        fields = {k: None if v is None else [v[i] for i in kept] for k, v in fields.items()}
    for optional in ("comparator", "taken_at_offset_minutes"):
        if fields[optional] is not None and not any(v is not None for v in fields[optional]):
            fields[optional] = None  # the usual file: none in any row
    out.lab_columns = LabColumns(name, list(map(rownums.__getitem__, kept)), **fields)
    problems.sort(key=lambda p: (p[0], p[1]))
    out.problems.extend(p for _, _, p in problems)
    out.refused_mrns.extend(
        (f"{name}: row {rownums[i]}", mrns[mrn_col[i]]) for i in sorted({i for i, _, _ in problems}) if mrns[mrn_col[i]]
    )


def _no_space(column: Sequence[str]) -> bool:
    """No value of the column holds white space (then stripping each changes none)."""
    joined = "\n".join(column)
    return joined.isascii() and joined.count("\n") == len(column) - 1 and not _SPACE.search(joined)


def _convert_group(conv: LabConverter, raws: list[str], joined: str) -> Sequence[float | str | ConvertedValue]:
    """Canonical values of one (test, unit) group: a float, a PCR text result, or the reason it is refused.

    ``joined`` is the values joined by newlines. Fast path for the usual column of plain decimal
    numbers: one float() per value, the affine conversion, then the bounds checked on min and max.
    Anything else (text, blanks, a value out of bounds) is checked value by value.
    """
    test = conv.test
    # float() also takes '1_000', 'nan', 'inf' and non-ASCII digits, which the product refuses: the
    # fast path runs only on ASCII text without '_', and a non-finite sum sends it to the slow path.
    # A value longer than the stored column goes to the slow path, which refuses it as a form does.
    limit = intake.text_limit("lab_result", "original_value")
    short = len(joined) <= limit or max(map(len, raws)) <= limit
    c = conv.conversion
    if c is not None and short and not test.qualitative and joined.isascii() and "_" not in joined:
        try:
            numbers = list(map(float, raws))
        except ValueError:
            numbers = None
    else:
        numbers = None
    if numbers is not None and c is not None:
        if c.func is not None:
            values = [c.func(x) for x in numbers]
        elif c.factor == 1.0 and c.offset == 0.0:
            values = numbers
        else:
            f, o = c.factor, c.offset
            values = [x * f + o for x in numbers]
        if (
            values
            and math.isfinite(sum(values))
            and min(values) >= test.min_value
            and (test.max_value is None or max(values) <= test.max_value)
        ):
            return values
    out: list[float | str | ConvertedValue] = []
    for raw in raws:
        try:
            cv = conv.convert(raw)
        except ValueError as exc:
            out.append(str(exc))
            continue
        out.append(cv.value if cv.value is not None and cv.comparator is None else cv)
    return out


def _convert_refs(
    conv: LabConverter,
    column: Sequence[str] | None,
    idx: list[int],
    label: str,
    problem: Callable[[int, str, object, str], None],
) -> list[float | None] | None:
    """A group's reference limits in the canonical unit (None when the column is absent or empty)."""
    if column is None:
        return None
    raws = [column[i] for i in idx]
    if not any(raws):
        return None
    out: list[float | None] = []
    for k, raw in enumerate(raws):
        if not raw.strip():
            out.append(None)
            continue
        try:
            out.append(conv.convert_reference(raw))
        except ValueError as exc:
            problem(idx[k], label, raw, str(exc))
            out.append(None)
    return out


def _lab_time(text: str, limit: dt.datetime) -> dt.datetime | tuple[dt.datetime, int] | str:
    """intake.lab_time of one distinct text: the time, (time, offset) when it had one, or the reason."""
    try:
        when, offset = intake.lab_time(text, limit)
    except ValueError as exc:
        return str(exc)
    return when if offset is None else (when, offset)


def _test(text: str) -> TestDef | str:
    try:
        return intake.lookup_test(text)
    except ValueError as exc:
        return str(exc)


def _converter(test: TestDef, unit: str) -> LabConverter | str:
    if len(unit.strip()) > intake.text_limit("lab_result", "original_unit"):
        try:
            intake.stored_text("lab_result", "original_unit", unit)
        except intake.FieldError as exc:
            return exc.reason
    try:
        return intake.converter(test, unit)
    except ValueError as exc:
        return str(exc)


def _meds(records: list[tuple[int, list[str]]], index: dict[str, int], name: str, out: ParsedCsv) -> None:
    """Each row through ``intake.dose``: every problem of the row is reported."""
    i_mrn, i_start, i_drug, i_dose, i_unit = (index[c] for c in MEDICATIONS.required)
    i_route = index.get("route")
    for rownum, row in records:
        where = f"{name}: row {rownum}"
        try:
            med = intake.dose(
                mrn=row[i_mrn],
                drug=row[i_drug],
                start_date=row[i_start],
                daily_dose=row[i_dose],
                unit=row[i_unit],
                route=row[i_route] if i_route is not None else None,
                source="csv",
                where=where,
            )
        except Refused as exc:
            out.problems.extend(Problem(where, e.column, e.value, e.reason) for e in exc.errors)
            if row[i_mrn].strip() and not any(e.column == "mrn" for e in exc.errors):
                out.refused_mrns.append((where, row[i_mrn].strip()))
            continue
        out.meds.append(med)


# CSV column -> intake.patient_fields key
_PATIENT_KEYS = {"culprit_drug": "culprit_drugs"}


def _patients(
    records: list[tuple[int, list[str]]], index: dict[str, int], name: str, day: dt.date, out: ParsedCsv
) -> None:
    """Each row through ``intake.patient_fields``; an empty optional cell means not given."""
    first: dict[str, tuple[str, PatientIn]] = {}  # mrn -> (where, record): a file states one truth per MRN
    columns = {_PATIENT_KEYS.get(c, c): i for c, i in index.items()}
    for rownum, row in records:
        where = f"{name}: row {rownum}"
        given = {k: row[i] for k, i in columns.items() if k in ("mrn", "name") or row[i].strip()}
        try:
            fields = intake.patient_fields(given, on=day)
        except Refused as exc:
            out.problems.extend(
                Problem(where, _csv_column(e.column), e.value, e.reason) for e in exc.errors
            )
            continue
        out.notes.extend(Problem(where, _csv_column(e.column), e.value, e.reason) for e in fields.notes)
        values = dict(fields.values)
        mrn, patient_name = values.pop("mrn"), values.pop("name")
        rec = PatientIn(mrn, patient_name, values, where)
        prev = first.get(mrn)
        if prev is not None:
            pwhere, p = prev
            if p.name != rec.name or any(k in p.values and p.values[k] != v for k, v in rec.values.items()):
                out.problems.append(
                    Problem(where, "mrn", mrn, f"the same patient as {pwhere} with different details; give one row per MRN")
                )
            else:
                for k, v in rec.values.items():
                    p.values.setdefault(k, v)
            continue
        first[mrn] = (where, rec)
        out.patients.append(rec)


def _csv_column(key: str) -> str:
    return next((c for c, k in _PATIENT_KEYS.items() if k == key), key)
