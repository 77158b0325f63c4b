"""The one drug resolver: a drug name or RxNorm code as an EHR writes it -> its ingredient(s).

Every place that names a drug asks this module: culprits (CSV, FHIR AllergyIntolerance and
Condition, the dashboard), schedule rows (CSV, FHIR Medication*, HL7, the forms, the demo), steroid
and PPI recognition, IVIG/cyclosporine, RECHALLENGE and CULPRIT_NOT_STOPPED, the taper planner and
the report. The knowledge is data: ``monitoring/drugs.toml`` (generic name, RxNorm codes with where
each was read, synonyms, brands, salts, cross-reactivity group, class, prednisone factor, source),
loaded once.

How a name is read (PRODUCT.md §6 edition 2, "Drug names as EHRs write them"):

- case and spacing never matter; text in parentheses or brackets is an alternative name
  ("Vancomycin Hydrochloride (VANCOMYCIN HYDROCHLORIDE)", "carbamazepine (Tegretol) 200 mg tablet",
  "carbamazepine 20 MG/ML Oral Suspension [Tegretol]");
- strengths ("800 MG", "1 GM", "5 mg/mL", "0.025 MG/HR", "24 HR"), dose forms and routes ("Oral
  Tablet", "Injection", "Extended Release Oral Capsule"), salts ("hydrochloride", "HCl", "sodium
  succinate") and release suffixes (XR, ER, CR, SR, XL, DR) are ignored;
- "/", "+", "&", ",", " and " and " with " separate the ingredients of a combination product, whose
  ingredients are each resolved ("Sulfamethoxazole 800 MG / Trimethoprim 160 MG Oral Tablet" is
  trimethoprim-sulfamethoxazole); what follows " in " is the vehicle ("vancomycin 1 g in dextrose");
  a hyphenated name is split only when every piece is a known drug;
- what remains of each ingredient must equal a generic name, synonym or brand of the table, whole:
  never a substring ("vancomycin-resistant enterococcus" is not vancomycin, acetaminophen is not
  carbamazepine). A part that is not in the table is kept as written (cleaned of strength and form)
  and is reported as unresolved; two names that clean to the same text still name the same drug.
- an RxNorm code (ingredient, or a clinical-drug code read in a public example) resolves on its own;
  with a name as well, the ingredients of both count (a culprit is never missed).

The equivalence of steroids (PRODUCT.md §5): Meikle & Tyler 1977, CLINICAL_REFERENCE.md §4.
Cross-reactivity of aromatic anticonvulsants: Knowles et al., Drug Saf 1999;21:489 (§6).
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "CROSS_REACTIVITY_GROUPS",
    "PREDNISONE_EQUIVALENCE",
    "PROTON_PUMP_INHIBITORS",
    "RXNORM_SYSTEMS",
    "SECOND_LINE",
    "TOPICAL_ROUTES",
    "DrugEntry",
    "Resolution",
    "cross_reacts",
    "drug_table",
    "drugs_of_class",
    "group_of",
    "is_systemic_route",
    "normalise_drug",
    "prednisone_factor",
    "resolve",
    "resolve_coded",
    "second_line_kind",
    "second_line_label",
    "steroid_factor",
]

TABLE_PATH = Path(__file__).with_name("drugs.toml")

# The code systems that carry RxNorm codes in FHIR (the canonical URI; some systems send the OID).
RXNORM_SYSTEMS: frozenset[str] = frozenset(
    {"http://www.nlm.nih.gov/research/umls/rxnorm", "urn:oid:2.16.840.1.113883.6.88", "rxnorm"}
)

# Routes that are not systemic (PRODUCT.md §5 'route not topical').
TOPICAL_ROUTES: frozenset[str] = frozenset(
    {"topical", "cutaneous", "transdermal", "skin", "dermal", "ophthalmic", "otic", "inhaled", "inhalation", "nasal"}
)

CLASSES = ("culprit", "systemic_steroid", "ivig", "cyclosporine", "ppi")


@dataclass(frozen=True)
class DrugEntry:
    """One [drug.X] entry of drugs.toml."""

    name: str
    ingredients: tuple[str, ...]  # itself, or the ingredients of a combination product
    rxcui: str | None
    products: dict[str, str]
    synonyms: tuple[str, ...]
    brands: tuple[str, ...]
    salts: tuple[str, ...]
    group: str | None
    klass: str
    prednisone_factor: float | None
    source: str


@dataclass(frozen=True)
class DrugTable:
    entries: dict[str, DrugEntry]
    aliases: dict[str, str]  # cleaned name -> entry name
    codes: dict[str, str]  # RxNorm code -> entry name
    noise: frozenset[str]  # salt, form, route and release words
    order_words: re.Pattern[str]  # frequency words and phrases, intervals and durations of an order
    non_systemic: frozenset[str]
    by_ingredients: dict[frozenset[str], str]  # ingredient set of a combination entry -> its name
    group_names: dict[str, str]  # cleaned name of a whole group -> the group


class DrugTableError(ValueError):
    """drugs.toml cannot be used; the message names the entry and field."""


def _words(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DrugTableError(f"{TABLE_PATH.name}: {where}: must be a list of strings")
    return tuple(v.strip().lower() for v in value if v.strip())


def _load(path: Path = TABLE_PATH) -> DrugTable:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    names = data.get("names", {})
    entries: dict[str, DrugEntry] = {}
    for key, raw in (data.get("drug") or {}).items():
        name = key.strip().lower()
        where = f"drug.{key}"
        klass = raw.get("class")
        if klass not in CLASSES:
            raise DrugTableError(f"{path.name}: {where}.class: {klass!r} is not one of {', '.join(CLASSES)}")
        if not raw.get("source"):
            raise DrugTableError(f"{path.name}: {where}.source: every drug names its source")
        factor = raw.get("prednisone_factor")
        if (klass == "systemic_steroid") != (factor is not None):
            raise DrugTableError(f"{path.name}: {where}.prednisone_factor: given exactly for systemic steroids")
        if raw.get("rxcui") is not None and not raw.get("rxcui_source"):
            raise DrugTableError(f"{path.name}: {where}.rxcui_source: a code says where it was read")
        if raw.get("products") and not raw.get("products_source"):
            raise DrugTableError(f"{path.name}: {where}.products_source: a code says where it was read")
        entries[name] = DrugEntry(
            name=name,
            ingredients=_words(raw.get("ingredients"), f"{where}.ingredients") or (name,),
            rxcui=str(raw["rxcui"]) if raw.get("rxcui") is not None else None,
            products={str(k): str(v) for k, v in (raw.get("products") or {}).items()},
            synonyms=_words(raw.get("synonyms"), f"{where}.synonyms"),
            brands=_words(raw.get("brands"), f"{where}.brands"),
            salts=_words(raw.get("salts"), f"{where}.salts"),
            group=raw.get("group"),
            klass=klass,
            prednisone_factor=float(factor) if factor is not None else None,
            source=str(raw["source"]),
        )
    for e in entries.values():
        missing = [i for i in e.ingredients if i not in entries]
        if missing:
            raise DrugTableError(f"{path.name}: drug.{e.name}.ingredients: {', '.join(missing)} not in the table")
    salts = set(_words(names.get("salts"), "names.salts"))
    for e in entries.values():
        salts.update(e.salts)
    noise = frozenset(w for s in salts | set(_words(names.get("forms"), "names.forms"))
                      | set(_words(names.get("routes"), "names.routes"))
                      | set(_words(names.get("release"), "names.release")) for w in s.split())
    order_words = _order_words(path, _words(names.get("frequencies"), "names.frequencies"),
                               _words(names.get("intervals"), "names.intervals"))
    aliases: dict[str, str] = {}
    codes: dict[str, str] = {}
    for e in entries.values():
        for alias in (e.name, *e.synonyms, *e.brands):
            key = _squash(alias)
            other = aliases.setdefault(key, e.name)
            if other != e.name:
                raise DrugTableError(f"{path.name}: drug.{e.name}: the name {alias!r} is also drug.{other}'s")
            if key in noise or order_words.search(key):
                raise DrugTableError(f"{path.name}: drug.{e.name}: the name {alias!r} is or holds a word of [names] "
                                     "that is ignored (a form, route, release, frequency or interval word)")
        for code in ([e.rxcui] if e.rxcui else []) + list(e.products):
            other = codes.setdefault(code, e.name)
            if other != e.name:
                raise DrugTableError(f"{path.name}: drug.{e.name}: RxNorm code {code} is also drug.{other}'s")
    by_ingredients = {frozenset(e.ingredients): e.name for e in entries.values() if len(e.ingredients) > 1}
    known_groups = {e.group for e in entries.values() if e.group}
    group_names: dict[str, str] = {}
    for group, raw in (data.get("groups") or {}).items():
        if group not in known_groups or not raw.get("source"):
            raise DrugTableError(f"{path.name}: groups.{group}: not the group of any drug, or no source")
        for alias in (group, *_words(raw.get("names"), f"groups.{group}.names")):
            key = _squash(alias)
            if key in aliases:
                raise DrugTableError(f"{path.name}: groups.{group}: {alias!r} is also drug.{aliases[key]}'s name")
            group_names[key] = group
    return DrugTable(
        entries=entries,
        aliases=aliases,
        codes=codes,
        noise=noise,
        order_words=order_words,
        non_systemic=frozenset(_words(names.get("non_systemic_forms"), "names.non_systemic_forms")),
        by_ingredients=by_ingredients,
        group_names=group_names,
    )


def _order_words(path: Path, frequencies: tuple[str, ...], intervals: tuple[str, ...]) -> re.Pattern[str]:
    """One pattern for the frequency words and phrases and the interval patterns of [names]: each
    matches as whole words only (never inside a word: "bd" is not in "abdomen")."""
    for i, pattern in enumerate(intervals):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise DrugTableError(f"{path.name}: names.intervals[{i}]: {pattern!r} is not a regular expression ({exc})") from exc
    alternatives = [r"\s+".join(map(re.escape, f.split())) for f in sorted(frequencies, key=len, reverse=True)]
    return re.compile(rf"(?<![a-z0-9])(?:{'|'.join([*intervals, *alternatives])})(?![a-z0-9])")


@lru_cache(maxsize=1)
def drug_table() -> DrugTable:
    """The table of drugs.toml, read once per process."""
    return _load()


# --- reading a name ---------------------------------------------------------------------------

_SPACE = re.compile(r"\s+")
_BRACKETED = re.compile(r"\(([^()]*)\)|\[([^\[\]]*)\]")
# An RxNorm pack, "{4 (amoxicillin 500 MG Oral Capsule) / 2 (lansoprazole 30 MG ...) } Pack": the
# parenthesised parts inside the braces are its components, never alternative names.
_PACK = re.compile(r"\{([^{}]*)\}")
_COMPONENT = re.compile(r"\(([^()]*)\)")
_UNIT = r"(?:mg|g|gm|gram|grams|mcg|µg|ug|ng|ml|l|meq|mmol|unt|units?|iu|%|actuat|hr|hrs|h|kg|dose|day|cell|cells)"
# "5 MG/ML", "0.025 MG/HR", "40000 UNT/ML": a unit fraction, never a combination's "/".
_UNIT_FRACTION = re.compile(rf"\b{_UNIT}\s*/\s*(?:\d+(?:\.\d+)?\s*)?{_UNIT}\b")
_STRENGTH = re.compile(rf"(?<![a-z])\d+(?:[.,]\d+)?\s*{_UNIT}?(?![a-z])")
_SEPARATORS = re.compile(r"\s*(?:/|\+|&|,|;|\band\b|\bwith\b)\s*")
_VEHICLE = re.compile(r"\s+in\s+")
_CODE_WORD = re.compile(r"^(?:nda|anda|bla)\d+$")


def _squash(text: str) -> str:
    """Lower case, compatibility-normalised, spacing collapsed."""
    t = unicodedata.normalize("NFKC", text).lower()
    return _SPACE.sub(" ", t).strip(" .,;:-")


@dataclass(frozen=True)
class Resolution:
    """What a drug name or code as received names."""

    text: str  # as received
    name: str  # the name stored and shown: the table's generic name, else the name as written (cleaned)
    entries: tuple[str, ...]  # the table entries named (a combination product is one entry)
    ingredients: frozenset[str]  # their ingredients (table names)
    unknown: frozenset[str]  # parts not in the table, kept as written (cleaned)
    non_systemic_form: bool  # a topical/inhaled/... dose form is named ("Topical Cream")
    by_code: bool = False  # an RxNorm code of the table decided (at least part of) it
    named_group: str | None = None  # the name is a whole cross-reactivity group ("sulfonamide antibacterial")

    @property
    def resolved(self) -> bool:
        """Every part of the name is a drug of the table (or the name of a whole group)."""
        return (bool(self.entries) or self.named_group is not None) and not self.unknown

    @property
    def groups(self) -> frozenset[str]:
        t = drug_table()
        names = set(self.entries) | set(self.ingredients)
        found = {g for n in names if (g := t.entries[n].group) is not None}
        return frozenset(found | ({self.named_group} if self.named_group else set()))

    @property
    def classes(self) -> frozenset[str]:
        t = drug_table()
        return frozenset(t.entries[n].klass for n in set(self.entries) | set(self.ingredients))

    def has_class(self, klass: str) -> bool:
        return klass in self.classes


def _alias(words: list[str]) -> str | None:
    t = drug_table()
    return t.aliases.get(" ".join(words)) if words else None


def _strip_suffixes(word: str, noise: frozenset[str]) -> str:
    """``word`` without the hyphenated noise pieces at its end ("tegretol-xr" -> "tegretol");
    "carbamazepine-resistant" and "xr" are kept as they are."""
    pieces = word.split("-")
    while len(pieces) > 1 and (pieces[-1] in noise or not pieces[-1]):
        pieces.pop()
    return "-".join(pieces)


def _part(text: str) -> tuple[list[str], list[str], bool]:
    """(entries, unknown parts, non-systemic form) of one ingredient's text."""
    t = drug_table()
    whole = t.aliases.get(text)
    if whole is not None:
        return [whole], [], False
    tokens = text.split()
    non_systemic = any(w in t.non_systemic for w in tokens)
    kept = [w for w in tokens if w not in t.noise and not _CODE_WORD.match(w) and not w[0].isdigit()]
    kept = [w.strip(".,;:-") for w in kept if w.strip(".,;:-")]
    if not kept:
        return [], [], non_systemic
    hit = _alias(kept)
    if hit is not None:
        return [hit], [], non_systemic
    # A release suffix or form word after a hyphen is ignored like a separate one ("Tegretol-XR",
    # "Bactrim-DS"); only at the end of a word, and never the whole word ("XR" alone names no drug).
    kept = [_strip_suffixes(w, t.noise) for w in kept]
    hit = _alias(kept)
    if hit is not None:
        return [hit], [], non_systemic
    # A hyphenated name is split only when every piece is a known drug ("trimethoprim-sulfamethoxazole"
    # is a synonym already; "vancomycin-resistant" is not vancomycin).
    if len(kept) == 1 and "-" in kept[0]:
        pieces = [p for p in kept[0].split("-") if p]
        found = [t.aliases.get(p) for p in pieces]
        if len(pieces) > 1 and all(found):
            return [f for f in found if f], [], non_systemic
    return [], [" ".join(kept)], non_systemic


