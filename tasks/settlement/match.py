"""Matching payment lines to orders (pure functions over DataFrames; no database, no Prefect).

Rules, tried in this order on the lines still unmatched; each match records the rule and a score (0-100):

1. ``ignored``: bank lines that are not order payments (provider settlements, withdrawals, interest; policy
   ``ignore_counterparties`` / ``ignore_memo_words``), and bank debits that name no order.
2. ``cod_waybill`` (100): a carrier COD line by (carrier, waybill) against ``shipments``.
3. ``merchant_order_no`` (100) / ``channel_order_id`` (98): the provider's merchant order number.
4. ``refund_original`` (100): a refund by the provider id of the payment it refunds.
5. ``memo_order_no`` / ``memo_invoice_no`` (95; 85 when the amounts disagree): order or invoice numbers found
   in the memo (tokens looked up, never trusted by shape). Several orders in one memo, or an invoice covering
   several orders, is a many-to-one payment: each order gets its outstanding amount in memo order, the last one
   the rest.
6. ``amount_name_date`` (fuzzy): bank credits by amount (within tolerance of an order's outstanding amount or
   next instalment), payer name (rapidfuzz WRatio against the customer name) and date window; accepted when the
   name reaches ``name_min_score``, the combined score ``auto_match_min_score`` and the best candidate beats the
   runner-up by ``ambiguity_margin``; one line per order per run.
7. ``amount_name_date_multi``: one transfer paying all of a customer's open orders in the window (sum of
   outstanding within tolerance), same name rule.

Lines matched by nothing stay unmatched and are tried again next run (a payment may arrive before its order).
One-to-many (instalments, partial payments) needs nothing special: every line is matched on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import fuzz
from rapidfuzz.process import cpdist

from yidi.settlement_policy import SettlementPolicy

MATCH_COLUMNS = ["payment_line_id", "order_id", "amount_fen", "rule", "score"]
LINE_COLUMNS = [
    "id", "source", "kind", "amount_fen", "txn_time", "merchant_order_no", "provider_txn_id", "original_txn_id",
    "payer_name", "memo", "waybill_no",
]  # fmt: skip
ORDER_COLUMNS = [
    "id", "order_no", "channel_order_id", "customer_id", "customer_name", "order_total_fen", "outstanding_fen",
    "next_due_fen", "order_time", "due_time", "state", "payment_method",
]  # fmt: skip
# Orders no payment is expected for: fuzzy matching never proposes them.
CLOSED_FOR_PAYMENT = frozenset({"cancelled", "rejected", "auto_rejected", "returned", "closed"})


@dataclass
class MatchResult:
    matches: pd.DataFrame  # MATCH_COLUMNS
    ignored: pd.DataFrame  # payment_line_id, reason

    def summary(self) -> dict:
        by_rule = (
            self.matches.groupby("rule")["payment_line_id"].nunique().to_dict() if len(self.matches) else {}
        )
        return {
            "matched_lines": int(self.matches["payment_line_id"].nunique()) if len(self.matches) else 0,
            "ignored_lines": len(self.ignored),
            "by_rule": {k: int(v) for k, v in by_rule.items()},
        }


def empty_matches() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "payment_line_id": pd.Series(dtype="int64"),
            "order_id": pd.Series(dtype="int64"),
            "amount_fen": pd.Series(dtype="int64"),
            "rule": pd.Series(dtype="string"),
            "score": pd.Series(dtype="float64"),
        }
    )


def _single(frame: pd.DataFrame, rule: str, score: float) -> pd.DataFrame:
    """Whole-line matches: ``frame`` has line ``id``, ``order_id`` and ``amount_fen``."""
    return pd.DataFrame(
        {
            "payment_line_id": frame["id"].to_numpy(dtype="int64"),
            "order_id": frame["order_id"].to_numpy(dtype="int64"),
            "amount_fen": frame["amount_fen"].to_numpy(dtype="int64"),
            "rule": rule,
            "score": float(score),
        }
    )


class KeyLookup:
    """key -> order id for keys naming exactly one order (a channel id shared by two channels names none).

    Lookups are pyarrow hash look-ups (``index_in``): about twice as fast as a pandas merge on Arrow strings,
    and every key the run needs is looked up in one call so the 1M-key hash table is built once. ``unique``
    promises the keys are unique (order numbers are, by the store's constraint); otherwise only the keys that
    were found are checked for a second order with the same key.
    """

    def __init__(self, keys: pd.Series, order_ids: pd.Series, *, unique: bool = False):
        present = keys.notna().to_numpy()
        self.values = pa.array(keys[present].astype("string"), type=pa.large_string())
        self.ids = order_ids[present].to_numpy(dtype="int64")
        self.unique = unique

    def lookup(self, keys: pd.Series) -> np.ndarray:
        """Order id per key; -1 when no order (or several) has it."""
        if not len(keys) or not len(self.values):
            return np.full(len(keys), -1, dtype="int64")
        probe = pa.array(keys.astype("string"), type=pa.large_string())
        position = pc.fill_null(pc.index_in(probe, value_set=self.values), -1).to_numpy(zero_copy_only=False)
        found = np.where(position >= 0, self.ids[np.maximum(position, 0)], -1)
        if not self.unique and (position >= 0).any():
            hits = pc.unique(probe.filter(pa.array(position >= 0)))
            candidates = self.values.filter(pc.is_in(self.values, value_set=hits))
            counts = pc.value_counts(candidates)
            shared = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
            if len(shared):
                found[pc.is_in(probe, value_set=shared).to_numpy(zero_copy_only=False)] = -1
        return found


def _ignore_mask(lines: pd.DataFrame, policy: SettlementPolicy) -> pd.Series:
    is_bank = lines["source"].str.startswith("bank:")
    mask = pd.Series(False, index=lines.index)
    if policy.ignore_counterparties:
        mask |= lines["payer_name"].isin(policy.ignore_counterparties).fillna(False)
    if policy.ignore_memo_words:
        pattern = "|".join(map(_escape, policy.ignore_memo_words))
        mask |= lines["memo"].str.contains(pattern, regex=True).fillna(False)
    return (mask & is_bank).astype(bool)


def _escape(word: str) -> str:
    import re

    return re.escape(word)


def memo_tokens(lines: pd.DataFrame, pattern: str) -> pd.DataFrame:
    """Every reference-looking token in the memos: line ``id``, ``raw`` token, ``key`` (upper-cased), ``pos``."""
    memos = lines.loc[lines["memo"].notna(), ["id", "memo"]]
    if memos.empty:
        return pd.DataFrame(
            {"id": pd.Series(dtype="int64"), "raw": pd.Series(dtype="string"), "key": pd.Series(dtype="string"),
             "pos": pd.Series(dtype="int64")}
        )  # fmt: skip
    found = memos["memo"].str.findall(pattern)
    exploded = pd.DataFrame({"id": memos["id"].to_numpy(), "raw": found.to_numpy()}).explode("raw")
    exploded = exploded.dropna(subset=["raw"]).reset_index(drop=True)
    exploded["raw"] = exploded["raw"].astype("string")
    exploded["key"] = exploded["raw"].str.upper()
    exploded = exploded.drop_duplicates(["id", "key"]).reset_index(drop=True)
    exploded["pos"] = exploded.groupby("id").cumcount()
    return exploded


def _allocate(groups: pd.DataFrame, amounts: pd.Series, outstanding: pd.Series, tolerance) -> pd.DataFrame:
    """Many-to-one: each order its outstanding (in memo order), the last one whatever is left (vectorised).

    ``groups``: line ``id``, ``order_id``, ``pos`` (several rows per line). Returns id, order_id, amount_fen,
    exact (whether the orders' outstanding amounts add up to the line within tolerance). A refund, or a line for
    orders that owe nothing, goes whole to the first order named.
    """
    g = groups.sort_values(["id", "pos"], kind="stable").reset_index(drop=True)
    amount = amounts.reindex(g["id"]).to_numpy(dtype="int64")
    owed = np.maximum(outstanding.reindex(g["order_id"]).fillna(0).to_numpy(dtype="int64"), 0)
    by_line = g.groupby("id", sort=False)
    owed_series = pd.Series(owed, index=g.index)
    owed_before = (owed_series.groupby(g["id"]).cumsum() - owed_series).to_numpy()
    owed_total = owed_series.groupby(g["id"]).transform("sum").to_numpy()
    first = (by_line.cumcount() == 0).to_numpy()
    last = (by_line.cumcount(ascending=False) == 0).to_numpy()
    share = np.clip(amount - owed_before, 0, owed)
    share_series = pd.Series(np.where(last, 0, share), index=g.index)
    shared_before_last = share_series.groupby(g["id"]).transform("sum").to_numpy()
    share = np.where(last, amount - shared_before_last, share)
    whole = (amount <= 0) | (owed_total == 0)
    share = np.where(whole, np.where(first, amount, 0), share)
    exact = np.abs(owed_total - amount) <= tolerance(np.maximum(owed_total, 1))
    out = pd.DataFrame({"id": g["id"].to_numpy(), "order_id": g["order_id"].to_numpy(), "amount_fen": share,
                        "exact": exact})  # fmt: skip
    return out[(out["amount_fen"] != 0) | (first & whole)].reset_index(drop=True)


def match_lines(
    lines: pd.DataFrame,
    orders: pd.DataFrame,
    policy: SettlementPolicy,
    *,
    shipments: pd.DataFrame | None = None,
    invoices: pd.DataFrame | None = None,
    originals: pd.DataFrame | None = None,
) -> MatchResult:
    """Match unmatched payment ``lines`` (LINE_COLUMNS) to ``orders`` (ORDER_COLUMNS).

    ``shipments``: carrier, waybill_no, order_id. ``invoices``: invoice_no, order_id (receivables).
    ``originals``: source, provider_txn_id, order_id of payment lines matched earlier (for refunds).
    """
    lines = lines.reset_index(drop=True)
    open_mask = pd.Series(True, index=lines.index)
    results: list[pd.DataFrame] = []
    ignored_parts: list[pd.DataFrame] = []

    def take(matched_ids) -> None:
        open_mask.loc[lines["id"].isin(pd.Index(matched_ids))] = False

    # 1. not order payments at all
    skip = _ignore_mask(lines, policy)
    if skip.any():
        ignored_parts.append(
            pd.DataFrame({"payment_line_id": lines.loc[skip, "id"], "reason": "not an order payment"})
        )
        open_mask &= ~skip

    # 2. COD by carrier + waybill
    if shipments is not None and len(shipments):
        cod = lines[open_mask & (lines["kind"] == "cod") & lines["waybill_no"].notna()]
        if len(cod):
            ships = (
                shipments[["carrier", "waybill_no", "order_id"]]
                .dropna()
                .drop_duplicates(["carrier", "waybill_no"])
            )
            hit = cod.assign(carrier=cod["source"].str.removeprefix("cod:")).merge(
                ships, on=["carrier", "waybill_no"]
            )
            results.append(_single(hit, "cod_waybill", 100))
            take(hit["id"])

    # 3. merchant order number: our order number, else the channel's order id. Every key this run needs (the
    # lines' merchant order numbers and the memo tokens) is looked up once per key kind.
    memo_rows = lines[lines["memo"].notna() & ~skip]
    tokens = memo_tokens(memo_rows, policy.memo_reference_pattern)
    merchant = lines["merchant_order_no"]
    merchant_at = np.flatnonzero(merchant.notna().to_numpy())
    wanted = pd.concat([merchant.iloc[merchant_at], tokens["key"], tokens["raw"]], ignore_index=True)
    by_order_no = KeyLookup(orders["order_no"], orders["id"], unique=True).lookup(wanted)
    by_channel = KeyLookup(orders["channel_order_id"], orders["id"]).lookup(wanted)
    n_merchant, n_tokens = len(merchant_at), len(tokens)
    for rule, found, score in (("merchant_order_no", by_order_no, 100), ("channel_order_id", by_channel, 98)):
        order_id = np.full(len(lines), -1, dtype="int64")
        order_id[merchant_at] = found[:n_merchant]
        hit_mask = open_mask.to_numpy() & (order_id >= 0)
        if hit_mask.any():
            hit = lines.loc[hit_mask, ["id", "amount_fen"]].assign(order_id=order_id[hit_mask])
            results.append(_single(hit, rule, score))
            take(hit["id"])

    # 4. refunds by the payment they refund (matched earlier, or in this very run)
    refunds = lines[open_mask & lines["original_txn_id"].notna()]
    if len(refunds):
        known = [originals[["source", "provider_txn_id", "order_id"]]] if originals is not None else []
        wanted_ids = set(refunds["original_txn_id"].dropna())
        refunded_now = lines[lines["provider_txn_id"].isin(wanted_ids)][["id", "source", "provider_txn_id"]]
        matched_now = pd.concat(results) if results else empty_matches()
        if len(refunded_now) and len(matched_now):
            now = refunded_now.merge(
                matched_now[["payment_line_id", "order_id"]], left_on="id", right_on="payment_line_id"
            )
            known.append(now[["source", "provider_txn_id", "order_id"]])
        if known:
            originals_map = pd.concat(known).dropna().drop_duplicates(["source", "provider_txn_id"])
            hit = refunds.merge(
                originals_map, left_on=["source", "original_txn_id"], right_on=["source", "provider_txn_id"]
            )
            results.append(_single(hit, "refund_original", 100))
            take(hit["id"])

    # 5. order / invoice numbers in the memo (bank lines mostly); tokens were looked up with the keys above
    if n_tokens:
        parts = []
        for found in (by_order_no, by_channel):
            upper, raw = found[n_merchant : n_merchant + n_tokens], found[n_merchant + n_tokens :]
            parts.append(tokens.assign(order_id=np.where(raw >= 0, raw, upper), rule="memo_order_no"))
        if invoices is not None and len(invoices):
            inv = invoices[["invoice_no", "order_id"]].dropna().drop_duplicates()
            inv = inv.assign(key=inv["invoice_no"].astype("string").str.upper())
            parts.append(tokens.merge(inv[["key", "order_id"]], on="key").assign(rule="memo_invoice_no"))
        hit = pd.concat(parts, ignore_index=True)
        hit = hit[(hit["order_id"] >= 0) & hit["id"].isin(lines.loc[open_mask, "id"])]
        hit = hit.sort_values(["id", "pos"], kind="stable").drop_duplicates(["id", "order_id"])
        if len(hit):
            outstanding = orders.set_index("id")["outstanding_fen"]
            rule_of = hit.groupby("id")["rule"].first()
            counts = hit.groupby("id")["order_id"].transform("size")
            single = hit[counts == 1].merge(lines[["id", "amount_fen"]], on="id")
            if len(single):
                due = outstanding.reindex(single["order_id"]).fillna(0).to_numpy()
                tol = policy.tolerance_fen(due)
                exact = np.abs(single["amount_fen"].to_numpy() - due) <= tol
                part = _single(single, "memo_order_no", 95)
                part["rule"] = rule_of.reindex(single["id"]).to_numpy()
                part["score"] = np.where(exact, 95.0, 85.0)
                results.append(part)
            multi = hit[counts > 1]
            if len(multi):
                amounts = lines.set_index("id")["amount_fen"]
                allocated = _allocate(
                    multi[["id", "order_id", "pos"]], amounts, outstanding, policy.tolerance_fen
                )
                part = pd.DataFrame(
                    {
                        "payment_line_id": allocated["id"].astype("int64"),
                        "order_id": allocated["order_id"].astype("int64"),
                        "amount_fen": allocated["amount_fen"].astype("int64"),
                        "rule": rule_of.reindex(allocated["id"]).to_numpy(),
                        "score": np.where(allocated["exact"], 95.0, 85.0),
                    }
                )
                results.append(part)
            take(hit["id"])

    # bank debits naming no order are our own outgoing payments, not customer money
    outgoing = open_mask & (lines["kind"] == "debit")
    if outgoing.any():
        ignored_parts.append(
            pd.DataFrame(
                {"payment_line_id": lines.loc[outgoing, "id"], "reason": "outgoing payment, no order named"}
            )
        )
        open_mask &= ~outgoing

    # 6./7. amount + payer name + date window
    fuzzy_lines = lines[
        open_mask & (lines["kind"] == "credit") & lines["payer_name"].notna() & (lines["amount_fen"] > 0)
    ]
    if len(fuzzy_lines) and len(orders):
        targets = _fuzzy_orders(orders, policy)
        single = fuzzy_single(fuzzy_lines, targets, policy)
        results.append(single)
        rest = fuzzy_lines[~fuzzy_lines["id"].isin(single["payment_line_id"])]
        if len(rest):
            results.append(fuzzy_multi(rest, targets, policy))

    matches = (
        pd.concat([r for r in results if len(r)], ignore_index=True)
        if any(len(r) for r in results)
        else empty_matches()
    )
    matches = matches.astype(
        {"payment_line_id": "int64", "order_id": "int64", "amount_fen": "int64", "score": "float64"}
    )
    matches["rule"] = matches["rule"].astype("string")
    ignored = (
        pd.concat(ignored_parts, ignore_index=True)
        if ignored_parts
        else pd.DataFrame({"payment_line_id": pd.Series(dtype="int64"), "reason": pd.Series(dtype="string")})
    )
    return MatchResult(matches=matches, ignored=ignored)


def _fuzzy_orders(orders: pd.DataFrame, policy: SettlementPolicy) -> pd.DataFrame:
    """Open orders as fuzzy targets: one row per amount a payment could carry (outstanding, next instalment)."""
    open_orders = orders[
        (orders["outstanding_fen"] > 0)
        & ~orders["state"].isin(CLOSED_FOR_PAYMENT)
        & orders["customer_name"].notna()
        & orders["payment_method"].fillna("bank_transfer").isin(policy.fuzzy_payment_methods)
    ]
    if open_orders.empty:
        return open_orders.assign(target_fen=pd.Series(dtype="int64"))
    order_time = pd.to_datetime(open_orders["order_time"], utc=True)
    due_time = pd.to_datetime(open_orders["due_time"], utc=True).fillna(order_time)
    later = due_time.where(due_time > order_time, order_time)
    # Series, not .to_numpy(): aware timestamps and Arrow strings would become slow Python objects
    base = pd.DataFrame(
        {
            "order_id": open_orders["id"],
            "customer_id": open_orders["customer_id"],
            "customer_name": open_orders["customer_name"],
            "outstanding_fen": open_orders["outstanding_fen"],
            "window_start": order_time - pd.Timedelta(days=policy.match_days_before_order),
            "window_end": later + pd.Timedelta(days=policy.match_days_after_due),
            "anchor": order_time,
        }
    ).reset_index(drop=True)
    targets = [base.assign(target_fen=base["outstanding_fen"])]
    next_due = open_orders["next_due_fen"].to_numpy()
    differs = (next_due > 0) & (next_due != open_orders["outstanding_fen"].to_numpy())
    if differs.any():
        targets.append(base[differs].assign(target_fen=next_due[differs]))
    frame = pd.concat(targets, ignore_index=True)
    frame["tol_fen"] = policy.tolerance_fen(frame["target_fen"].to_numpy())
    return frame


def _candidate_pairs(lines: pd.DataFrame, targets: pd.DataFrame) -> pd.DataFrame:
    """(line, target) pairs within amount tolerance and date window.

    An equi-join on amount buckets as wide as the largest tolerance (each line looks in its bucket and the two
    next to it), then the exact tolerance and window filters: a hash join instead of a range join.
    """
    width = int(targets["tol_fen"].max()) + 1
    probe = lines[["id", "amount_fen", "txn_time", "payer_name"]]
    bucket = probe["amount_fen"].to_numpy() // width
    probes = pd.concat([probe.assign(bucket=bucket + k) for k in (-1, 0, 1)], ignore_index=True)
    pairs = probes.merge(targets.assign(bucket=targets["target_fen"].to_numpy() // width), on="bucket")
    keep = (
        ((pairs["amount_fen"] - pairs["target_fen"]).abs() <= pairs["tol_fen"])
        & (pairs["txn_time"] >= pairs["window_start"])
        & (pairs["txn_time"] <= pairs["window_end"])
    )
    columns = ["id", "order_id", "customer_id", "amount_fen", "target_fen", "tol_fen", "txn_time", "anchor",
               "payer_name", "customer_name", "outstanding_fen"]  # fmt: skip
    return pairs.loc[keep.to_numpy(), columns].reset_index(drop=True)


_NAME_NOISE = r"[\s\W_]+|(股份)?有限(责任)?公司$|公司$"


def normalise_names(names: pd.Series) -> list[str]:
    """Names compared without spacing, punctuation, full-width forms or the company-form suffix
    (重庆两江机电 pays for 重庆两江机电有限公司). Each distinct name is normalised once."""
    codes, uniques = pd.factorize(names.astype("string").fillna(""))
    clean = pd.Series(uniques, dtype="string").str.normalize("NFKC").str.replace(_NAME_NOISE, "", regex=True)
    return np.asarray(clean.tolist(), dtype=object)[codes].tolist()


def _scores(pairs: pd.DataFrame) -> np.ndarray:
    name = cpdist(
        normalise_names(pairs["payer_name"]),
        normalise_names(pairs["customer_name"]),
        scorer=fuzz.WRatio,
        workers=-1,
    )
    pairs["name_score"] = name
    diff = np.abs(pairs["amount_fen"].to_numpy() - pairs["target_fen"].to_numpy())
    amount_score = 100.0 * (1.0 - diff / (pairs["tol_fen"].to_numpy() + 1.0))
    days = np.abs(
        (pd.to_datetime(pairs["txn_time"], utc=True) - pd.to_datetime(pairs["anchor"], utc=True)).dt.days
    )
    date_score = np.clip(100.0 - 2.0 * days.to_numpy(), 0.0, 100.0)
    return 0.6 * name + 0.25 * amount_score + 0.15 * date_score


def _accept(pairs: pd.DataFrame, policy: SettlementPolicy, key: str) -> pd.DataFrame:
    """Per line: the best candidate if good enough and clearly better than the runner-up; one line per ``key``."""
    pairs = pairs[pairs["name_score"] >= policy.name_min_score]
    if pairs.empty:
        return pairs
    pairs = pairs.sort_values(["id", "score"], ascending=[True, False], kind="stable")
    pairs = pairs.drop_duplicates(["id", key])
    rank = pairs.groupby("id").cumcount()
    best = pairs[rank == 0].set_index("id")
    second = pairs[rank == 1].set_index("id")["score"].reindex(best.index).fillna(-np.inf)
    ok = (best["score"] >= policy.auto_match_min_score) & (best["score"] - second >= policy.ambiguity_margin)
    best = best[ok].reset_index()
    # two payments proposing the same order: the better one wins, the other waits for a person or the next run
    return best.sort_values("score", ascending=False, kind="stable").drop_duplicates(key)


def fuzzy_single(lines: pd.DataFrame, targets: pd.DataFrame, policy: SettlementPolicy) -> pd.DataFrame:
    """One line, one order: ``targets`` from ``_fuzzy_orders``."""
    if targets.empty:
        return empty_matches()
    pairs = _candidate_pairs(lines, targets)
    if pairs.empty:
        return empty_matches()
    pairs["score"] = _scores(pairs)
    best = _accept(pairs, policy, "order_id")
    return pd.DataFrame(
        {
            "payment_line_id": best["id"].astype("int64"),
            "order_id": best["order_id"].astype("int64"),
            "amount_fen": best["amount_fen"].astype("int64"),
            "rule": "amount_name_date",
            "score": best["score"].round(1).astype("float64"),
        }
    )


def fuzzy_multi(lines: pd.DataFrame, targets: pd.DataFrame, policy: SettlementPolicy) -> pd.DataFrame:
    """One transfer for all of a customer's open orders (no references): sum of outstanding within tolerance."""
    targets = targets[targets["target_fen"] == targets["outstanding_fen"]]
    if targets.empty:
        return empty_matches()
    party = targets["customer_id"].astype("Int64").astype("string").fillna("name:" + targets["customer_name"])
    targets = targets.assign(party=party)
    grouped = targets.groupby("party").agg(
        customer_name=("customer_name", "first"),
        target_fen=("outstanding_fen", "sum"),
        orders=("order_id", "size"),
        window_start=("window_start", "max"),
        window_end=("window_end", "min"),
        anchor=("anchor", "max"),
    )
    grouped = grouped[
        (grouped["orders"] >= 2) & (grouped["window_start"] <= grouped["window_end"])
    ].reset_index()
    if grouped.empty:
        return empty_matches()
    grouped["tol_fen"] = policy.tolerance_fen(grouped["target_fen"].to_numpy())
    grouped = grouped.rename(columns={"party": "order_id"}).assign(
        customer_id=0, outstanding_fen=grouped["target_fen"]
    )
    pairs = _candidate_pairs(lines, grouped)
    if pairs.empty:
        return empty_matches()
    pairs["score"] = _scores(pairs)
    best = _accept(pairs, policy, "order_id").rename(columns={"order_id": "party"})
    if best.empty:
        return empty_matches()
    members = targets[["party", "order_id", "outstanding_fen"]].merge(
        best[["id", "party", "score", "amount_fen"]], on="party"
    )
    members = members.sort_values(["id", "order_id"], kind="stable")
    members["pos"] = members.groupby("id").cumcount()
    outstanding = targets.drop_duplicates("order_id").set_index("order_id")["outstanding_fen"]
    allocated = _allocate(
        members[["id", "order_id", "pos"]],
        best.set_index("id")["amount_fen"],
        outstanding,
        policy.tolerance_fen,
    )
    score = best.set_index("id")["score"].round(1)
    return pd.DataFrame(
        {
            "payment_line_id": allocated["id"].astype("int64"),
            "order_id": allocated["order_id"].astype("int64"),
            "amount_fen": allocated["amount_fen"].astype("int64"),
            "rule": "amount_name_date_multi",
            "score": score.reindex(allocated["id"]).to_numpy(dtype="float64"),
        }
    )
