"""Who may decide what (issue 20): staff listed in the policy file, their roles, and separated duties.

Staff are listed under ``[staff] people`` (name, OS login, roles). A decision is accepted only from a listed
person holding a role the action needs (``ACTION_ROLES``); the CLI maps the operating-system login to a person,
or takes ``--as NAME`` (a name or a login), checked against the list. The event log then records
``role:name`` of a listed person, never free text.

Bootstrap: while ``people`` is empty and ``allow_unlisted`` is true (the shipped default, so a fresh install and
the tests work), anyone is accepted and recorded as ``role:name`` with ``"listed": false`` in the details. As soon
as one person is listed, the list is the only way in. Set ``allow_unlisted = false`` to refuse everything until
staff are listed.

Separated duties (``[staff] separate``): the same person may not key in an order and approve it
(``key_and_approve``), approve an order and resolve its payment case (``approve_and_resolve``), or adjust stock and
verify the stocktake that covers it (``adjust_and_verify``: the count's importer and whoever adjusted a counted
item by hand since its previous count, ``stock_adjusters``). A breach is refused at the time; the internal audit
flags one that got through (``tasks/risk/audit.py``: ``KEYED_AND_APPROVED``, ``APPROVED_AND_RESOLVED``,
``STOCKTAKE_SELF_VERIFIED``).
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Literal

import pandas as pd
from pydantic import Field, model_validator
from sqlalchemy import select

from yidi.policy_base import Section

Role = Literal["reviewer", "finance", "operations", "manager", "auditor"]
SeparationRule = Literal["key_and_approve", "approve_and_resolve", "adjust_and_verify"]

# The roles each guarded action needs (any one of them). Fixed in code: the issue names them, managers list people.
ACTION_ROLES: dict[str, tuple[str, ...]] = {
    "review": ("reviewer",),  # approve/reject an order (form and CLI)
    "resolve_case": ("finance",),  # settlement case resolution
    "override_grade": ("manager",),  # credit grade override
    "audit_resolve": ("operations", "finance", "manager"),  # "the fix is in" on an audit finding
    "audit_verify": ("auditor",),  # verify or close an audit finding
    "stock_adjust": ("operations",),  # stocktake import (corrects the books), manual stock adjustment
    "stocktake_verify": ("manager", "auditor"),  # sign a stocktake off
    "key_order": ("operations", "reviewer", "finance", "manager"),  # key in a phone/fax order (not auditors)
    "unmasked": ("operations", "manager", "auditor"),  # personal data in full (recorded in the access log)
}
ACTION_WORDS = {
    "review": "decide a review", "resolve_case": "resolve a settlement case",
    "override_grade": "override a credit grade", "audit_resolve": "mark an audit finding fixed",
    "audit_verify": "verify or close an audit finding", "stock_adjust": "adjust stock (stocktake or by hand)",
    "stocktake_verify": "verify a stocktake", "key_order": "key in a phone or fax order",
    "unmasked": "see personal data unmasked",
}  # fmt: skip


class NotPermitted(PermissionError):
    """The acting person is unknown, lacks the role, or would breach a separation of duties."""


class StaffMember(Section):
    name: str = Field(..., min_length=1, max_length=60, description="Recorded in the event log")
    login: str = Field("", max_length=60, description="Operating-system login the CLI maps to this person")
    roles: list[Role] = Field(..., min_length=1)


class StaffPolicy(Section):
    people: list[StaffMember] = Field([], description="Listed staff; empty = bootstrap (see allow_unlisted)")
    allow_unlisted: bool = Field(True, description="While people is empty, accept anyone (bootstrap)")
    separate: list[SeparationRule] = Field(["key_and_approve", "approve_and_resolve", "adjust_and_verify"],
                                           description="Duties one person may not both do")  # fmt: skip

    @model_validator(mode="after")
    def _unique(self) -> StaffPolicy:
        seen: set[str] = set()
        for person in self.people:
            for key in {person.name.casefold(), person.login.casefold()} - {""}:
                if key in seen:
                    raise ValueError(f"staff name or login {key!r} is listed twice")
                seen.add(key)
        return self

    def find(self, who: str) -> StaffMember | None:
        key = (who or "").strip().casefold()
        return next((p for p in self.people if key and key in (p.name.casefold(), p.login.casefold())), None)


@dataclass(frozen=True)
class Actor:
    name: str
    role: str
    listed: bool

    @property
    def text(self) -> str:
        """What the event log's actor column records."""
        return f"{self.role}:{self.name}"

    def details(self) -> dict:
        return {"person": self.name, "role": self.role, "listed": self.listed}


def os_login() -> str:
    try:
        return getpass.getuser()
    except OSError:  # pragma: no cover - no login name in some containers
        return ""


def act_as(policy: StaffPolicy, action: str, who: str | None = None) -> Actor:
    """The person doing ``action``: ``who`` (a name or login, e.g. ``--as``) or else the OS login. Raises
    ``NotPermitted`` naming the role needed."""
    roles = ACTION_ROLES[action]
    needed = " or ".join(roles)
    who = (who or "").strip() or os_login()
    if not policy.people:
        if policy.allow_unlisted and who:
            return Actor(who[:60], roles[0], False)
        raise NotPermitted(f"refused: no staff are listed ([staff] people in the policy file); to "
                           f"{ACTION_WORDS[action]} list a person with the {needed} role")  # fmt: skip
    member = policy.find(who)
    if member is None:
        raise NotPermitted(f"refused: {who!r} is not listed staff; to {ACTION_WORDS[action]} you need the {needed} "
                           f"role ([staff] people in the policy file; use --as NAME)")  # fmt: skip
    held = [r for r in roles if r in member.roles]
    if not held:
        raise NotPermitted(f"refused: {member.name} ({', '.join(member.roles)}) lacks the {needed} role needed to "
                           f"{ACTION_WORDS[action]}")  # fmt: skip
    return Actor(member.name, held[0], True)


