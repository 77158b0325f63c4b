"""The guideline profile: every threshold and parameter of PRODUCT.md §5, each with its source.

The profile is a TOML file (default: ``monitoring/profiles/default.toml``). A unit adapts
thresholds without code changes by pointing ``DRESS_GUIDELINE_PROFILE`` (or ``--profile``) at its
own file; that file may say ``extends = "default"`` under ``[profile]`` and give only what it
changes. A rule reads its numbers here and never hard-codes one.

Each threshold carries a ``basis`` so the product can label it honestly: 'product requirement'
(the product's guideline text), 'sourced' (CLINICAL_REFERENCE.md has a source),
'default (UNCONFIRMED)' (CLINICAL_REFERENCE.md marks it UNCONFIRMED) or 'design choice'.

An invalid file is refused as a whole with a message naming every bad key: a half-read profile
would silently change alerts.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "BASES",
    "DEFAULT_PROFILE_PATH",
    "PROFILE_ENV",
    "THRESHOLD_RANGES",
    "ALERT_CODES",
    "GuidelineProfile",
    "ProfileError",
    "Threshold",
    "AlertDef",
    "load_profile",
    "default_profile",
]

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
DEFAULT_PROFILE_PATH = PROFILES_DIR / "default.toml"
PROFILE_ENV = "DRESS_GUIDELINE_PROFILE"
BASES: tuple[str, ...] = ("product requirement", "sourced", "default (UNCONFIRMED)", "design choice")

# Every key a rule reads, with the range a value must lie in: a typo or an impossible number in a
# unit's file is refused instead of quietly disabling a rule. (low, high) are inclusive.
THRESHOLD_RANGES: dict[str, tuple[float, float]] = {
    "uln_alt": (1, 1000),
    "uln_ast": (1, 1000),
    "uln_alp": (1, 2000),
    "uln_bilirubin": (0.1, 20),
    "uln_creatinine": (0.1, 20),
    "uln_troponin_t": (0.1, 10_000),
    "uln_troponin_i": (0.1, 10_000),
    "hepatic_alt_uln_multiple": (1, 20),
    "renal_creatinine_baseline_multiple": (1, 10),
    "icu_bsa_pct": (0, 100),
    "icu_min_organs": (1, 3),
    "eosinophils_moderate": (0.05, 50),
    "eosinophils_high": (0.05, 50),
    "ferritin_high": (1, 100_000),
    "ferritin_critical": (1, 100_000),
    "fever_c": (36, 42),
    "fever_lookback_days": (0, 14),
    "poor_prognosis_ferritin": (1, 100_000),
    "steroid_dose_min_mg_per_kg": (0, 30),
    "steroid_dose_max_mg_per_kg": (0, 30),
    "stalled_response_day": (1, 90),
    "stalled_fraction": (0.01, 1),
    "start_value_window_days": (0, 14),
    "ivig_total_dose_min_g_per_kg": (0.1, 5),
    "ivig_total_dose_max_g_per_kg": (0.1, 5),
    "min_taper_days": (1, 365),
    "relapse_flare_multiple": (1, 20),
    "patch_test_months_after_resolution": (0, 60),
    "patch_test_steroid_mg": (0, 100),
    "patch_test_days_off_steroid": (0, 365),
    "regiscar_eos_pct_low": (0, 100),
    "regiscar_eos_pct_high": (0, 100),
    "regiscar_low_wbc": (0.1, 50),
    "regiscar_rash_bsa_pct": (0, 100),
    # Alerts as work (PRODUCT.md §10): how far ahead a snooze may reach, when a warning nobody
    # acknowledged is escalated by ``python -m monitoring notify``.
    "snooze_max_days": (1, 30),
    "escalate_warning_after_hours": (1, 168),
    "stalled_infection_day": (1, 365),
    "stale_after_days": (0, 365),
    "monitoring_interval_inpatient_days": (0, 90),
    "monitoring_interval_clinic_days": (0, 365),
    # The liver-injury pattern (monitoring.liver): R ratio cut points.
    "r_ratio_hepatocellular": (0.1, 100),
    "r_ratio_cholestatic": (0.1, 100),
    "r_ratio_injury_uln_multiple": (1, 20),
}

# Keys whose value counts something (days, months, organs): must be whole numbers.
_WHOLE_NUMBERS = frozenset(
    {
        "icu_min_organs",
        "fever_lookback_days",
        "stalled_response_day",
        "start_value_window_days",
        "min_taper_days",
        "patch_test_months_after_resolution",
        "patch_test_days_off_steroid",
        "snooze_max_days",
        "escalate_warning_after_hours",
        "stalled_infection_day",
        "stale_after_days",
        "monitoring_interval_inpatient_days",
        "monitoring_interval_clinic_days",
    }
)

# The alert codes of PRODUCT.md §5; a profile must give each a title and a source. A profile may
# add further codes (with a title and a source) for rules added to monitoring.rules.
ALERT_CODES: tuple[str, ...] = (
    "HEPATIC_INVOLVEMENT",
    "RENAL_INVOLVEMENT",
    "CARDIAC_INVOLVEMENT",
    "EOSINOPHILIA",
    "FERRITIN_HIGH",
    "POOR_PROGNOSIS",
    "ICU_CRITERIA",
    "STALLED_RESPONSE_DAY7",
    "PREMATURE_TAPER",
    "RELAPSE_RISK",
    "RECHALLENGE",
    "GI_PROPHYLAXIS_MISSING",
    "CULPRIT_NOT_STOPPED",
    "LABS_OVERDUE",
)

# Catalogue test -> profile key of its default upper limit of normal (PRODUCT.md §4).
_ULN_KEYS: dict[str, str] = {
    "alt": "uln_alt",
    "ast": "uln_ast",
    "alp": "uln_alp",
    "bilirubin": "uln_bilirubin",
    "creatinine": "uln_creatinine",
    "troponin_t": "uln_troponin_t",
    "troponin_i": "uln_troponin_i",
}

_THRESHOLD_FIELDS = ("value", "unit", "label", "source", "basis")


class ProfileError(ValueError):
    """A guideline profile file that cannot be used; ``problems`` names each bad key."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        super().__init__(f"guideline profile {self.path} refused:\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class Threshold:
    key: str
    value: float
    unit: str
    label: str
    source: str
    basis: str

    @property
    def is_confirmed(self) -> bool:
        return self.basis in ("product requirement", "sourced")

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value": self.value,
            "unit": self.unit,
            "label": self.label,
            "source": self.source,
            "basis": self.basis,
        }


