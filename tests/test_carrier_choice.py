"""Carrier choice (F4, K3): pricing by chargeable weight, cheapest meeting the promise else fastest, eligibility
(destination, weight limit, insurance, COD), clear exceptions, rate cards from the policy file and from files."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest

from tasks.fulfilment.carrier_choice import DispatchCalendar, choose_carriers, options_as_records
from tasks.fulfilment.rate_cards import RateCardError, rate_table
from yidi.settings import SettingsError, load_settings, province_short_name

FRIDAY = date(2026, 11, 27)


def policy():
    return load_settings().fulfilment


def ship(**overrides) -> dict:
    row = {"shipment_key": 1, "province": "四川省", "weight_kg": 1.0, "volume_m3": 0.001,
           "declared_value_fen": 10_000, "cod_amount_fen": 0, "promised_date": None}  # fmt: skip
    return row | overrides


def choose(rows, pol=None, **kwargs):
    pol = pol or policy()
    return choose_carriers(
        pd.DataFrame(rows),
        rate_table(pol),
        dispatch_day=kwargs.pop("dispatch_day", FRIDAY),
        insurance_threshold_fen=int(pol.insurance_threshold_yuan * 100),
        insurance_provinces=pol.insurance_route_provinces,
        **kwargs,
    )


def test_province_names_normalise():
    assert province_short_name("广西壮族自治区") == "广西"
    assert province_short_name("重庆市") == "重庆"
    assert province_short_name("新疆维吾尔自治区") == "新疆"
    assert province_short_name("四川") == "四川"


def test_chargeable_weight_is_volumetric_when_bulky_and_price_follows_the_card():
    # 0.45 m³ desk weighing 58 kg: volumetric 0.45e6/6000 = 75 kg for Deppon (heavier than actual).
    result = choose([ship(weight_kg=58.0, volume_m3=0.45)])
    options = result.options.set_index("carrier")
    assert options.loc["debangwuliu", "chargeable_weight_kg"] == 75.0
    # Deppon to Sichuan: 35 yuan for 30 kg + 1.2 yuan/kg × 45 kg = 89 yuan.
    assert options.loc["debangwuliu", "freight_fen"] == 8900
    assert not options.loc["zhongtong", "eligible"]  # 0.45e6/8000 = 56.25 -> 57 kg > 50 kg limit
    assert options.loc["zhongtong", "excluded_reason"] == "over weight limit"
    assert result.choices.loc[0, "carrier"] == "debangwuliu"


def test_cheapest_option_meeting_the_promised_date_wins_with_reason():
    # Yunda is cheapest to Sichuan but takes 2 working days (Tue 12-01); promise Monday 11-30 needs 1 day.
    result = choose([ship(promised_date=date(2026, 11, 30))])
    winner = result.choices.iloc[0]
    assert winner["carrier"] == "jd"  # cheapest of the 1-day carriers (jd 10 yuan, shunfeng 13 yuan)
    assert winner["expected_delivery_date"] == pd.Timestamp("2026-11-30")
    assert winner["meets_promise"]
    assert "meeting the promised date 2026-11-30" in winner["reason"]
    ranks = result.options.set_index("carrier")["rank"]
    assert ranks["jd"] == 1 and ranks["shunfeng"] == 2  # meeting options first, by price
    # Without a promise the cheapest overall wins.
    assert choose([ship()]).choices.loc[0, "carrier"] == "yunda"


def test_fastest_wins_when_no_option_meets_the_promise():
    result = choose([ship(province="北京市", promised_date=date(2026, 11, 27))])
    winner = result.choices.iloc[0]
    assert not winner["meets_promise"]
    assert winner["transit_days"] == 2  # shunfeng/jd 2 days are the fastest to Beijing
    assert winner["carrier"] == "jd"  # the cheaper of the fastest
    assert winner["reason"].startswith("no option meets the promised date 2026-11-27; fastest")


def test_working_day_calendar_skips_the_weekend_and_holidays():
    # Dispatched Wednesday 2026-09-30: the National Day holiday (1-7 October 2026 in the State Council's notice)
    # follows, so one working day later is Thursday 8 October.
    assert DispatchCalendar().add(date(2026, 9, 30), 1) == (date(2026, 10, 8), False)
    # Saturday 10 October 2026 is an adjusted working day (调休上班) in the same notice.
    assert DispatchCalendar().add(date(2026, 10, 9), 1) == (date(2026, 10, 10), False)
    calendar = DispatchCalendar()
    # Friday after the 16:00 cut-off ships Monday.
    assert calendar.dispatch_day(datetime(2026, 11, 27, 9, 0, tzinfo=UTC), "16:00") == date(2026, 11, 30)
    assert calendar.dispatch_day(datetime(2026, 11, 27, 7, 59, tzinfo=UTC), "16:00") == date(2026, 11, 27)


def test_dates_past_the_installed_calendar_are_estimated_and_flagged():
    # Thursday 31 December is still on the installed calendar; Friday 1 January 2027 counts as a plain weekday
    # (the 2027 holidays are not published yet), then Monday: an estimate, flagged.
    assert DispatchCalendar(fallback_weekdays=True).add(date(2026, 12, 30), 3) == (date(2027, 1, 4), True)
    result = choose([ship()], dispatch_day=date(2026, 12, 31), calendar=DispatchCalendar(True))
    assert result.choices.loc[0, "eta_estimated"]
    from yidi.workdays import CalendarOutOfRange

    with pytest.raises(CalendarOutOfRange):
        DispatchCalendar(fallback_weekdays=False).add(date(2026, 12, 30), 3)


def test_unserved_destination_and_missing_weight_are_exceptions_not_crashes():
    result = choose([ship(shipment_key=1, province="台湾省"), ship(shipment_key=2, weight_kg=None),
                     ship(shipment_key=3, province=None)])  # fmt: skip
    choices = result.choices.set_index("shipment_key")
    assert choices["carrier"].isna().all()
    assert choices.loc[1, "exception"] == "no carrier serves 台湾"
    assert choices.loc[2, "exception"] == "items without weight: cannot price the shipment"
    assert choices.loc[3, "exception"] == "no carrier serves an unknown province"


def test_insurance_where_value_or_route_warrants_it_and_carriers_without_it_are_excluded():
    result = choose([ship(shipment_key=1, declared_value_fen=500_000), ship(shipment_key=2, province="西藏自治区"),
                     ship(shipment_key=3)])  # fmt: skip
    choices = result.choices.set_index("shipment_key")
    assert choices.loc[1, "insured"] and choices.loc[2, "insured"] and not choices.loc[3, "insured"]
    options = result.options.set_index(["shipment_key", "carrier"])
    assert options.loc[(1, "yunda"), "excluded_reason"] == "no insurance under agreement"  # yunda: no 保价
    # jd 0.3% of 5000 yuan = 15 yuan premium on top of freight.
    assert options.loc[(1, "jd"), "insurance_fee_fen"] == 1500
    assert choices.loc[1, "carrier"] != "yunda"
    assert choices.loc[3, "insurance_fee_fen"] == 0


def test_cash_on_delivery_needs_a_carrier_that_collects():
    result = choose([ship(cod_amount_fen=18_900)])
    options = result.options.set_index("carrier")
    assert options.loc["zhongtong", "excluded_reason"] == "no COD under agreement"
    # Of the four that collect (the shipped rate cards, 1 kg to 四川): jd ¥10 + ¥2 COD fee, ems ¥12 + ¥3,
    # shunfeng ¥13 + ¥3, deppon ¥35 + ¥5 -> jd at ¥12.00.
    choice = result.choices.loc[0]
    assert (choice["carrier"], choice["freight_fen"], choice["cod_fee_fen"]) == ("jd", 1000, 200)


def test_alternatives_are_recorded_for_every_carrier():
    result = choose([ship()])
    records = options_as_records(result.options)[1]
    assert {r["carrier"] for r in records} == set(policy().rate_cards)
    assert sum(1 for r in records if r["rank"] == 1) == 1


def test_rate_card_zone_files_replace_policy_zones(tmp_path):
    folder = tmp_path / "rates"
    folder.mkdir()
    (folder / "yunda.csv").write_text(
        "目的地,首重(kg),首重价格,续重价格,时效\n四川,1,2.5,0.5,1\n\"广东,广西\",1,5,2,3\n", encoding="gbk"
    )
    config = tmp_path / "yidi.toml"
    config.write_text(f'[fulfilment]\nrate_card_dir = "{folder}"\n', encoding="utf-8")
    pol = load_settings(config).fulfilment
    result = choose([ship(shipment_key=1), ship(shipment_key=2, province="北京市")], pol=pol)
    options = result.options.set_index(["shipment_key", "carrier"])
    assert options.loc[(1, "yunda"), "freight_fen"] == 250
    assert options.loc[(2, "yunda"), "excluded_reason"] == "destination not served"  # not in the file
    (folder / "nosuch.csv").write_text("目的地,首重(kg),首重价格,续重价格,时效\n四川,1,1,1,1\n", encoding="utf-8")
    with pytest.raises(RateCardError, match="no \\[fulfilment.rate_cards.nosuch\\] terms"):
        rate_table(pol)


def test_policy_refuses_a_province_in_two_zones_and_unknown_destinations(tmp_path):
    bad = tmp_path / "yidi.toml"
    bad.write_text(
        '[fulfilment.rate_cards.yunda]\nzones = [\n'
        '  { destinations = ["四川"], first_weight_yuan = 1, additional_kg_yuan = 1, transit_days = 1 },\n'
        '  { destinations = ["neighbour"], first_weight_yuan = 1, additional_kg_yuan = 1, transit_days = 1 },\n]\n',
        encoding="utf-8",
    )
    with pytest.raises(SettingsError, match="四川 is in zones"):
        load_settings(bad)
    bad.write_text('[fulfilment]\ninsurance_route_provinces = ["火星"]\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="火星"):
        load_settings(bad)