def same_person(policy: StaffPolicy, a: str | None, b: str | None) -> bool:
    """Whether two recorded names (a name, a login or ``role:name``) are one person."""

    def canonical(value: str | None) -> str:
        value = (value or "").strip()
        value = value.split(":", 1)[1] if ":" in value else value
        member = policy.find(value)
        return (member.name if member else value).casefold()

    return bool(canonical(a)) and canonical(a) == canonical(b)


def keyed_by(conn, order_id: int) -> str | None:
    """Who keyed an order in (phone/fax form: the raw record's ``form:NAME`` source), if a person did."""
    from sqlalchemy import or_

    from yidi.schema import intake_records, orders

    ref = conn.execute(
        select(intake_records.c.source_ref).where(intake_records.c.source_ref.like("form:%"), or_(
            intake_records.c.order_id == int(order_id),
            intake_records.c.id == select(orders.c.raw_record_id).where(orders.c.id == int(order_id)).scalar_subquery(),
        )).order_by(intake_records.c.id).limit(1)
    ).scalar()  # fmt: skip
    if ref and str(ref).startswith("form:") and str(ref)[5:] not in ("", "staff"):
        return str(ref)[5:]
    return None


def approved_by(conn, order_id: int) -> str | None:
    """The reviewer who approved an order (latest approval), if any."""
    from yidi.schema_review import review_decisions

    return conn.execute(
        select(review_decisions.c.reviewer).where(review_decisions.c.order_id == int(order_id),
                                                  review_decisions.c.decision == "approve")
        .order_by(review_decisions.c.decided_at.desc()).limit(1)
    ).scalar()  # fmt: skip


def check_separation(policy: StaffPolicy, rule: str, actor: Actor, earlier: str | None, what: str) -> None:
    """Refuse ``actor`` if the policy separates ``rule`` and ``earlier`` (who did the other duty) is the same person."""
    if rule in policy.separate and earlier and same_person(policy, actor.name, earlier):
        raise NotPermitted(f"refused: {actor.name} {what}; the policy separates these duties ([staff] separate = "
                           f"{rule!r}): another person must do it")  # fmt: skip


def stock_adjusters(conn, stocktake_ids) -> pd.DataFrame:
    """Who adjusted the stock each stocktake covers (``adjust_and_verify``): the person who imported the count (its
    corrections adjust the books) and whoever adjusted a counted warehouse + item by hand (``ADJ-`` movements) after
    the previous count of that item and up to this one. Columns ``stocktake_id``, ``actor``, ``what``."""
    from sqlalchemy import and_

    from yidi.bulk import read_in
    from yidi.schema_fulfilment import stock_movements, stocktake_lines, stocktakes

    st, ln, sm = stocktakes.c, stocktake_lines.c, stock_movements.c
    ids = sorted({int(i) for i in stocktake_ids})
    empty = pd.DataFrame(columns=["stocktake_id", "actor", "what"])
    if not ids:
        return empty
    heads = read_in(conn, lambda c: select(st.id.label("stocktake_id"), st.stocktake_no, st.imported_at, st.actor)
                    .where(st.id.in_(c)), ids)  # fmt: skip
    importers = pd.DataFrame({"stocktake_id": heads["stocktake_id"], "actor": heads["actor"],
                              "what": "imported the count " + heads["stocktake_no"].astype(str)})  # fmt: skip
    counted = read_in(conn, lambda c: select(ln.stocktake_id, ln.warehouse, ln.item_code)
                      .where(ln.stocktake_id.in_(c), ln.status != "rejected").distinct(), ids)  # fmt: skip
    if counted.empty:
        return importers
    counted = counted.merge(heads[["stocktake_id", "imported_at"]], on="stocktake_id")
    counted["imported_at"] = pd.to_datetime(counted["imported_at"], utc=True)
    items = sorted(set(counted["item_code"]))
    history = read_in(conn, lambda c: select(ln.warehouse, ln.item_code, st.imported_at.label("earlier"))
                      .join(stocktakes, st.id == ln.stocktake_id).where(ln.item_code.in_(c), ln.status != "rejected"),
                      items)  # fmt: skip
    history["earlier"] = pd.to_datetime(history["earlier"], utc=True)
    pairs = counted.merge(history, on=["warehouse", "item_code"], how="left")
    pairs = pairs[pairs["earlier"] < pairs["imported_at"]]
    previous = pairs.groupby(["stocktake_id", "warehouse", "item_code"])["earlier"].max().rename("previous")
    counted = counted.merge(previous.reset_index(), on=["stocktake_id", "warehouse", "item_code"], how="left")
    manual = read_in(conn, lambda c: select(sm.warehouse, sm.item_code, sm.occurred_at, sm.actor, sm.reference)
                     .where(and_(sm.item_code.in_(c), sm.kind == "adjustment", sm.reference.like("ADJ-%"))),
                     items)  # fmt: skip
    if manual.empty:
        return importers
    manual["occurred_at"] = pd.to_datetime(manual["occurred_at"], utc=True)
    hits = counted.merge(manual, on=["warehouse", "item_code"])
    hits = hits[(hits["occurred_at"] <= hits["imported_at"])
                & (hits["previous"].isna() | (hits["occurred_at"] > hits["previous"]))]  # fmt: skip
    by_hand = pd.DataFrame({"stocktake_id": hits["stocktake_id"], "actor": hits["actor"],
                            "what": "adjusted " + hits["warehouse"] + "/" + hits["item_code"] + " by hand ("
                            + hits["reference"].astype(str) + ")"})  # fmt: skip
    return pd.concat([importers, by_hand], ignore_index=True)
