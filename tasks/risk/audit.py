"""Internal audit (E1): pure checks. Process compliance over each order's event log, the reproducible stratified
sample for data accuracy and its field-by-field comparison, and the satisfaction check.

Inputs are frames the store loads (``audit_store``); every check returns rows ``check``, ``order_id``,
``summary``, so each finding names the order behind it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from yidi.lifecycle import is_legal

CHECKS = {
    "APPROVED_WITHOUT_REVIEW": ("high", "approved without a completed automated review"),
    "REVIEWED_AFTER_DEADLINE": ("medium", "manual review decided after its deadline"),
    "SHIPPED_WITHOUT_APPROVAL": ("high", "shipped without an approval"),
    "STATE_SKIPPED": ("high", "a state skipped or an illegal move in the event log"),
    "SETTLED_UNPAID": ("high", "settled without full payment"),
    "CHANGED_AFTER_APPROVAL": ("high", "changed after approval without a new review"),
    "OUTCOME_WITHOUT_NOTICE": ("medium", "a customer-facing outcome without a notice"),
    "REFUND_WITHOUT_CASE": ("high", "a refund without an after-sales case"),
    "DATA_FIELD_MISMATCH": ("medium", "stored order differs from its raw intake record"),
    "DATA_AMOUNT_MISMATCH": ("high", "amount received differs from the stored order total"),
    "DATA_RAW_MISSING": ("medium", "no raw intake record to re-derive the order from"),
    "SATISFACTION_LOW": ("medium", "customer satisfaction below target"),
    "KEYED_AND_APPROVED": ("high", "an order approved by the person who keyed it in"),
    "APPROVED_AND_RESOLVED": ("high", "a payment case resolved by the person who approved the order"),
    "STOCKTAKE_SELF_VERIFIED": ("high", "a stocktake verified by a person who adjusted the stock it covers"),
}
UNFULFILLED = ("cancelled", "rejected", "auto_rejected")  # ended before shipment: a refund reverses the payment
CUSTOMER_OUTCOMES = ("auto_rejected", "rejected", "shipped", "exception")
COMPARED_FIELDS = ["customer_name", "customer_phone", "ship_province", "ship_city", "ship_district", "ship_detail",
                   "payment_method", "goods_total_fen", "freight_fen", "order_total_fen"]  # fmt: skip


def _rows(check: str, order_ids, summaries=None) -> pd.DataFrame:
    ids = [int(i) for i in order_ids]
    text = CHECKS[check][1]
    return pd.DataFrame({"check": check, "order_id": ids,
                         "summary": list(summaries) if summaries is not None else [text] * len(ids)})  # fmt: skip


def _first(events: pd.DataFrame, state: str) -> pd.Series:
    hit = events[(events["kind"] == "state") & (events["to_state"] == state)]
    return hit.groupby("order_id")["occurred_at"].min()


def process_checks(
    events: pd.DataFrame, orders: pd.DataFrame, noticed: set, with_case: set, refunded: set
) -> pd.DataFrame:
    """``events``: order_id, id, occurred_at, kind, from_state, to_state. ``orders``: order_id, review_due_at,
    payment_state. ``noticed``: orders with a queued notice; ``with_case``: orders with an after-sales case;
    ``refunded``: orders refunded (a refund of an order rejected or cancelled before shipment needs no case)."""
    if events.empty:  # nothing happened in the period (a fresh store): only the refunds can be checked
        return _rows("REFUND_WITHOUT_CASE", sorted(set(refunded) - set(with_case)))
    events = events.sort_values(["order_id", "occurred_at", "id"], kind="stable")
    events = events.assign(occurred_at=pd.to_datetime(events["occurred_at"], utc=True))
    state = events[events["kind"] == "state"]
    pieces = []

    approved = _first(events, "approved")
    pending = _first(events, "pending_review")
    reviewed_first = pending.reindex(approved.index)
    pieces.append(
        _rows(
            "APPROVED_WITHOUT_REVIEW",
            approved.index[(reviewed_first.isna() | (reviewed_first > approved)).to_numpy()],
        )
    )

    manual = state[
        (state["from_state"] == "pending_review") & state["to_state"].isin(("approved", "rejected"))
    ]
    due = pd.to_datetime(orders.set_index("order_id")["review_due_at"], utc=True)
    # reindex, not map: map on an empty frame casts the datetimes to its float dtype and fails (an empty store)
    # to_datetime(utc): when every due date is missing, to_numpy() drops the zone and the comparison below fails
    manual = manual.assign(due=pd.to_datetime(due.reindex(manual["order_id"].to_numpy()).to_numpy(), utc=True))
    late = manual[manual["due"].notna() & (manual["occurred_at"] > manual["due"])].drop_duplicates("order_id")
    pieces.append(_rows("REVIEWED_AFTER_DEADLINE", late["order_id"],
                        [f"decided {t:%Y-%m-%d %H:%M} UTC, due {d:%Y-%m-%d %H:%M} UTC"
                         for t, d in zip(late["occurred_at"], late["due"], strict=True)]))  # fmt: skip

    shipped = _first(events, "shipped")
    before = approved.reindex(shipped.index)
    pieces.append(
        _rows("SHIPPED_WITHOUT_APPROVAL", shipped.index[(before.isna() | (before > shipped)).to_numpy()])
    )

    # The order's creation is recorded as a state event into received with no state before it.
    created = state["from_state"].isna() & (state["to_state"] == "received")
    previous = state.groupby("order_id")["to_state"].shift(1).fillna("received")
    legal = np.array([is_legal(f, t) if isinstance(f, str) and isinstance(t, str) else False
                      for f, t in zip(state["from_state"], state["to_state"], strict=True)], dtype=bool)  # fmt: skip
    broken = state[~created.to_numpy() & ((previous.to_numpy() != state["from_state"].to_numpy()) | ~legal)]
    broken = broken.drop_duplicates("order_id")
    pieces.append(
        _rows(
            "STATE_SKIPPED",
            broken["order_id"],
            [f"{f} → {t}" for f, t in zip(broken["from_state"], broken["to_state"], strict=True)],
        )
    )

    settled = _first(events, "settled")
    unpaid = set(orders.loc[orders["payment_state"] != "paid", "order_id"])
    pieces.append(_rows("SETTLED_UNPAID", [o for o in settled.index if o in unpaid]))

    changes = events[events["kind"] == "change"]
    # reindex, not map (as above): no change events, or none approved yet, must not fail on the empty frame's dtype
    changes = changes.assign(approved=approved.reindex(changes["order_id"].to_numpy()).to_numpy())
    after = changes[changes["approved"].notna() & (changes["occurred_at"] > changes["approved"])]
    last_review = state[state["to_state"] == "pending_review"].groupby("order_id")["occurred_at"].max()
    after = after.assign(review=last_review.reindex(after["order_id"].to_numpy()).to_numpy())
    unreviewed = after[after["review"].isna() | (after["review"] < after["occurred_at"])].drop_duplicates(
        "order_id"
    )
    pieces.append(_rows("CHANGED_AFTER_APPROVAL", unreviewed["order_id"]))

    outcome = state[state["to_state"].isin(CUSTOMER_OUTCOMES)].drop_duplicates("order_id")
    silent = outcome[~outcome["order_id"].isin(noticed)]
    pieces.append(
        _rows(
            "OUTCOME_WITHOUT_NOTICE",
            silent["order_id"],
            [f"{t} without a notice" for t in silent["to_state"]],
        )
    )

    # Money sent back for an order we turned down or that was cancelled before it shipped is the payment's
    # reversal, not an after-sales remedy: it needs no case (settlement explains such refunds the same way).
    unfulfilled = set(state.loc[state["to_state"].isin(UNFULFILLED), "order_id"]) - set(shipped.index)
    pieces.append(_rows("REFUND_WITHOUT_CASE", sorted(set(refunded) - set(with_case) - unfulfilled)))
    return pd.concat([p for p in pieces if not p.empty] or [_rows("STATE_SKIPPED", [])], ignore_index=True)


def amount_band(total_fen: pd.Series, bands_fen: list[int]) -> pd.Series:
    edges = [-np.inf, *bands_fen, np.inf]
    return pd.cut(total_fen.astype("float64"), edges, right=False, labels=False).astype("int64")


def stratified_sample(orders: pd.DataFrame, size: int, seed: int, bands_fen: list[int]) -> pd.DataFrame:
    """``size`` orders spread over strata (channel × region × amount band) in proportion, at least one per
    stratum while the size allows; the same orders, seed and size give the same sample."""
    if orders.empty:
        return orders
    frame = orders.sort_values("order_id").assign(band=amount_band(orders.sort_values("order_id")["order_total_fen"],
                                                                   bands_fen))  # fmt: skip
    frame["stratum"] = (
        frame["channel"].astype(str) + "|" + frame["region"].astype(str) + "|" + frame["band"].astype(str)
    )
    rng = np.random.default_rng(seed)
    strata = frame.groupby("stratum", sort=True)
    share = strata.size() / len(frame)
    quota = np.maximum(1, np.floor(share * size)).astype(int)
    picked = []
    for stratum, group in strata:
        take = min(int(quota[stratum]), len(group))
        picked.append(group.iloc[np.sort(rng.choice(len(group), size=take, replace=False))])
    sample = pd.concat(picked)
    if len(sample) > size:
        sample = sample.iloc[np.sort(rng.choice(len(sample), size=size, replace=False))]
    return sample.sort_values("order_id")


def compare_fields(stored: pd.DataFrame, derived: pd.DataFrame) -> pd.DataFrame:
    """Field-by-field differences between the stored orders and the orders re-derived from their raw records
    (both keyed by ``order_id``); a sampled order without a re-derived one is ``DATA_RAW_MISSING``."""
    merged = stored.merge(derived, on="order_id", how="left", suffixes=("", "_raw"), indicator=True)
    missing = merged[merged["_merge"] == "left_only"]
    rows = [_rows("DATA_RAW_MISSING", missing["order_id"])]
    found = merged[merged["_merge"] == "both"]
    differs = []
    for r in found.itertuples(index=False):
        fields = [f for f in COMPARED_FIELDS if f"{f}_raw" in found.columns
                  and not _same(getattr(r, f), getattr(r, f"{f}_raw"))]  # fmt: skip
        if fields:
            differs.append((r.order_id, "fields differ: " + ", ".join(fields)))
    if differs:
        rows.append(_rows("DATA_FIELD_MISMATCH", [d[0] for d in differs], [d[1] for d in differs]))
    return pd.concat(rows, ignore_index=True)


def _same(a, b) -> bool:
    if (a is None or (isinstance(a, float) and np.isnan(a))) and (
        b is None or (isinstance(b, float) and np.isnan(b))
    ):
        return True
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a).strip() == str(b).strip()


def amount_checks(sample: pd.DataFrame, received: pd.Series) -> pd.DataFrame:
    """Paid orders of the sample for which settlement recorded receipts, where the amount received differs from
    the order total (orders settlement has not seen yet are not judged; settling unpaid is a process check)."""
    paid = sample[(sample["payment_state"] == "paid") & sample["order_id"].isin(received.index)]
    got = paid["order_id"].map(received).fillna(0).astype("int64")
    off = paid[got.to_numpy() != paid["order_total_fen"].astype("int64").to_numpy()]
    got = got[off.index]
    return _rows(
        "DATA_AMOUNT_MISMATCH",
        off["order_id"],
        [
            f"total {t / 100:.2f}, received {g / 100:.2f}"
            for t, g in zip(off["order_total_fen"], got, strict=True)
        ],
    )


def satisfaction_check(scores: pd.Series, target: float, period: str) -> pd.DataFrame:
    if scores.empty or scores.mean() >= target:
        return _rows("SATISFACTION_LOW", [])
    return pd.DataFrame({"check": "SATISFACTION_LOW", "order_id": [None],
                         "summary": [f"mean satisfaction {scores.mean():.2f} of {len(scores)} surveys in {period}, "
                                     f"target {target}"]})  # fmt: skip


def stock_duty_check(verified: pd.DataFrame, adjusters: pd.DataFrame, staff) -> pd.DataFrame:
    """Separated duties (issue 20, ``adjust_and_verify``): ``verified`` (stocktake_id, stocktake_no, verified_by)
    against ``adjusters`` (stocktake_id, actor, what: ``yidi.staff.stock_adjusters``). One row per stocktake that
    its verifier had adjusted, while ``staff`` (the policy) separates these duties; ``subject`` is its number."""
    from yidi.staff import same_person

    if "adjust_and_verify" not in staff.separate or verified.empty or adjusters.empty:
        return _rows("STOCKTAKE_SELF_VERIFIED", []).assign(subject=None)
    pairs = verified.merge(adjusters, on="stocktake_id")
    hits = pairs[[same_person(staff, v, a) for v, a in zip(pairs["verified_by"], pairs["actor"], strict=True)]]
    hits = hits.drop_duplicates("stocktake_id")
    return pd.DataFrame({"check": "STOCKTAKE_SELF_VERIFIED", "subject": hits["stocktake_no"],
                         "order_id": pd.Series(pd.NA, index=hits.index, dtype="Int64"),  # no order (typed for COPY)
                         "summary": [f"{n} verified by {v}, who {w}" for n, v, w in
                                     zip(hits["stocktake_no"], hits["verified_by"], hits["what"], strict=True)]})  # fmt: skip


def order_duty_checks(keyed: pd.DataFrame, approved: pd.DataFrame, resolved: pd.DataFrame, staff) -> pd.DataFrame:
    """Separated duties over orders (issue 20): ``keyed`` (order_id, actor: who keyed it in), ``approved``
    (order_id, actor: who approved it), ``resolved`` (order_id, actor: who resolved its payment case). An order
    keyed in and approved by one person (``key_and_approve``), or approved and its case resolved by one person
    (``approve_and_resolve``), while the policy (``staff``) separates these duties."""
    from yidi.staff import same_person

    pieces = [_rows("KEYED_AND_APPROVED", [])]
    for check, rule, first, what in (("KEYED_AND_APPROVED", "key_and_approve", keyed, "keyed it in"),
                                     ("APPROVED_AND_RESOLVED", "approve_and_resolve", resolved,
                                      "resolved its payment case")):
        if rule not in staff.separate or first.empty or approved.empty:
            continue
        if check == "KEYED_AND_APPROVED":
            pairs = first.merge(approved, on="order_id", suffixes=("_other", "_approver"))
        else:
            pairs = approved.merge(first, on="order_id", suffixes=("_approver", "_other"))
        hits = pairs[[same_person(staff, a, b) for a, b in zip(pairs["actor_approver"], pairs["actor_other"],
                                                                 strict=True)]].drop_duplicates("order_id")  # fmt: skip
        pieces.append(_rows(check, hits["order_id"], [f"{a} approved it; {o} {what}" for a, o in
                                                       zip(hits["actor_approver"], hits["actor_other"], strict=True)]))
    return pd.concat(pieces, ignore_index=True)