def _read(text: str) -> tuple[list[str], list[str], bool]:
    """(entries, unknown parts, non-systemic form) of a name without its bracketed text."""
    # Frequency words, intervals and durations first: "q12h" is no strength "12h", "in the morning"
    # no vehicle.
    s = drug_table().order_words.sub(" ", text)
    s = _VEHICLE.split(s, maxsplit=1)[0]
    s = _UNIT_FRACTION.sub(" ", s)
    s = _STRENGTH.sub(" ", s)
    s = s.replace("{", " ").replace("}", " ")
    entries: list[str] = []
    unknown: list[str] = []
    non_systemic = False
    for raw in _SEPARATORS.split(s):
        part = _squash(raw)
        if not part:
            continue
        e, u, n = _part(part)
        entries += e
        unknown += u
        non_systemic = non_systemic or n
    return entries, unknown, non_systemic


def _alternatives(text: str) -> list[str]:
    """The text without its bracketed parts, then each bracketed part read the same way (a brand
    within an alternative name: "(methylprednisolone 4 MG Oral Tablet [Medrol])")."""
    inner = [a or b for a, b in _BRACKETED.findall(text)]
    return [_BRACKETED.sub(" ", text), *(alt for part in inner for alt in _alternatives(part))]


@lru_cache(maxsize=8192)
def _resolve_text(text: str) -> Resolution:
    t = drug_table()
    squashed = _squash(text)
    if not squashed:
        return Resolution(text, "", (), frozenset(), frozenset(), False)
    whole = t.aliases.get(squashed)
    if whole is not None:
        return _resolution(text, [whole], [], False)
    unpacked = _PACK.sub(lambda m: " " + _COMPONENT.sub(r" \1 ", m.group(1)) + " ", squashed)
    main = _BRACKETED.sub(" ", unpacked)
    group = t.group_names.get(squashed) or t.group_names.get(" ".join(
        w for w in main.split() if w not in t.noise and not w[0].isdigit()))
    if group is not None:
        return Resolution(text, group, (), frozenset(), frozenset(), False, named_group=group)
    readings = [_read(c) for c in _alternatives(unpacked)]
    entries = [e for r in readings for e in r[0]]
    non_systemic = any(r[2] for r in readings)
    if entries:
        # Bracketed text is an alternative name: a reading that names no drug of the table ("(human)",
        # "(PF)", an unknown brand beside its generic) is not an unresolved ingredient.
        unknown = [u for r in readings if r[0] for u in r[1]]
    else:
        unknown = [u for r in readings for u in r[1]]
    if not entries and not unknown:
        # Nothing but strength and form words: kept as written.
        unknown = [squashed]
    return _resolution(text, entries, unknown, non_systemic)


