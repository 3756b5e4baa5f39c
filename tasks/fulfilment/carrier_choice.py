"""Carrier choice (F4): the best carrier per shipment by weight, volume, destination and promised date.

Rate cards live in the policy file (``[fulfilment.rate_cards.<carrier>]``, optionally with zone tables from
``fulfilment.rate_card_dir``). For every shipment and every carrier we price the option: chargeable weight is
max(actual, volumetric) rounded up to the card's weight step; freight is first weight plus additional kg; cargo
insurance (K3) is added where the declared value or the route warrants it, a COD fee where the order is cash on
delivery. A carrier is eligible when it serves the destination province, takes the weight, and offers the
insurance / COD the shipment needs. The winner is the cheapest eligible option whose expected delivery date
(working-day calendar) meets the promised date, else the fastest. Every option considered is returned with why
it won or lost, so the decision can be shown later.

Everything is vectorised over (shipments × carriers): 100k shipments × 7 carriers price in well under a second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache

import numpy as np
import pandas as pd

from tasks.fulfilment.rate_cards import PROVINCE_INDEX, RateTable
from yidi.money import yuan_texts
from yidi.settings import province_short_name
from yidi.workdays import BUSINESS_TZ, CalendarOutOfRange, add_working_days, is_working_day

SHIPMENT_COLUMNS = [
    "shipment_key",
    "province",
    "weight_kg",
    "volume_m3",
    "declared_value_fen",
    "cod_amount_fen",
    "promised_date",
]


# --- dates on the working-day calendar -------------------------------------------------------------------


@dataclass(frozen=True)
class DispatchCalendar:
    """Working-day arithmetic for delivery promises, with an explicit, flagged fallback past the calendar."""

    fallback_weekdays: bool = True

    def add(self, start: date, n: int) -> tuple[date, bool]:
        """``start`` + ``n`` working days, and whether the Mon-Fri estimate had to be used."""
        return _add_working_days(start, int(n), self.fallback_weekdays)

    @staticmethod
    def _uncached_add(start: date, n: int, fallback_weekdays: bool) -> tuple[date, bool]:
        try:
            return add_working_days(start, n), False
        except CalendarOutOfRange:
            if not fallback_weekdays:
                raise
        day, remaining, step = start, abs(n), (1 if n >= 0 else -1)
        while remaining > 0:
            day += timedelta(days=step)
            try:
                working = is_working_day(day)
            except CalendarOutOfRange:
                working = day.weekday() < 5
            remaining -= working
        return day, True

    def is_working(self, day: date) -> tuple[bool, bool]:
        try:
            return is_working_day(day), False
        except CalendarOutOfRange:
            if not self.fallback_weekdays:
                raise
            return day.weekday() < 5, True

    def dispatch_day(self, now: datetime, cutoff: str) -> date:
        """The day goods allocated at ``now`` leave the warehouse: today before the cut-off on a working day."""
        local = now.astimezone(BUSINESS_TZ)
        hour, minute = (int(part) for part in cutoff.split(":"))
        today = local.date()
        working, _ = self.is_working(today)
        if working and local.time() < time(hour, minute):
            return today
        day, _ = self.add(today, 1)
        return day


@lru_cache(maxsize=4096)
def _add_working_days(start: date, n: int, fallback_weekdays: bool) -> tuple[date, bool]:
    # A run asks for the same few (day, lead time) pairs thousands of times; the calendar walk is day by day.
    return DispatchCalendar._uncached_add(start, n, fallback_weekdays)


# --- choosing ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CarrierChoice:
    choices: pd.DataFrame  # one row per shipment: winner (or exception)
    options: pd.DataFrame  # one row per shipment × carrier: priced option, eligibility, rank


def _round_half_up(values: np.ndarray) -> np.ndarray:
    return np.floor(values + 0.5).astype(np.int64)


def choose_carriers(
    shipments: pd.DataFrame,
    table: RateTable,
    *,
    dispatch_day: date,
    insurance_threshold_fen: int,
    insurance_provinces: list[str] | tuple[str, ...] = (),
    calendar: DispatchCalendar | None = None,
    route_standing: pd.DataFrame | None = None,
    route_penalty_pct: float = 0.0,
) -> CarrierChoice:
    """Price every carrier for every shipment and pick the winner (see module docstring).

    ``shipments`` has ``SHIPMENT_COLUMNS``. A shipment no carrier can take gets ``carrier`` NA and an
    ``exception`` text naming why (unserved destination, no weight, too heavy, insurance/COD not offered).
    ``route_standing`` (``yidi.carrier_routes``: carrier, province, status) excludes a carrier on a route the risk
    scorecard excluded it from, and ranks it ``route_penalty_pct`` % dearer where it is penalised (K3); the price
    charged is unchanged.
    """
    calendar = calendar or DispatchCalendar()
    n, k = len(shipments), len(table.cards)
    province_raw = shipments["province"].astype(object)
    uniques = pd.unique(province_raw)
    short = {p: province_short_name(p) if isinstance(p, str) else None for p in uniques}
    province = province_raw.map(short)
    province_index = province.map(PROVINCE_INDEX).fillna(-1).to_numpy(dtype=np.int64)

    weight = pd.to_numeric(shipments["weight_kg"], errors="coerce").to_numpy(dtype=float)
    volume = pd.to_numeric(shipments["volume_m3"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    declared = shipments["declared_value_fen"].fillna(0).to_numpy(dtype=np.int64)
    cod_amount = shipments["cod_amount_fen"].fillna(0).to_numpy(dtype=np.int64)
    route_risky = province.isin([province_short_name(p) for p in insurance_provinces]).to_numpy()
    insure = (declared >= insurance_threshold_fen) | (route_risky & (declared > 0))
    promised = pd.to_datetime(shipments["promised_date"], errors="coerce").to_numpy(dtype="datetime64[D]")

    # Shipments × carriers, shipment-major.
    s_idx = np.repeat(np.arange(n), k)
    c_idx = np.tile(np.arange(k), n)
    cards = table.cards
    divisor = cards["volumetric_divisor"].to_numpy()[c_idx]
    step = cards["weight_step_kg"].to_numpy()[c_idx]
    max_weight = cards["max_weight_kg"].to_numpy()[c_idx]
    w = weight[s_idx]
    volumetric = volume[s_idx] * 1_000_000.0 / divisor
    chargeable = np.fmax(w, volumetric)
    chargeable = np.ceil(chargeable / step - 1e-9) * step

    p_idx = province_index[s_idx]
    zone_row = np.where(p_idx >= 0, table.zone_lookup[c_idx, np.clip(p_idx, 0, None)], -1)
    served = zone_row >= 0
    zr = np.clip(zone_row, 0, None)
    zones = table.zones
    if len(zones):
        first_kg = zones["first_weight_kg"].to_numpy()[zr]
        first_fen = zones["first_fen"].to_numpy()[zr]
        add_fen = zones["additional_fen_per_kg"].to_numpy()[zr]
        transit = zones["transit_days"].to_numpy()[zr]
    else:
        first_kg = first_fen = add_fen = transit = np.zeros(n * k)
    extra_steps = np.ceil(np.clip(chargeable - first_kg, 0, None) / step - 1e-9)
    freight = np.where(served, _round_half_up(first_fen + extra_steps * step * add_fen), 0)

    needs_insurance = insure[s_idx]
    insurance_fee = np.where(
        needs_insurance,
        np.maximum(
            cards["insurance_min_fen"].to_numpy()[c_idx],
            _round_half_up(declared[s_idx] * cards["insurance_rate_pct"].to_numpy()[c_idx] / 100.0),
        ),
        0,
    )
    needs_cod = cod_amount[s_idx] > 0
    cod_fee = np.where(
        needs_cod,
        np.maximum(
            cards["cod_min_fen"].to_numpy()[c_idx],
            _round_half_up(cod_amount[s_idx] * cards["cod_fee_pct"].to_numpy()[c_idx] / 100.0),
        ),
        0,
    )
    total = freight + insurance_fee + cod_fee

    has_weight = ~np.isnan(w)
    too_heavy = chargeable > max_weight
    no_insurance = needs_insurance & ~cards["insurance"].to_numpy(dtype=bool)[c_idx]
    no_cod = needs_cod & ~cards["cod"].to_numpy(dtype=bool)[c_idx]
    route_excluded, route_penalised = _route_measures(route_standing, cards, province, s_idx, c_idx)
    eligible = has_weight & served & ~too_heavy & ~no_insurance & ~no_cod & ~route_excluded

    # Expected delivery: dispatch day + transit working days (few distinct values: compute each once).
    eta_by_days, flagged_days = {}, set()
    for days in np.unique(transit[served]).tolist():
        eta, flagged = calendar.add(dispatch_day, int(days))
        eta_by_days[days] = np.datetime64(eta, "D")
        if flagged:
            flagged_days.add(days)
    eta = np.full(n * k, np.datetime64("NaT"), dtype="datetime64[D]")
    for days, value in eta_by_days.items():
        eta[served & (transit == days)] = value
    estimated = np.isin(transit, list(flagged_days)) & served
    promise = promised[s_idx]
    no_promise = np.isnat(promise)
    meets = eligible & (no_promise | (eta <= promise))

    # Exclusion reason per option, most fundamental last (it wins): codes into EXCLUSION_REASONS.
    excluded = np.zeros(n * k, dtype=np.int8)
    excluded[~eligible & route_excluded] = 6
    excluded[~eligible & no_cod] = 5
    excluded[~eligible & no_insurance] = 4
    excluded[~eligible & too_heavy] = 3
    excluded[~served] = 2
    excluded[~has_weight] = 1

    # Rank: when some option meets the promise, meeting first then cheapest then fastest; else fastest then cheapest.
    any_meets = np.zeros(n, dtype=bool)
    np.logical_or.at(any_meets, s_idx, meets)
    group_meets = any_meets[s_idx]
    big = np.iinfo(np.int64).max // 4
    key1 = np.where(eligible, np.where(group_meets, (~meets).astype(np.int64), 0), 2)
    ranked_total = np.where(route_penalised, _round_half_up(total * (1 + route_penalty_pct / 100.0)), total)
    key2 = np.where(group_meets, ranked_total, transit.astype(np.int64))
    key3 = np.where(group_meets, transit.astype(np.int64), ranked_total)
    key2 = np.where(eligible, key2, big)
    order = np.lexsort((c_idx, key3, key2, key1, s_idx))
    rank = np.empty(n * k, dtype=np.int64)
    rank[order] = np.arange(n * k) - np.repeat(np.arange(n) * k, k)
    rank = np.where(eligible, rank + 1, 0)

    carriers = cards["carrier"].astype(object).tolist()
    keys = shipments["shipment_key"].to_numpy()
    zone_labels = list(dict.fromkeys(zones["zone"].astype(object).tolist())) if len(zones) else []
    label_code = np.array([zone_labels.index(z) for z in zones["zone"].tolist()] if len(zones) else [0])
    zone_code = np.where(served, label_code[zr], -1)
    options = pd.DataFrame(
        {
            "shipment_key": keys[s_idx],
            "carrier": pd.Categorical.from_codes(c_idx, categories=carriers),
            "zone": pd.Categorical.from_codes(zone_code, categories=zone_labels)
            if zone_labels
            else pd.Categorical([None] * (n * k)),
            "chargeable_weight_kg": np.where(has_weight, chargeable, np.nan),
            "freight_fen": freight,
            "insurance_fee_fen": insurance_fee,
            "cod_fee_fen": cod_fee,
            "total_fen": total,
            "transit_days": transit.astype(np.int64),
            "expected_delivery_date": eta,
            "meets_promise": meets,
            "eligible": eligible,
            "excluded_reason": pd.Categorical.from_codes(excluded, categories=EXCLUSION_REASONS),
            "rank": rank,
        }
    )

    first = order[::k] if k else np.zeros(0, dtype=np.int64)  # best option of each shipment (shipment-major)
    win_ok = eligible[first] if k else np.zeros(n, dtype=bool)
    win_carrier = c_idx[first] if k else np.zeros(n, dtype=np.int64)

    def pick(values, missing):
        return np.where(win_ok, values[first], missing) if k else np.full(n, missing)

    winner = pd.DataFrame(
        {
            "shipment_key": keys,
            "carrier": pd.Categorical.from_codes(np.where(win_ok, win_carrier, -1), categories=carriers),
            "carrier_name": pd.Categorical.from_codes(
                np.where(win_ok, win_carrier, -1), categories=cards["carrier_name"].astype(object).tolist()
            ),
            "service": np.asarray(cards["service"].astype(object).tolist() + [None], dtype=object)[
                np.where(win_ok, win_carrier, len(carriers))
            ],
            "province": province.to_numpy(dtype=object),
            "chargeable_weight_kg": pick(chargeable, np.nan),
            "freight_fen": pick(freight, 0),
            "insured": insure,
            "insurance_fee_fen": pick(insurance_fee, 0),
            "cod_fee_fen": pick(cod_fee, 0),
            "total_fen": pick(total, 0),
            "transit_days": pick(transit.astype(np.int64), 0),
            "expected_delivery_date": pick(eta, np.datetime64("NaT")),
            "meets_promise": pick(meets, False),
            "eta_estimated": pick(estimated, False),
            "options_eligible": np.bincount(s_idx, weights=eligible, minlength=n).astype(np.int64),
            "options_meeting_promise": np.bincount(s_idx, weights=meets, minlength=n).astype(np.int64),
        }
    )
    winner["reason"] = _reasons(winner, promised, win_ok, any_meets)
    winner["exception"] = _exceptions(options, n, k, win_ok, province, has_weight, excluded)
    return CarrierChoice(winner, options)


EXCLUSION_REASONS = [
    "",
    "no weight",
    "destination not served",
    "over weight limit",
    "no insurance under agreement",
    "no COD under agreement",
    "excluded on this route (carrier scorecard)",
]


def _route_measures(standing, cards, province: pd.Series, s_idx, c_idx) -> tuple[np.ndarray, np.ndarray]:
    """Per option: is the carrier excluded / penalised on the shipment's destination province (K3)."""
    size = len(s_idx)
    if standing is None or len(standing) == 0:
        return np.zeros(size, dtype=bool), np.zeros(size, dtype=bool)
    routes = pd.MultiIndex.from_arrays([standing["carrier"].astype(object),
                                        standing["province"].map(province_short_name).astype(object)])
    carriers = np.asarray(cards["carrier"].astype(object).tolist(), dtype=object)
    options = pd.MultiIndex.from_arrays([carriers[c_idx], province.to_numpy(dtype=object)[s_idx]])
    at = routes.get_indexer(options)
    status = np.where(at >= 0, standing["status"].to_numpy(dtype=object)[np.clip(at, 0, None)], "")
    return status == "excluded", status == "penalised"


