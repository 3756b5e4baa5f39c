"""The policy file: documented defaults, operator overrides, and errors that name the key."""

from __future__ import annotations

import tomllib
from decimal import Decimal

import pytest

from yidi.settings import DEFAULTS_PATH, Settings, SettingsError, load_settings


def test_defaults_file_matches_the_models_and_is_commented():
    data = tomllib.loads(DEFAULTS_PATH.read_text(encoding="utf-8"))
    settings = Settings.model_validate(data)
    assert settings.review.deadline_working_days == 2
    assert set(data) == set(Settings.model_fields), "every section is in the shipped defaults"
    # Scalar rules shipped in the file equal the models' own defaults (no silent drift between the two);
    # tables such as severities, rate cards and bank templates live only in the file.
    for name in Settings.model_fields:
        shipped, model = getattr(settings, name).model_dump(), type(getattr(settings, name))().model_dump()
        for key, default in model.items():
            if not isinstance(default, dict | list):
                assert shipped[key] == default, f"{name}.{key}: file {shipped[key]!r} vs model {default!r}"


def test_operator_file_overrides_a_subset(tmp_path, monkeypatch):
    policy = tmp_path / "yidi.toml"
    policy.write_text("[review]\ndeadline_working_days = 3\n[orders]\nlarge_order_threshold_yuan = 80000\n")
    monkeypatch.setenv("YIDI_CONFIG", str(policy))
    settings = load_settings()
    assert settings.review.deadline_working_days == 3
    assert settings.orders.large_order_threshold_yuan == Decimal("80000")
    assert settings.review.escalation_contact == "ops-lead@example.com"  # untouched default


@pytest.mark.parametrize(
    ("toml", "key", "problem"),
    [
        (
            "[review]\ndeadline_working_days = 0\n",
            "review.deadline_working_days",
            "greater than or equal to 1",
        ),
        ("[review]\ndeadline_working_days = 'two'\n", "review.deadline_working_days", "valid integer"),
        ("[review]\ndeadlin_working_days = 3\n", "review.deadlin_working_days", "Extra inputs"),
        (
            "[payment]\nspecial_methods = ['barter']\n",
            "payment.special_methods",
            "not in payment.allowed_methods",
        ),
        ("[pricing]\ntolerance_pct = -1\n", "pricing.tolerance_pct", "greater than or equal to 0"),
        ("[nosuchsection]\nx = 1\n", "nosuchsection", "Extra inputs"),
    ],
)
def test_bad_values_name_the_key_and_the_problem(tmp_path, toml, key, problem):
    policy = tmp_path / "yidi.toml"
    policy.write_text(toml)
    with pytest.raises(SettingsError) as err:
        load_settings(policy)
    assert key in str(err.value) and problem in str(err.value)
    assert str(policy) in str(err.value)


def test_broken_toml_and_missing_file_are_clear(tmp_path, monkeypatch):
    policy = tmp_path / "yidi.toml"
    policy.write_text("[review\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(policy)
    monkeypatch.setenv("YIDI_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(SettingsError, match="not a file"):
        load_settings()