def _resolution(text: str, entries: Iterable[str], unknown: Iterable[str], non_systemic: bool, by_code: bool = False) -> Resolution:
    t = drug_table()
    named = tuple(dict.fromkeys(entries))
    ingredients = frozenset(i for e in named for i in t.entries[e].ingredients)
    unknown_set = frozenset(u for u in unknown if u)
    if len(named) > 1:
        combo = t.by_ingredients.get(ingredients)
        if combo is not None:
            named = (combo,)
    if named and not unknown_set:
        name = named[0] if len(named) == 1 else " / ".join(sorted(named))
    else:
        name = " / ".join([*sorted(named), *sorted(unknown_set)])
    # Never cut: a name too long to store is refused by intake.drug_name, naming its field.
    return Resolution(text, name, named, ingredients, unknown_set, non_systemic, by_code)


def resolve(name: str | None, code: str | None = None) -> Resolution:
    """The drug a name (and optionally an RxNorm code) as received names. Cached."""
    return resolve_coded(name, ((None, code),) if code else ())


@lru_cache(maxsize=8192)
def resolve_coded(name: str | None, codings: tuple[tuple[str | None, str], ...] = ()) -> Resolution:
    """The drug named by a text and (system, code) pairs: RxNorm codes of the table first; the
    name's ingredients count as well (the union: a culprit is never missed). A coding whose system
    is given and is not RxNorm is ignored."""
    t = drug_table()
    by_code = [
        t.codes[str(code).strip()]
        for system, code in codings
        if (system is None or system.strip().lower() in RXNORM_SYSTEMS) and str(code).strip() in t.codes
    ]
    text = _resolve_text(name or "")
    if not by_code:
        return text
    entries = [*by_code, *text.entries]
    return _resolution(name or "", entries, [], text.non_systemic_form, by_code=True)


