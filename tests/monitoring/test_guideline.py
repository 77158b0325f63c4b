"""The guideline profile: complete, sourced, labelled, adaptable, and refusing bad files by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitoring.guideline import (
    ALERT_CODES,
    BASES,
    DEFAULT_PROFILE_PATH,
    PROFILE_ENV,
    THRESHOLD_RANGES,
    ProfileError,
    default_profile,
    load_profile,
)


def test_default_profile_is_complete_and_sourced() -> None:
    p = default_profile()
    assert p.name == "default" and p.version
    assert set(p.thresholds) == set(THRESHOLD_RANGES)
    for key, t in p.thresholds.items():
        assert t.basis in BASES, key
        assert t.source.strip() and t.label.strip() and t.unit.strip(), key
    assert set(p.alerts) == set(ALERT_CODES)
    assert all(a.source and a.title for a in p.alerts.values())


@pytest.mark.parametrize(
    ("key", "value", "unit"),
    [
        ("uln_alt", 40, "U/L"),
        ("uln_ast", 40, "U/L"),
        ("uln_alp", 120, "U/L"),
        ("uln_bilirubin", 1.2, "mg/dL"),
        ("uln_creatinine", 1.2, "mg/dL"),
        ("uln_troponin_t", 14, "ng/L"),
        ("uln_troponin_i", 26, "ng/L"),
        ("hepatic_alt_uln_multiple", 2, "x ULN"),
        ("renal_creatinine_baseline_multiple", 1.5, "x baseline"),
        ("eosinophils_moderate", 0.7, "10^9/L"),
        ("eosinophils_high", 1.5, "10^9/L"),
        ("ferritin_high", 500, "ng/mL"),
        ("ferritin_critical", 3000, "ng/mL"),
        ("icu_bsa_pct", 30, "%"),
        ("icu_min_organs", 2, "organs"),
        ("stalled_response_day", 7, "days"),
        ("stalled_fraction", 0.8, "fraction of start value"),
        ("fever_c", 38.5, "Cel"),
        ("start_value_window_days", 2, "days"),
        ("min_taper_days", 28, "days"),
        ("relapse_flare_multiple", 1.5, "x lowest since course start"),
        ("patch_test_months_after_resolution", 6, "calendar months"),
        ("patch_test_steroid_mg", 10, "mg/day prednisone-equivalent"),
        ("patch_test_days_off_steroid", 28, "days"),
        ("ivig_total_dose_min_g_per_kg", 1, "g/kg"),
        ("ivig_total_dose_max_g_per_kg", 2, "g/kg"),
    ],
)
def test_default_values_match_the_specification(key: str, value: float, unit: str) -> None:
    t = default_profile().threshold(key)
    assert t.value == value and t.unit == unit


def test_labels_of_basis_follow_the_clinical_reference() -> None:
    p = default_profile()
    assert p.threshold("stalled_response_day").basis == "design choice"
    assert p.threshold("stalled_fraction").basis == "design choice"
    assert p.threshold("relapse_flare_multiple").basis == "default (UNCONFIRMED)"
    assert p.threshold("min_taper_days").basis == "product requirement"
    assert all(p.threshold(k).basis == "default (UNCONFIRMED)" for k in THRESHOLD_RANGES if k.startswith("uln_"))
    assert p.threshold("eosinophils_high").basis == "sourced"


def test_default_uln_of_a_test_and_none_for_a_test_without_one() -> None:
    p = default_profile()
    assert p.default_uln("alt") == 40
    assert p.default_uln("troponin_i") == 26
    assert p.default_uln("ferritin") is None


# Numbers the engine modules may contain: arithmetic, not guideline thresholds (0 and 1; round()
# digits; 100 for percentages; float tolerances; 12 months a year; cache sizes).
_ARITHMETIC = {
    "rules.py": {0, 1, 2, 100, 1e-9, 4096},
    "steroids.py": {0, 1, 3, 6, 1e-3, 0.01, 4096},
    "summary.py": {1, 12},
    "limits.py": {0, 1e-9},
}


@pytest.mark.parametrize("module", sorted(_ARITHMETIC))
def test_no_engine_module_hard_codes_a_guideline_number(module: str) -> None:
    """Every threshold reaches the rules through the profile: the only numeric literals in the
    code (docstrings aside) are arithmetic."""
    import ast

    tree = ast.parse((Path(__file__).resolve().parents[2] / "monitoring" / module).read_text(encoding="utf-8"))
    numbers = {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, int | float) and not isinstance(n.value, bool)
    }
    assert numbers <= _ARITHMETIC[module], sorted(numbers - _ARITHMETIC[module])


def _write(tmp_path: Path, text: str, name: str = "unit.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_unit_profile_extends_default(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[profile]\nname = "ward 7"\nversion = "3"\nextends = "default"\n\n'
        "[thresholds.min_taper_days]\nvalue = 42\nsource = \"Ward 7 protocol\"\nbasis = \"design choice\"\n",
    )
    p = load_profile(path)
    assert p.name == "ward 7" and p.version == "3"
    assert p.value("min_taper_days") == 42 and p.threshold("min_taper_days").source == "Ward 7 protocol"
    assert p.threshold("min_taper_days").unit == "days"  # inherited
    assert p.value("fever_c") == 38.5


def test_environment_variable_selects_the_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, '[profile]\nname = "env"\nversion = "1"\nextends = "default"\n')
    monkeypatch.setenv(PROFILE_ENV, str(path))
    assert load_profile().name == "env"
    monkeypatch.delenv(PROFILE_ENV)
    assert load_profile().path == DEFAULT_PROFILE_PATH


def test_a_complete_copy_of_the_default_loads(tmp_path: Path) -> None:
    text = DEFAULT_PROFILE_PATH.read_text(encoding="utf-8").replace('name = "default"', 'name = "copy"')
    assert load_profile(_write(tmp_path, text)).name == "copy"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[thresholds.hepatc_alt_uln_multiple]\nvalue = 3\n", "thresholds.hepatc_alt_uln_multiple: unknown key"),
        ('[thresholds.fever_c]\nvalue = "high"\n', "thresholds.fever_c.value: value 'high': must be a number"),
        ("[thresholds.fever_c]\nvalue = 48\n", "thresholds.fever_c.value: value 48: outside the plausible range"),
        ('[thresholds.uln_creatinine]\nvalue = 106\nunit = "umol/L"\n', "thresholds.uln_creatinine.unit: value 'umol/L': must be 'mg/dL'"),
        ('[thresholds.fever_c]\nbasis = "folklore"\n', "thresholds.fever_c.basis: value 'folklore'"),
        ("[thresholds.min_taper_days]\nvalue = 27.5\n", "thresholds.min_taper_days.value: value 27.5: must be a whole number"),
        ('[thresholds.fever_c]\nsource = ""\n', "thresholds.fever_c.source: missing"),
        ("[thresholds.ferritin_high]\nvalue = 4000\n", "thresholds.ferritin_high.value: must not exceed thresholds.ferritin_critical"),
        ('[alerts.NEW_CODE]\ntitle = "x"\n', "alerts.NEW_CODE.source: missing"),
        ("[thresholds.fever_c]\ncolour = 1\n", "thresholds.fever_c.colour: unknown field"),
        ("[extras]\nx = 1\n", "extras: unknown section"),
    ],
)
def test_invalid_unit_profile_is_refused_naming_the_key(tmp_path: Path, body: str, expected: str) -> None:
    path = _write(tmp_path, '[profile]\nname = "bad"\nversion = "1"\nextends = "default"\n\n' + body)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_incomplete_profile_without_extends_names_every_missing_key(tmp_path: Path) -> None:
    path = _write(tmp_path, '[profile]\nname = "thin"\nversion = "1"\n\n[thresholds.fever_c]\nvalue = 38\n')
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    text = str(info.value)
    assert "thresholds.uln_alt: missing" in text and "alerts.HEPATIC_INVOLVEMENT: missing" in text
    assert "thresholds.fever_c.unit: missing" in text


def test_unreadable_profiles(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="file not found"):
        load_profile(tmp_path / "nope.toml")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(_write(tmp_path, "[profile\nname ="))
    loop = _write(tmp_path, '[profile]\nname = "a"\nversion = "1"\nextends = "loop.toml"\n', "loop.toml")
    with pytest.raises(ProfileError, match="circular"):
        load_profile(loop)


def test_edited_profile_is_read_again(tmp_path: Path) -> None:
    import os

    path = _write(tmp_path, '[profile]\nname = "v1"\nversion = "1"\nextends = "default"\n')
    assert load_profile(path).name == "v1"
    path.write_text('[profile]\nname = "v2"\nversion = "2"\nextends = "default"\n', encoding="utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert load_profile(path).name == "v2"
