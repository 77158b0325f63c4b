"""Real medication strings (tests/fixtures/drug_names/corpus.csv: Synthea output, eCQM value sets,
HL7/US Core/Cerner examples; README there) resolve to the ingredients written beside them; the
ones outside the drug table resolve to nothing and never cross-react with any culprit."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from monitoring import drugs

CORPUS = Path(__file__).parents[1] / "fixtures" / "drug_names" / "corpus.csv"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ROWS = list(csv.DictReader(CORPUS.open(encoding="utf-8")))
CULPRITS = drugs.drugs_of_class("culprit")


def _expected(row: dict[str, str]) -> frozenset[str]:
    return frozenset() if row["ingredients"] == "-" else frozenset(row["ingredients"].split(";"))


def test_the_corpus_is_large_and_varied() -> None:
    assert len(ROWS) >= 200
    known = [r for r in ROWS if _expected(r)]
    assert len(known) >= 100
    assert any(";" in r["ingredients"] for r in known)  # combination products
    assert any("[" in r["text"] or "(" in r["text"] for r in known)  # brands and alternative names


# issue 14: each drug the product acts on is read in real strings, not only in its own name
ACTED_ON = ("methylprednisolone", "prednisolone", "prednisone", "dexamethasone", "hydrocortisone", "omeprazole",
            "pantoprazole", "esomeprazole", "lansoprazole", "phenytoin", "lamotrigine", "allopurinol", "sulfamethoxazole",
            "vancomycin", "minocycline", "abacavir", "ivig", "cyclosporine", "carbamazepine")


@pytest.mark.parametrize("drug", ACTED_ON)
def test_each_drug_acted_on_has_several_real_strings(drug: str) -> None:
    rows = [r for r in ROWS if drug in _expected(r)]
    assert len(rows) >= 3, drug
    assert len({r["source"] for r in rows}) >= 2, drug  # read in more than one source


@pytest.mark.parametrize("row", ROWS, ids=[f"{i}:{r['text'][:40]}" for i, r in enumerate(ROWS)])
def test_each_string_resolves_to_its_ingredients_by_text(row: dict[str, str]) -> None:
    r = drugs.resolve(row["text"])
    expected = _expected(row)
    assert r.ingredients == expected, row
    if expected:
        assert r.resolved and r.name in drugs.drug_table().entries
    else:
        assert not r.resolved and not r.groups and not r.classes
        assert r.name  # kept as written, never empty
        for culprit in CULPRITS:
            assert drugs.cross_reacts(row["text"], culprit) is None, (row["text"], culprit)


@pytest.mark.parametrize("row", [r for r in ROWS if r["rxnorm_code"]], ids=lambda r: r["rxnorm_code"])
def test_each_coded_string_resolves_the_same_with_its_code(row: dict[str, str]) -> None:
    coded = drugs.resolve_coded(row["text"], ((RXNORM, row["rxnorm_code"]),))
    assert coded.ingredients == _expected(row)
    if row["rxnorm_code"] in drugs.drug_table().codes:
        assert drugs.resolve_coded("", ((RXNORM, row["rxnorm_code"]),)).ingredients == _expected(row)


def test_resolving_the_whole_corpus_is_fast_once_cached() -> None:
    import time

    texts = [r["text"] for r in ROWS]
    for t in texts:
        drugs.resolve(t)
    start = time.perf_counter()
    for _ in range(20):
        for t in texts:
            drugs.resolve(t)
    cached = time.perf_counter() - start
    drugs._resolve_text.cache_clear()
    drugs.resolve_coded.cache_clear()
    start = time.perf_counter()
    for t in texts:
        drugs.resolve(t)
    cold = time.perf_counter() - start
    # a ratio in one run, no absolute time: 20 cached passes cost less than 5 cold ones (measured: ~1/50)
    assert cached < cold * 5
