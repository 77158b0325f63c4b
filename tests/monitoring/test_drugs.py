"""Drug names (PRODUCT.md §5): brand names and synonyms map to generics, prednisone equivalence,
cross-reactivity groups, systemic routes."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitoring import drugs


@pytest.mark.parametrize(
    ("entered", "generic"),
    [
        ("Tegretol", "carbamazepine"),
        ("TRILEPTAL", "oxcarbazepine"),
        ("dilantin", "phenytoin"),
        ("Lamictal", "lamotrigine"),
        ("Zyloprim", "allopurinol"),
        ("Bactrim", "trimethoprim-sulfamethoxazole"),
        ("Septra", "trimethoprim-sulfamethoxazole"),
        ("co-trimoxazole", "trimethoprim-sulfamethoxazole"),
        ("Ciclosporin", "cyclosporine"),
        ("Intravenous immunoglobulin", "ivig"),
        ("Solu-Medrol", "methylprednisolone"),
        ("Prednisone 5 MG Oral Tablet", "prednisone"),
        ("  prednisolone  ", "prednisolone"),
        ("Omeprazole 20 mg capsule", "omeprazole"),
        ("vancomycin", "vancomycin"),
    ],
)
def test_names_are_normalised(entered: str, generic: str) -> None:
    assert drugs.normalise_drug(entered) == generic


def test_empty_name_stays_empty() -> None:
    assert drugs.normalise_drug("") == "" and drugs.normalise_drug("   ") == ""


@pytest.mark.parametrize(
    ("drug", "factor"),
    [("prednisone", 1.0), ("prednisolone", 1.0), ("methylprednisolone", 1.25), ("Medrol", 1.25), ("dexamethasone", 6.67), ("hydrocortisone", 0.25), ("omeprazole", None)],
)
def test_prednisone_equivalence(drug: str, factor: float | None) -> None:
    assert drugs.prednisone_factor(drug) == factor


@pytest.mark.parametrize(
    ("drug", "culprit", "reacts"),
    [
        ("carbamazepine", "Tegretol", True),  # the culprit under its brand name
        ("oxcarbazepine", "carbamazepine", True),  # aromatic anticonvulsants
        ("Phenytoin", "lamotrigine", True),
        ("primidone", "phenobarbital", True),
        ("co-trimoxazole", "Bactrim", True),  # the same drug
        ("sulfasalazine", "sulfamethoxazole", True),
        ("oxypurinol", "allopurinol", True),
        ("levetiracetam", "carbamazepine", False),
        ("prednisone", "allopurinol", False),
        ("", "allopurinol", False),
    ],
)
def test_cross_reactivity(drug: str, culprit: str, reacts: bool) -> None:
    assert (drugs.cross_reacts(drug, culprit) is not None) is reacts


def test_groups_and_classes() -> None:
    assert drugs.group_of("Tegretol") == "aromatic anticonvulsants"
    assert drugs.group_of("vancomycin") is None
    assert drugs.PROTON_PUMP_INHIBITORS == {"omeprazole", "esomeprazole", "pantoprazole", "lansoprazole", "rabeprazole"}
    assert drugs.SECOND_LINE == {"ivig", "cyclosporine"}


@pytest.mark.parametrize(("route", "systemic"), [(None, True), ("oral", True), ("IV", True), ("topical", False), ("Cutaneous", False), ("inhaled", False)])
def test_topical_routes_are_not_systemic(route: str | None, systemic: bool) -> None:
    assert drugs.is_systemic_route(route) is systemic


# --- the resolver (PRODUCT.md §6 edition 2) ---------------------------------------------------


@pytest.mark.parametrize(
    ("received", "name", "ingredients"),
    [
        # issue 14: the strings that were missed
        ("Vancomycin Hydrochloride (VANCOMYCIN HYDROCHLORIDE)", "vancomycin", {"vancomycin"}),
        ("Vancomycin HCl 1 GM Injection", "vancomycin", {"vancomycin"}),
        ("carbamazepine (Tegretol) 200 mg tablet", "carbamazepine", {"carbamazepine"}),
        ("Tegretol XR", "carbamazepine", {"carbamazepine"}),
        ("Sulfamethoxazole 800 MG / Trimethoprim 160 MG Oral Tablet", "trimethoprim-sulfamethoxazole", {"sulfamethoxazole", "trimethoprim"}),
        ("Bactrim DS", "trimethoprim-sulfamethoxazole", {"sulfamethoxazole", "trimethoprim"}),
        # salts, forms, release suffixes, vehicles, brackets
        ("methylPREDNISolone sodium succinate 125 MG Injection", "methylprednisolone", {"methylprednisolone"}),
        ("pantoprazole sodium 40 MG Delayed Release Oral Tablet", "pantoprazole", {"pantoprazole"}),
        ("Esomeprazole 20 MG Delayed Release Oral Capsule [Nexium]", "esomeprazole", {"esomeprazole"}),
        ("vancomycin 1 g in dextrose 5 % 200 mL", "vancomycin", {"vancomycin"}),
        ("Lamictal XR 100 mg", "lamotrigine", {"lamotrigine"}),
        ("phenytoin sodium 100 MG Extended Release Oral Capsule [Dilantin]", "phenytoin", {"phenytoin"}),
        ("cycloSPORINE, modified 100 MG Oral Capsule", "cyclosporine", {"cyclosporine"}),
        ("Immune Globulin (Human) 10 % Injectable Solution", "ivig", {"ivig"}),
        ("Immune Globulin, Human 10% Injectable Solution", "ivig", {"ivig"}),
        ("ALLOPURINOL 300MG TAB", "allopurinol", {"allopurinol"}),
        ("dexamethasone 4 mg/mL injection", "dexamethasone", {"dexamethasone"}),
    ],
)
def test_ehr_names_resolve_to_their_ingredients(received: str, name: str, ingredients: set[str]) -> None:
    r = drugs.resolve(received)
    assert (r.name, set(r.ingredients), r.resolved) == (name, ingredients, True)


@pytest.mark.parametrize(
    "received",
    [
        "vancomycin-resistant enterococcus",  # a note, not the drug
        "Hepatitis B immune globulin",  # a hyperimmune globulin is not IVIG
        "Rho(D) immune globulin",
        "anti-thymocyte globulin (rabbit)",
        "acetaminophen 325 MG Oral Tablet",
        "Amoxicillin 875 MG / Clavulanate 125 MG Oral Tablet",
        "carbamazepine-like rash",
        "800 MG",
    ],
)
def test_names_outside_the_table_never_resolve(received: str) -> None:
    r = drugs.resolve(received)
    assert not r.resolved and not r.ingredients and not r.groups and not r.classes
    assert drugs.steroid_factor(received) is None and drugs.second_line_kind(received) is None


def test_unresolved_name_is_kept_as_written_and_stable() -> None:
    r = drugs.resolve("Acetaminophen 325 MG / HYDROcodone Bitartrate 7.5 MG Oral Tablet")
    assert r.name == "acetaminophen / hydrocodone" and r.unknown == {"acetaminophen", "hydrocodone"}
    assert drugs.normalise_drug(r.name) == r.name  # a stored name reads back as itself


@pytest.mark.parametrize(
    ("drug", "culprit", "reacts"),
    [
        ("Sulfamethoxazole 800 MG / Trimethoprim 160 MG Oral Tablet", "Bactrim", True),
        ("Tegretol XR 400 mg", "carbamazepine", True),
        ("Vancomycin Hydrochloride (VANCOMYCIN HYDROCHLORIDE)", "vancomycin", True),
        ("trimethoprim 100 MG Oral Tablet", "Bactrim", True),  # an ingredient of the culprit product
        ("sulfadiazine", "Septra", True),  # same group
        ("Amoxicillin 500 MG Oral Tablet", "amoxicillin", True),  # outside the table: same name still matches
        ("acetaminophen 325 MG Oral Tablet", "carbamazepine", False),
        ("vancomycin-resistant enterococcus", "vancomycin", False),
        ("dapsone 100 MG Oral Tablet", "sulfamethoxazole", False),  # no group given for dapsone by PRODUCT.md §5
        ("trimethoprim", "sulfamethoxazole", False),  # trimethoprim alone is not a sulfonamide
    ],
)
def test_cross_reactivity_of_ehr_names(drug: str, culprit: str, reacts: bool) -> None:
    assert (drugs.cross_reacts(drug, culprit) is not None) is reacts


def test_rxnorm_codes_resolve_alone_and_with_a_name() -> None:
    assert drugs.resolve("", "2002").name == "carbamazepine"  # ingredient code (CPIC)
    assert drugs.resolve("", "198335").name == "trimethoprim-sulfamethoxazole"  # clinical drug (eCQM)
    both = drugs.resolve_coded("Dilantin 100 mg", (("http://www.nlm.nih.gov/research/umls/rxnorm", "2002"),))
    assert both.ingredients == {"carbamazepine", "phenytoin"}  # disagreeing code and text: both count
    other_system = drugs.resolve_coded("", (("http://snomed.info/sct", "2002"),))
    assert not other_system.resolved


def test_topical_form_is_not_a_systemic_steroid() -> None:
    assert drugs.steroid_factor("Hydrocortisone 10 MG/ML Topical Cream") is None
    assert drugs.steroid_factor("hydrocortisone", None, "Hydrocortisone 1 % Topical Cream") is None
    assert drugs.steroid_factor("hydrocortisone", "oral", "Hydrocortisone 1 % Topical Cream") == 0.25  # the route recorded wins
    assert drugs.steroid_factor("Solu-Medrol 125 mg IV") == 1.25
    assert drugs.steroid_factor("prednisone", "topical") is None


def test_every_code_of_the_table_says_where_it_was_read() -> None:
    import tomllib

    data = tomllib.loads(drugs.TABLE_PATH.read_text(encoding="utf-8"))
    sources = set(data["sources"])
    for name, entry in data["drug"].items():
        assert entry.get("source"), name
        for key in ("rxcui_source", "products_source"):
            if key in entry:
                assert any(s in entry[key] for s in sources), f"{name}.{key} names no [sources] key"
    assert "RxNav" in drugs.TABLE_PATH.read_text(encoding="utf-8").split("[sources]")[0]


def test_ppi_message_and_classes_come_from_the_table() -> None:
    assert drugs.drugs_of_class("ppi") == ("omeprazole", "esomeprazole", "pantoprazole", "lansoprazole", "rabeprazole")
    assert set(drugs.PREDNISONE_EQUIVALENCE) == set(drugs.drugs_of_class("systemic_steroid"))


@pytest.mark.parametrize("culprit", ["sulfonamide antibacterial", "Product containing sulfonamide (product)", "Sulfa drugs"])
def test_a_culprit_recorded_as_a_whole_group_matches_its_drugs(culprit: str) -> None:
    # US Core's example allergy names the class, not a drug: Bactrim must still be caught
    r = drugs.resolve(culprit)
    assert r.resolved and r.groups == {"sulfonamide antibiotics"} and not r.ingredients
    assert drugs.normalise_drug(culprit) == "sulfonamide antibiotics"
    assert drugs.cross_reacts("Sulfamethoxazole 800 MG / Trimethoprim 160 MG Oral Tablet", culprit) is not None
    assert drugs.cross_reacts("sulfasalazine 500 MG Oral Tablet", culprit) is not None
    assert drugs.cross_reacts("carbamazepine", culprit) is None
    assert drugs.cross_reacts("furosemide 40 MG Oral Tablet", culprit) is None
    assert drugs.steroid_factor(culprit) is None


def test_the_table_header_names_every_drug_without_an_rxnorm_code_and_ivig_first() -> None:
    """The table's legend says which drugs have no RxNorm ingredient code (IVIG above all: it is
    coded by product, so the resolver knows it by name only); kept equal to the entries."""
    import re

    header = drugs.TABLE_PATH.read_text(encoding="utf-8").split("\n[sources]")[0]
    block = header.split("WITHOUT AN RXNORM INGREDIENT CODE")[1].split("(tests/monitoring/test_drugs.py")[0]
    listed = {n for line in block.splitlines() if (m := re.match(r"#\s{3}([a-z][a-z, -]+):", line))
              for n in m.group(1).replace(" ", "").split(",")}
    without = {name for name, entry in drugs.drug_table().entries.items() if not entry.rxcui}
    assert listed == without
    assert "IVIG has no RxNorm ingredient code" in header
    r = drugs.resolve("Privigen 10 % Injectable Solution")
    assert r.resolved and r.has_class("ivig") and drugs.second_line_kind("immune globulin intravenous") == "ivig"


# --- issue 14, second review: release suffixes after a hyphen, brand form words, order words ----


@pytest.mark.parametrize(
    ("received", "name", "ingredients"),
    [
        ("Tegretol-XR", "carbamazepine", {"carbamazepine"}),
        ("Lamictal-XR", "lamotrigine", {"lamotrigine"}),
        ("carbamazepine-XR", "carbamazepine", {"carbamazepine"}),
        ("Minocin-XR", "minocycline", {"minocycline"}),
        ("Bactrim-DS", "trimethoprim-sulfamethoxazole", {"sulfamethoxazole", "trimethoprim"}),
        ("Orapred ODT", "prednisolone", {"prednisolone"}),
        ("Dilantin Infatabs", "phenytoin", {"phenytoin"}),
        ("Azulfidine EN-tabs", "sulfasalazine", {"sulfasalazine"}),
        ("Prilosec OTC", "omeprazole", {"omeprazole"}),
        ("Epzicom", "abacavir-lamivudine", {"abacavir", "lamivudine"}),
        ("Triumeq", "abacavir-dolutegravir-lamivudine", {"abacavir", "dolutegravir", "lamivudine"}),
        ("abacavir 600 MG / lamivudine 300 MG Oral Tablet", "abacavir-lamivudine", {"abacavir", "lamivudine"}),
        # frequency, route and duration words of an order
        ("carbamazepine 200 mg BID", "carbamazepine", {"carbamazepine"}),
        ("prednisone 5 mg PO daily", "prednisone", {"prednisone"}),
        ("Tegretol 200mg bd", "carbamazepine", {"carbamazepine"}),
        ("vancomycin 1 g IV q12h", "vancomycin", {"vancomycin"}),
        ("Tegretol-XR 200 mg BID", "carbamazepine", {"carbamazepine"}),
        ("vancomycin 125 mg PO q6h x 10 days", "vancomycin", {"vancomycin"}),
        ("dexamethasone 4 mg IV q 6 hr", "dexamethasone", {"dexamethasone"}),
        ("hydrocortisone 100 mg IV every 8 hours", "hydrocortisone", {"hydrocortisone"}),
        ("prednisolone 40 mg mane x 5 days", "prednisolone", {"prednisolone"}),
        ("lamotrigine 50 mg nocte", "lamotrigine", {"lamotrigine"}),
        ("allopurinol 100 mg at night", "allopurinol", {"allopurinol"}),
        ("omeprazole 20mg od", "omeprazole", {"omeprazole"}),
        ("pantoprazole 40 mg PO qAM", "pantoprazole", {"pantoprazole"}),
        ("esomeprazole 40 mg NG once daily", "esomeprazole", {"esomeprazole"}),
        ("methylprednisolone 1 g IV q24h for 3 days", "methylprednisolone", {"methylprednisolone"}),
        ("Bactrim DS 1 tab PO twice daily", "trimethoprim-sulfamethoxazole", {"sulfamethoxazole", "trimethoprim"}),
        ("phenytoin 100 mg TID", "phenytoin", {"phenytoin"}),
        ("minocycline 100 mg PO q12h", "minocycline", {"minocycline"}),
        ("lansoprazole 30 mg SL qPM", "lansoprazole", {"lansoprazole"}),
        ("prednisone 10 mg tds", "prednisone", {"prednisone"}),
        ("hydrocortisone 50 mg IM QID PRN", "hydrocortisone", {"hydrocortisone"}),
        ("prednisolone 5 mg qds in the morning", "prednisolone", {"prednisolone"}),
        ("allopurinol 300 mg QD", "allopurinol", {"allopurinol"}),
        ("vancomycin 1 g IV q8-12h", "vancomycin", {"vancomycin"}),
    ],
)
def test_suffixes_and_order_words_never_hide_the_drug(received: str, name: str, ingredients: set[str]) -> None:
    r = drugs.resolve(received)
    assert (r.name, set(r.ingredients), r.resolved) == (name, ingredients, True)


def test_a_culprit_given_as_tegretol_xr_cross_reacts_and_an_odt_steroid_counts() -> None:
    assert drugs.cross_reacts("Tegretol-XR", "carbamazepine") is not None
    assert drugs.cross_reacts("Tegretol-XR 200 mg BID", "carbamazepine") is not None
    assert drugs.cross_reacts("carbamazepine 200 mg BID", "Tegretol-XR") is not None
    assert drugs.cross_reacts("lamivudine 150 mg BID", "Epzicom") is not None  # an ingredient of the culprit product
    assert drugs.cross_reacts("Triumeq", "abacavir") is not None
    assert drugs.steroid_factor("Orapred ODT") == 1.0
    assert drugs.steroid_factor("prednisone 5 mg PO daily") == 1.0
    assert drugs.steroid_factor("budesonide inh") is None


@pytest.mark.parametrize(
    "received",
    ["XR", "BID", "PO daily", "q12h", "x 5 days", "carbamazepine-resistant", "carbamazepine-resistant seizures",
     "Tegretol-induced rash", "XR-DS"],
)
def test_noise_words_alone_or_in_a_note_name_no_drug(received: str) -> None:
    r = drugs.resolve(received)
    assert not r.resolved and not r.ingredients and not r.groups and not r.classes
    assert r.name  # kept as written
    for culprit in drugs.drugs_of_class("culprit"):
        assert drugs.cross_reacts(received, culprit) is None, culprit


@pytest.mark.parametrize(
    ("drug", "culprit"),
    [
        ("zonisamide 100 mg BID", "levetiracetam 500 mg BID"),  # outside the table: the order words make no match
        ("Advil PM", "Advil"),  # "PM" is no order word (diphenhydramine): not the same product
        ("vancomycin 1 g IV q12h", "carbamazepine 200 mg BID"),
        ("Prilosec OTC", "Prevacid OTC"),
        ("XR", "Tegretol-XR"),
        ("BID", "carbamazepine 200 mg BID"),
    ],
)
def test_order_words_never_make_two_drugs_match(drug: str, culprit: str) -> None:
    assert drugs.cross_reacts(drug, culprit) is None
    assert drugs.cross_reacts(culprit, drug) is None


def test_order_words_stand_as_whole_words_only() -> None:
    assert drugs.resolve("nystatin 100000 unit/mL").name == "nystatin"
    assert drugs.resolve("abdominal").name == "abdominal"  # "bd" is not in "abdomen"
    assert drugs.resolve("Advil PM").name == "advil pm"


def test_a_drug_named_like_an_ignored_word_is_refused(tmp_path: Path) -> None:
    text = drugs.TABLE_PATH.read_text(encoding="utf-8")
    for brand in ("BID", "XR", "PO", "Tegretol twice daily"):
        bad = tmp_path / "drugs.toml"
        bad.write_text(text.replace('brands = ["Tegretol",', f'brands = ["{brand}", "Tegretol",'), encoding="utf-8")
        with pytest.raises(drugs.DrugTableError, match="ignored"):
            drugs._load(bad)
    bad.write_text(text.replace("intervals = ['q", "intervals = ['(q"), encoding="utf-8")
    with pytest.raises(drugs.DrugTableError, match=r"names\.intervals\[0\]"):
        drugs._load(bad)


def test_a_packs_components_are_its_ingredients_not_alternative_names() -> None:
    # RxNorm packs (eCQM value sets): "(...)" inside "{...}" is a component, never an alternative name
    pack = "{4 (amoxicillin 500 MG Oral Capsule) / 2 (clarithromycin 500 MG Oral Tablet) / 2 (lansoprazole 30 MG Delayed Release Oral Capsule) } Pack"
    r = drugs.resolve(pack)
    assert r.ingredients == {"lansoprazole"} and r.unknown == {"amoxicillin", "clarithromycin"} and not r.resolved
    assert drugs.cross_reacts(pack, "amoxicillin") is not None  # a culprit outside the table, given in a pack
    assert drugs.cross_reacts(pack, "carbamazepine") is None
    medrol = drugs.resolve("{21 (methylprednisolone 4 MG Oral Tablet [Medrol]) } Pack [Medrol Dosepak]")
    assert medrol.resolved and medrol.ingredients == {"methylprednisolone"}
    assert drugs.steroid_factor("{21 (methylprednisolone 4 MG Oral Tablet [Medrol]) } Pack [Medrol Dosepak]") == 1.25


def test_a_salt_abbreviation_never_hides_the_drug() -> None:
    r = drugs.resolve("hydrocortisone sod succinate 100 mg in sterile water 2 mL injection")
    assert r.resolved and r.ingredients == {"hydrocortisone"}