# --- what the rules and the importers ask ------------------------------------------------------


def normalise_drug(name: str) -> str:
    """The name stored for a drug as entered: the table's generic name, else the name as written
    (lower case, strength and form removed). Empty for an empty name."""
    return resolve(name).name


def drugs_of_class(klass: str) -> tuple[str, ...]:
    """Generic names of the table's drugs of one class, in table order (messages are composed
    from this, never written out by hand)."""
    return tuple(e.name for e in drug_table().entries.values() if e.klass == klass)


def is_systemic_route(route: str | None) -> bool:
    """Systemic unless the route is topical (PRODUCT.md §5: 'route not topical')."""
    return (route or "").strip().lower() not in TOPICAL_ROUTES


def steroid_factor(drug: str, route: str | None = None, as_entered: str | None = None) -> float | None:
    """The prednisone-equivalence factor of a systemic corticosteroid row, else None.

    Systemic: the recorded route is not topical; with no route recorded, the dose form named in the
    drug as entered is not a topical/inhaled/... form ("Hydrocortisone 1 % Topical Cream").
    Source: PRODUCT.md §5 definition; factors Meikle & Tyler 1977 (CLINICAL_REFERENCE.md §4).
    """
    r = resolve(drug)
    if len(r.entries) != 1 or r.unknown:
        return None
    factor = drug_table().entries[r.entries[0]].prednisone_factor
    if factor is None:
        return None
    if route and route.strip():
        return factor if is_systemic_route(route) else None
    if r.non_systemic_form or (as_entered and resolve(as_entered).non_systemic_form):
        return None
    return factor