def _reasons(winner: pd.DataFrame, promised, win_ok, any_meets) -> list:
    """Why the winner won, one sentence per shipment (f-strings over lists: faster than Arrow concatenation)."""
    eta = pd.to_datetime(winner["expected_delivery_date"]).dt.strftime("%Y-%m-%d").tolist()
    promise = pd.to_datetime(promised).strftime("%Y-%m-%d").tolist()
    rows = zip(
        win_ok.tolist(),
        any_meets.tolist(),
        winner["carrier"].astype(object).tolist(),
        yuan_texts(winner["total_fen"], symbol=True),
        eta,
        promise,
        winner["options_eligible"].tolist(),
        winner["options_meeting_promise"].tolist(),
        strict=True,
    )
    reasons: list = []
    for ok, meets, carrier, total, eta_day, promised_day, eligible, meeting in rows:
        if not ok:
            reasons.append(None)
        elif not isinstance(promised_day, str):
            reasons.append(
                f"cheapest of {eligible} eligible option(s), no promised date: {carrier} {total}, ETA {eta_day}"
            )
        elif meets:
            reasons.append(
                f"cheapest of {meeting} option(s) meeting the promised date {promised_day}: "
                f"{carrier} {total}, ETA {eta_day}"
            )
        else:
            reasons.append(
                f"no option meets the promised date {promised_day}; fastest of {eligible}: "
                f"{carrier} ETA {eta_day} {total}"
            )
    return reasons


