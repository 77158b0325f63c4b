"""Drug names: generic normalisation, brand names, classes the rules need, cross-reactivity.

Sources: PRODUCT.md §5 (prednisone-equivalence factors, cross-reactivity groups, brand names,
proton-pump inhibitors). Equivalence: Meikle & Tyler 1977 as tabulated in CLINICAL_REFERENCE.md §4
(prednisone 5 = prednisolone 5 = methylprednisolone 4 = dexamethasone 0.75 = hydrocortisone 20 mg).
Cross-reactivity of aromatic anticonvulsants: Knowles et al., Drug Saf 1999;21:489
(CLINICAL_REFERENCE.md §6).
"""

from __future__ import annotations

import re

# Brand name -> generic name (PRODUCT.md §5). Matching is case-insensitive.
BRAND_NAMES: dict[str, str] = {
    "tegretol": "carbamazepine",
    "trileptal": "oxcarbazepine",
    "dilantin": "phenytoin",
    "lamictal": "lamotrigine",
    "zyloprim": "allopurinol",
    "bactrim": "trimethoprim-sulfamethoxazole",
    "septra": "trimethoprim-sulfamethoxazole",
}

# Synonyms that name the same drug.
SYNONYMS: dict[str, str] = {
    "co-trimoxazole": "trimethoprim-sulfamethoxazole",
    "cotrimoxazole": "trimethoprim-sulfamethoxazole",
    "sulfamethoxazole-trimethoprim": "trimethoprim-sulfamethoxazole",
    "sulfamethoxazole/trimethoprim": "trimethoprim-sulfamethoxazole",
    "trimethoprim/sulfamethoxazole": "trimethoprim-sulfamethoxazole",
    "tmp-smx": "trimethoprim-sulfamethoxazole",
    "smx-tmp": "trimethoprim-sulfamethoxazole",
    "ciclosporin": "cyclosporine",
    "cyclosporin": "cyclosporine",
    "cyclosporin a": "cyclosporine",
    "intravenous immunoglobulin": "ivig",
    "immune globulin": "ivig",
    "immunoglobulin": "ivig",
    "immune globulin intravenous": "ivig",
    "iv immunoglobulin": "ivig",
    "salazopyrin": "sulfasalazine",
    "sulphasalazine": "sulfasalazine",
    "methylprednisolone sodium succinate": "methylprednisolone",
    "solu-medrol": "methylprednisolone",
    "medrol": "methylprednisolone",
    "decadron": "dexamethasone",
    "solu-cortef": "hydrocortisone",
    "deltasone": "prednisone",
}

# Prednisone-equivalence factors (PRODUCT.md §5): mg of drug × factor = mg prednisone.
PREDNISONE_EQUIVALENCE: dict[str, float] = {
    "prednisone": 1.0,
    "prednisolone": 1.0,
    "methylprednisolone": 1.25,
    "dexamethasone": 6.67,
    "hydrocortisone": 0.25,
}

PROTON_PUMP_INHIBITORS: frozenset[str] = frozenset(
    {"omeprazole", "esomeprazole", "pantoprazole", "lansoprazole", "rabeprazole"}
)
SECOND_LINE: frozenset[str] = frozenset({"ivig", "cyclosporine"})

CROSS_REACTIVITY_GROUPS: dict[str, frozenset[str]] = {
    "aromatic anticonvulsants": frozenset(
        {
            "carbamazepine",
            "oxcarbazepine",
            "eslicarbazepine",
            "phenytoin",
            "fosphenytoin",
            "phenobarbital",
            "primidone",
            "lamotrigine",
        }
    ),
    "sulfonamide antibiotics": frozenset(
        {"sulfamethoxazole", "trimethoprim-sulfamethoxazole", "sulfadiazine", "sulfasalazine"}
    ),
    "xanthine-oxidase inhibitors (allopurinol)": frozenset({"allopurinol", "oxypurinol"}),
}

TOPICAL_ROUTES: frozenset[str] = frozenset(
    {"topical", "cutaneous", "transdermal", "skin", "dermal", "ophthalmic", "otic", "inhaled", "inhalation", "nasal"}
)

# Strength/form words stripped from free-text medication names ("Prednisone 5 MG Oral Tablet").
_NOISE = re.compile(
    r"\b(\d+(\.\d+)?\s*(mg|g|mcg|ug|ml|%)(/\w+)?|oral|tablet|tablets|capsule|capsules|injection|"
    r"injectable|solution|suspension|intravenous|iv|po|delayed|release|extended|sodium|succinate|"
    r"acetate|phosphate|hydrochloride|hcl)\b"
)


def normalise_drug(name: str) -> str:
    """Lower-case generic name for a drug as entered: brand names and synonyms mapped."""
    n = re.sub(r"\s+", " ", (name or "").strip().lower())
    if not n:
        return n
    for table in (BRAND_NAMES, SYNONYMS):
        if n in table:
            return table[n]
    stripped = re.sub(r"\s+", " ", _NOISE.sub(" ", n)).strip(" ,-/")
    for table in (BRAND_NAMES, SYNONYMS):
        if stripped in table:
            return table[stripped]
    if stripped in PREDNISONE_EQUIVALENCE or stripped in PROTON_PUMP_INHIBITORS or stripped in SECOND_LINE:
        return stripped
    return stripped or n


def is_systemic_route(route: str | None) -> bool:
    """Systemic unless the route is topical (PRODUCT.md §5: 'route not topical')."""
    return (route or "").strip().lower() not in TOPICAL_ROUTES


def prednisone_factor(drug: str) -> float | None:
    return PREDNISONE_EQUIVALENCE.get(normalise_drug(drug))


def group_of(drug: str) -> str | None:
    d = normalise_drug(drug)
    for name, members in CROSS_REACTIVITY_GROUPS.items():
        if d in members:
            return name
    return None


def cross_reacts(drug: str, culprit: str) -> str | None:
    """Why ``drug`` must not be given to a patient whose culprit is ``culprit``, or None.

    Same drug (after brand/synonym mapping), or the same cross-reactivity group (PRODUCT.md §5).
    """
    d, c = normalise_drug(drug), normalise_drug(culprit)
    if not d or not c:
        return None
    if d == c:
        return f"{drug} is the culprit drug {culprit}"
    gd, gc = group_of(d), group_of(c)
    if gd is not None and gd == gc:
        return f"{drug} is in the same cross-reactivity group as {culprit} ({gd})"
    return None