def prednisone_factor(drug: str) -> float | None:
    """The prednisone-equivalence factor of a drug name (route not considered)."""
    r = resolve(drug)
    if len(r.entries) != 1:
        return None
    return drug_table().entries[r.entries[0]].prednisone_factor


def second_line_kind(drug: str) -> str | None:
    """'ivig' or 'cyclosporine' for a second-line treatment of DRESS (CLINICAL_REFERENCE.md §4)."""
    for klass in ("ivig", "cyclosporine"):
        if resolve(drug).has_class(klass):
            return klass
    return None


def second_line_label(kind: str) -> str:
    """How a second-line treatment (``second_line_kind``) is written: 'IVIG', 'cyclosporine'."""
    return "IVIG" if kind == "ivig" else kind


def group_of(drug: str) -> str | None:
    """The cross-reactivity group of a drug (the first, for a combination), or None."""
    groups = sorted(resolve(drug).groups)
    return groups[0] if groups else None


@lru_cache(maxsize=8192)
def cross_reacts(drug: str, culprit: str) -> str | None:
    """Why ``drug`` must not be given to a patient whose culprit is ``culprit``, or None.

    The same ingredient (a combination product shares its ingredients with each of them), the same
    cross-reactivity group (PRODUCT.md §5), or, for names not in the table, the same name once
    strength and form are removed. Never a substring.
    """
    d, c = resolve(drug), resolve(culprit)
    if not d.name or not c.name:
        return None
    shared = sorted(d.ingredients & c.ingredients)
    if shared:
        if d.ingredients == c.ingredients:
            return f"{drug} is the culprit drug {culprit}" + (f" ({c.name})" if c.name != _squash(culprit) else "")
        return f"{drug} contains {', '.join(shared)}, an ingredient of the culprit drug {culprit}"
    same_name = sorted(d.unknown & c.unknown)
    if same_name:
        if d.unknown == c.unknown and not d.entries and not c.entries:
            return f"{drug} is the culprit drug {culprit}" + (f" ({same_name[0]})" if same_name[0] != _squash(culprit) else "")
        return f"{drug} contains {', '.join(same_name)}, named in the culprit drug {culprit}"
    groups = sorted(d.groups & c.groups)
    if groups:
        return f"{drug} is in the same cross-reactivity group as {culprit} ({groups[0]})"
    return None


# Derived views of the table, for callers that need the set (never a second copy of the facts).
PREDNISONE_EQUIVALENCE: dict[str, float] = {
    e.name: e.prednisone_factor for e in drug_table().entries.values() if e.prednisone_factor is not None
}
PROTON_PUMP_INHIBITORS: frozenset[str] = frozenset(drugs_of_class("ppi"))
SECOND_LINE: frozenset[str] = frozenset(drugs_of_class("ivig") + drugs_of_class("cyclosporine"))
CROSS_REACTIVITY_GROUPS: dict[str, frozenset[str]] = {
    g: frozenset(e.name for e in drug_table().entries.values() if e.group == g)
    for g in dict.fromkeys(e.group for e in drug_table().entries.values() if e.group)
}