def _exceptions(options, n, k, win_ok, province: pd.Series, has_weight, excluded) -> list:
    """Why a shipment has no carrier: one readable sentence per shipment without a winner, else None."""
    result: list = [None] * n
    failed = np.flatnonzero(~win_ok)
    if k == 0:
        return ["no rate cards configured"] * n
    if not len(failed):
        return result
    codes = excluded.reshape(n, k)
    unserved = (codes == 2).all(axis=1)
    weightless = ~has_weight.reshape(n, k)[:, 0]
    carriers = options["carrier"].cat.categories.tolist()
    provinces = province.tolist()
    for i in failed.tolist():
        if weightless[i]:
            result[i] = "items without weight: cannot price the shipment"
        elif unserved[i]:
            where = provinces[i] if isinstance(provinces[i], str) else "an unknown province"
            result[i] = f"no carrier serves {where}"
        else:
            row = codes[i]
            parts = [f"{c}: {EXCLUSION_REASONS[r]}" for c, r in zip(carriers, row.tolist(), strict=True)]
            result[i] = "no eligible carrier (" + "; ".join(parts) + ")"
    return result


def options_as_records(options: pd.DataFrame) -> dict:
    """``shipment_key -> [option dicts]`` for storing the alternatives considered (small batches only)."""
    frame = options.assign(
        zone=options["zone"].astype(object).where(options["zone"].notna(), None),
        excluded_reason=options["excluded_reason"].astype(object),
        carrier=options["carrier"].astype(object),
        expected_delivery_date=pd.to_datetime(options["expected_delivery_date"]).dt.strftime("%Y-%m-%d"),
        chargeable_weight_kg=options["chargeable_weight_kg"].round(3),
    )
    columns = [
        "carrier", "zone", "chargeable_weight_kg", "freight_fen", "insurance_fee_fen", "cod_fee_fen", "total_fen",
        "transit_days", "expected_delivery_date", "meets_promise", "eligible", "excluded_reason", "rank",
    ]  # fmt: skip
    records: dict = {}
    values = zip(frame["shipment_key"].tolist(), *(frame[c].tolist() for c in columns), strict=True)
    for key, *row in values:
        item = dict(zip(columns, row, strict=True))
        if isinstance(item["chargeable_weight_kg"], float) and math.isnan(item["chargeable_weight_kg"]):
            item["chargeable_weight_kg"] = None
        if item["expected_delivery_date"] != item["expected_delivery_date"]:
            item["expected_delivery_date"] = None
        records.setdefault(key, []).append(item)
    return records
