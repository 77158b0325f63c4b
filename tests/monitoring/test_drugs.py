"""Drug names (PRODUCT.md §5): brand names and synonyms map to generics, prednisone equivalence,
cross-reactivity groups, systemic routes."""

from __future__ import annotations

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
