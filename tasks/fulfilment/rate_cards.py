"""Rate cards as tables (F4): the policy file's ``[fulfilment.rate_cards.<carrier>]`` terms, with zone tables from
``fulfilment.rate_card_dir`` when set, flattened into a ``RateTable`` that ``carrier_choice.choose_carriers``
prices against; and what the cards say on their own (which provinces someone serves, the fastest transit to each).

A zone file without a card in the policy is refused, so no carrier is ever used without its agreed terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

from yidi.money import decimal_to_fen
from yidi.settings import PROVINCE_SHORT_NAMES, FulfilmentPolicy, RateCard, ZoneRate, province_short_name


class RateCardError(ValueError):
    """A rate-card file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class RateTable:
    """Rate cards flattened for vectorised pricing."""

    cards: pd.DataFrame  # one row per carrier (position = carrier index)
    zone_lookup: np.ndarray  # [carrier index, province index] -> row in ``zones`` or -1 (not served)
    zones: pd.DataFrame  # first_weight_kg, first_fen, additional_fen_per_kg, transit_days, zone label


PROVINCE_INDEX = {name: i for i, name in enumerate(PROVINCE_SHORT_NAMES)}


def _expand(destinations: list[str], regions: dict[str, list[str]]) -> list[str]:
    provinces: list[str] = []
    for destination in destinations:
        members = regions.get(destination, [destination])
        provinces.extend(province_short_name(p) for p in members)
    return provinces


def rate_table(policy: FulfilmentPolicy, carriers: list[str] | None = None) -> RateTable:
    """The policy's rate cards (with zone tables from ``rate_card_dir`` when set) as a ``RateTable``."""
    cards = dict(policy.rate_cards)
    if policy.rate_card_dir:
        cards = load_rate_card_dir(Path(policy.rate_card_dir), cards)
    if carriers is not None:
        cards = {code: card for code, card in cards.items() if code in carriers}
    card_rows, zone_rows = [], []
    lookup = np.full((len(cards), len(PROVINCE_SHORT_NAMES)), -1, dtype=np.int64)
    for carrier_index, (code, card) in enumerate(cards.items()):
        card_rows.append(
            {
                "carrier": code,
                "carrier_name": card.name,
                "service": card.service,
                "volumetric_divisor": float(card.volumetric_divisor),
                "max_weight_kg": card.max_weight_kg,
                "weight_step_kg": card.weight_step_kg,
                "cod": card.cod,
                "cod_fee_pct": card.cod_fee_pct,
                "cod_min_fen": decimal_to_fen(card.cod_min_yuan),
                "insurance": card.insurance,
                "insurance_rate_pct": card.insurance_rate_pct,
                "insurance_min_fen": decimal_to_fen(card.insurance_min_yuan),
                "liability": card.liability,
            }
        )
        for zone_index, zone in enumerate(card.zones):
            row = len(zone_rows)
            zone_rows.append(
                {
                    "zone": "+".join(zone.destinations),
                    "first_weight_kg": zone.first_weight_kg,
                    "first_fen": decimal_to_fen(zone.first_weight_yuan),
                    "additional_fen_per_kg": float(Decimal(str(zone.additional_kg_yuan)) * 100),
                    "transit_days": zone.transit_days,
                    "zone_index": zone_index,
                }
            )
            for province in _expand(zone.destinations, policy.regions):
                if province in PROVINCE_INDEX:
                    lookup[carrier_index, PROVINCE_INDEX[province]] = row
    return RateTable(pd.DataFrame(card_rows), lookup, pd.DataFrame(zone_rows))


ZONE_FILE_COLUMNS = {
    "destinations": ["destinations", "destination", "province", "region", "目的地", "省份", "区域"],
    "first_weight_kg": ["first_weight_kg", "首重(kg)", "首重"],
    "first_weight_yuan": ["first_weight_yuan", "首重价格", "首重价", "首重费用"],
    "additional_kg_yuan": ["additional_kg_yuan", "续重价格", "续重单价", "续重"],
    "transit_days": ["transit_days", "时效", "时效(工作日)", "时效天数"],
}


def load_rate_card_dir(folder: Path, cards: dict[str, RateCard]) -> dict[str, RateCard]:
    """Replace the zones of each carrier that has ``<carrier>.csv`` or ``<carrier>.xlsx`` in ``folder``.

    Card-level terms (divisor, limits, COD, insurance, liability) stay in the policy file; a zone file without
    a card in the policy is refused, so no carrier is ever used without its agreed terms.
    """
    from yidi.textfiles import read_table

    if not folder.is_dir():
        raise RateCardError(f"fulfilment.rate_card_dir {folder} is not a folder")
    result = dict(cards)
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".csv", ".xlsx"):
            continue
        carrier = path.stem
        if carrier not in cards:
            raise RateCardError(f"{path}: no [fulfilment.rate_cards.{carrier}] terms in the policy file")
        frame = read_table(path)
        lookup = {alias.lower(): canonical for canonical, aliases in ZONE_FILE_COLUMNS.items() for alias in aliases}
        frame = frame.rename(columns={c: lookup.get(c.lower(), c) for c in frame.columns})
        missing = [c for c in ZONE_FILE_COLUMNS if c not in frame.columns]
        if missing:
            raise RateCardError(f"{path}: missing column(s) {missing}")
        zones = []
        for row_no, values in enumerate(
            zip(*(frame[c].tolist() for c in ZONE_FILE_COLUMNS), strict=True), start=2
        ):
            destinations, first_kg, first_yuan, additional, transit = values
            try:
                zones.append(
                    ZoneRate(
                        destinations=[d.strip() for d in str(destinations).replace("，", ",").split(",") if d.strip()],
                        first_weight_kg=float(first_kg),
                        first_weight_yuan=Decimal(str(first_yuan)),
                        additional_kg_yuan=Decimal(str(additional)),
                        transit_days=int(float(transit)),
                    )
                )
            except (ValueError, ArithmeticError) as exc:
                raise RateCardError(f"{path}: row {row_no}: {exc}") from None
        result[carrier] = cards[carrier].model_copy(update={"zones": zones})
    # Re-validate zones against regions/provinces through the policy model.
    return result


def served_provinces(table: RateTable) -> set[str]:
    """Province short names at least one carrier delivers to (orders elsewhere are exceptions before planning)."""
    served = (table.zone_lookup >= 0).any(axis=0)
    return {PROVINCE_SHORT_NAMES[i] for i in np.flatnonzero(served)}


def fastest_transit(table: RateTable) -> dict[str, int]:
    """Province short name -> the fewest transit working days any carrier offers."""
    result = {}
    transit = table.zones["transit_days"].to_numpy() if len(table.zones) else np.zeros(0)
    for province, index in PROVINCE_INDEX.items():
        rows = table.zone_lookup[:, index]
        rows = rows[rows >= 0]
        if len(rows):
            result[province] = int(transit[rows].min())
    return result
