"""OBX-3 to the catalogue: LOINC codes through the catalogue, local codes through ``lab_codes.toml``.

The shipped ``monitoring/hl7/lab_codes.toml`` is an example; a unit points ``DRESS_LAB_CODES`` at
its own file. The map is checked when it is loaded: an entry naming a catalogue key that does not
exist is refused with the file, the code and the key named (the listener does not start).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from monitoring import catalogue

__all__ = ["DEFAULT_MAP", "ENV_VAR", "CodeMap", "CodeMapError", "load_code_map"]

ENV_VAR = "DRESS_LAB_CODES"
DEFAULT_MAP = Path(__file__).resolve().parent / "lab_codes.toml"
LOINC_SYSTEMS = frozenset({"LN", "LOINC", "HTTP://LOINC.ORG"})


class CodeMapError(ValueError):
    """The code map cannot be used: every line names the file and the entry."""

    def __init__(self, lines: Sequence[str]):
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


@dataclass(frozen=True)
class CodeMap:
    path: Path
    shared: Mapping[str, str] = field(default_factory=dict)  # CODE (upper case) -> catalogue key
    by_sender: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # FACILITY -> CODE -> key

    def test_for(self, codes: Sequence[tuple[str, str, str]], facility: str = "") -> catalogue.TestDef | None:
        """The catalogue test of an OBX-3 (identifier, text, system triples), or None when unknown.

        A LOINC-coded identifier is looked up in the catalogue (PRODUCT.md §4 lists the accepted
        codes); any identifier is then looked up in the local map, the sender's own table first.
        """
        for ident, _text, system in codes:
            if system in LOINC_SYSTEMS or (not system and catalogue.lookup_loinc(ident) is not None):
                found = catalogue.lookup_loinc(ident)
                if found is not None:
                    return found
        own = self.by_sender.get(facility.upper(), {})
        for ident, _text, system in codes:
            if system in LOINC_SYSTEMS:
                continue
            key = own.get(ident.upper()) or self.shared.get(ident.upper())
            if key is not None:
                return catalogue.lookup(key)
        return None


def _entries(path: Path, table: object, where: str, problems: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    if not isinstance(table, dict):
        problems.append(f"{path}: [{where}] must be a table of CODE = \"catalogue key\"")
        return out
    for code, key in table.items():
        if isinstance(key, dict):
            continue  # a sender's own table, read by the caller
        if not isinstance(key, str):
            problems.append(f"{path}: [{where}] code {code!r}: value {key!r}: must be a catalogue key (text)")
            continue
        try:
            out[str(code).strip().upper()] = catalogue.lookup(key.strip()).key
        except catalogue.UnknownTestError:
            known = ", ".join(sorted(catalogue.CATALOGUE))
            problems.append(f"{path}: [{where}] code {code!r}: value {key!r}: unknown catalogue key (known: {known})")
    return out


def load_code_map(path: str | Path | None = None) -> CodeMap:
    """The code map from ``path``, else $DRESS_LAB_CODES, else the shipped example. CodeMapError if unusable."""
    chosen = Path(path or os.environ.get(ENV_VAR) or DEFAULT_MAP)
    try:
        data = tomllib.loads(chosen.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CodeMapError([f"{chosen}: lab code map not found (set {ENV_VAR} to your laboratory's lab_codes.toml)"]) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CodeMapError([f"{chosen}: cannot read the lab code map: {exc}"]) from None
    problems: list[str] = []
    unknown = sorted(set(data) - {"codes"})
    if unknown:
        problems.append(f"{chosen}: unknown table(s) {', '.join(unknown)}: only [codes] and [codes.\"FACILITY\"] are read")
    table = data.get("codes", {})
    shared = _entries(chosen, table, "codes", problems)
    by_sender: dict[str, dict[str, str]] = {}
    if isinstance(table, dict):
        for facility, sub in table.items():
            if isinstance(sub, dict):
                by_sender[str(facility).strip().upper()] = _entries(chosen, sub, f"codes.{facility}", problems)
    if problems:
        raise CodeMapError(problems)
    return CodeMap(chosen, shared, by_sender)