@dataclass(frozen=True)
class AlertDef:
    code: str
    title: str
    source: str


@dataclass(frozen=True)
class GuidelineProfile:
    name: str
    version: str
    path: Path
    thresholds: dict[str, Threshold]
    alerts: dict[str, AlertDef] = field(default_factory=dict)
    description: str = ""

    def threshold(self, key: str) -> Threshold:
        try:
            return self.thresholds[key]
        except KeyError:
            raise KeyError(f"guideline profile {self.name!r} has no threshold {key!r}") from None

    def value(self, key: str) -> float:
        return self.threshold(key).value

    def days(self, key: str) -> int:
        """A whole-number parameter (days, months, organs) as an int."""
        return int(self.threshold(key).value)

    def default_uln(self, test: str) -> float | None:
        """The profile's default upper limit of normal of ``test`` (PRODUCT.md §4), None when it has
        none. The ULN in force for a result (the laboratory's ref_high wins) is
        ``monitoring.limits.uln``."""
        key = _ULN_KEYS.get(test)
        return None if key is None else self.value(key)

    def alert(self, code: str) -> AlertDef:
        try:
            return self.alerts[code]
        except KeyError:
            raise KeyError(f"guideline profile {self.name!r} has no alert {code!r}") from None

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "path": str(self.path)}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ProfileError(path, ["file not found"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(path, [f"not valid TOML: {exc}"]) from None
    except OSError as exc:
        raise ProfileError(path, [f"cannot be read: {exc}"]) from None


def _resolve_extends(name: str, path: Path) -> Path:
    if name == "default":
        return DEFAULT_PROFILE_PATH
    candidate = Path(name)
    if not candidate.is_absolute():
        candidate = (path.parent / candidate).resolve()
    return candidate


def _merged(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The profile's tables with ``extends`` applied (the child wins key by key)."""
    if path in seen:
        raise ProfileError(path, [f"profile.extends: circular ({' -> '.join(str(p) for p in (*seen, path))})"])
    data = _read_toml(path)
    prof = data.get("profile", {})
    if not isinstance(prof, dict):
        raise ProfileError(path, ["profile: must be a table"])
    base_name = prof.get("extends")
    if base_name is None:
        return data
    if not isinstance(base_name, str) or not base_name:
        raise ProfileError(path, [f"profile.extends: value {base_name!r}: must be 'default' or a file path"])
    base = _merged(_resolve_extends(base_name, path), (*seen, path))
    out: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, content in data.items():
        if section in ("thresholds", "alerts") and isinstance(content, dict):
            merged_section = dict(out.get(section, {}))
            for key, entry in content.items():
                prev = merged_section.get(key)
                if isinstance(prev, dict) and isinstance(entry, dict):
                    merged_section[key] = {**prev, **entry}
                else:
                    merged_section[key] = entry
            out[section] = merged_section
        elif section == "profile" and isinstance(content, dict):
            out["profile"] = {**{k: v for k, v in base.get("profile", {}).items()}, **content}
        else:
            out[section] = content
    return out


def _default_units() -> dict[str, str]:
    data = _read_toml(DEFAULT_PROFILE_PATH)
    return {k: str(v.get("unit")) for k, v in data.get("thresholds", {}).items() if isinstance(v, dict)}


def _validate(path: Path, data: dict[str, Any]) -> GuidelineProfile:
    problems: list[str] = []
    for section in data:
        if section not in ("profile", "thresholds", "alerts"):
            problems.append(f"{section}: unknown section (expected profile, thresholds, alerts)")
    prof = data.get("profile", {})
    name = prof.get("name") if isinstance(prof, dict) else None
    version = prof.get("version") if isinstance(prof, dict) else None
    if not isinstance(name, str) or not name.strip():
        problems.append("profile.name: missing (a short name shown with every alert)")
    if not isinstance(version, str | int | float) or str(version).strip() == "":
        problems.append("profile.version: missing")

    units = _default_units() if path != DEFAULT_PROFILE_PATH else None
    raw = data.get("thresholds", {})
    thresholds: dict[str, Threshold] = {}
    if not isinstance(raw, dict):
        problems.append("thresholds: must be a table of tables")
        raw = {}
    for key in raw:
        if key not in THRESHOLD_RANGES:
            problems.append(f"thresholds.{key}: unknown key (no rule reads it; check the spelling)")
    for key, (low, high) in THRESHOLD_RANGES.items():
        entry = raw.get(key)
        if entry is None:
            problems.append(f"thresholds.{key}: missing")
            continue
        if not isinstance(entry, dict):
            problems.append(f"thresholds.{key}: must be a table with {', '.join(_THRESHOLD_FIELDS)}")
            continue
        bad = False
        for f in entry:
            if f not in _THRESHOLD_FIELDS:
                problems.append(f"thresholds.{key}.{f}: unknown field")
                bad = True
        value = entry.get("value")
        number = None if isinstance(value, bool) or not isinstance(value, int | float) else float(value)
        if number is None or not math.isfinite(number):
            problems.append(f"thresholds.{key}.value: value {value!r}: must be a number")
            bad = True
        elif not low <= number <= high:
            problems.append(f"thresholds.{key}.value: value {value!r}: outside the plausible range {low:g} to {high:g}")
            bad = True
        elif key in _WHOLE_NUMBERS and number != int(number):
            problems.append(f"thresholds.{key}.value: value {value!r}: must be a whole number")
            bad = True
        for f in ("unit", "label", "source"):
            if not isinstance(entry.get(f), str) or not entry[f].strip():
                problems.append(f"thresholds.{key}.{f}: missing (every threshold states its {f})")
                bad = True
        if entry.get("basis") not in BASES:
            problems.append(
                f"thresholds.{key}.basis: value {entry.get('basis')!r}: must be one of {', '.join(repr(b) for b in BASES)}"
            )
            bad = True
        if units is not None and key in units and entry.get("unit") != units[key]:
            problems.append(
                f"thresholds.{key}.unit: value {entry.get('unit')!r}: must be {units[key]!r} (give the value in that unit)"
            )
            bad = True
        if not bad:
            assert number is not None  # not bad: the value was checked a finite number above
            thresholds[key] = Threshold(
                key=key,
                value=number,
                unit=entry["unit"],
                label=entry["label"],
                source=entry["source"],
                basis=entry["basis"],
            )
    # Pairs whose order a rule relies on.
    for low_key, high_key in (
        ("eosinophils_moderate", "eosinophils_high"),
        ("ferritin_high", "ferritin_critical"),
        ("steroid_dose_min_mg_per_kg", "steroid_dose_max_mg_per_kg"),
        ("ivig_total_dose_min_g_per_kg", "ivig_total_dose_max_g_per_kg"),
        ("regiscar_eos_pct_low", "regiscar_eos_pct_high"),
        ("r_ratio_cholestatic", "r_ratio_hepatocellular"),
    ):
        if low_key in thresholds and high_key in thresholds and thresholds[low_key].value > thresholds[high_key].value:
            problems.append(f"thresholds.{low_key}.value: must not exceed thresholds.{high_key}.value")

    raw_alerts = data.get("alerts", {})
    alerts: dict[str, AlertDef] = {}
    if not isinstance(raw_alerts, dict):
        problems.append("alerts: must be a table of tables")
        raw_alerts = {}
    for code in ALERT_CODES:
        if code not in raw_alerts:
            problems.append(f"alerts.{code}: missing (title and source)")
    for code, entry in raw_alerts.items():
        if not isinstance(entry, dict):
            problems.append(f"alerts.{code}: must be a table with title and source")
            continue
        for f in entry:
            if f not in ("title", "source"):
                problems.append(f"alerts.{code}.{f}: unknown field")
        title, source = entry.get("title"), entry.get("source")
        if not isinstance(title, str) or not title.strip():
            problems.append(f"alerts.{code}.title: missing")
        if not isinstance(source, str) or not source.strip():
            problems.append(f"alerts.{code}.source: missing (every alert states its source)")
        if isinstance(title, str) and isinstance(source, str):
            alerts[code] = AlertDef(code, title, source)
    if problems:
        raise ProfileError(path, problems)
    return GuidelineProfile(
        name=str(name),
        version=str(version),
        path=path,
        thresholds=thresholds,
        alerts=alerts,
        description=str(prof.get("description", "")) if isinstance(prof, dict) else "",
    )


@lru_cache(maxsize=16)
def _load(path: Path, mtime_ns: int) -> GuidelineProfile:
    # mtime in the cache key: an edited file is read again, an unchanged one is not.
    return _validate(path, _merged(path))


def load_profile(path: str | Path | None = None) -> GuidelineProfile:
    """The profile at ``path``; else the file named by DRESS_GUIDELINE_PROFILE; else the default.

    Raises ProfileError (naming each bad key) for a file that cannot be used.
    """
    chosen = path if path not in (None, "") else os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE_PATH
    p = Path(chosen).expanduser().resolve()
    try:
        mtime = p.stat().st_mtime_ns
    except OSError:
        raise ProfileError(p, ["file not found"]) from None
    return _load(p, mtime)


def default_profile() -> GuidelineProfile:
    """The built-in default profile (ignores DRESS_GUIDELINE_PROFILE)."""
    return load_profile(DEFAULT_PROFILE_PATH)
