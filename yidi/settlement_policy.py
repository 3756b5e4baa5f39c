"""The settlement section of the policy file (``[settlement]``): accounts, fee contracts, tolerances, bank
statement templates, payment terms, ageing and dunning.

Kept in its own module because bank templates are a small schema of their own; ``yidi.settings`` uses
``SettlementPolicy`` as its ``settlement`` section. Defaults with a comment per key are in ``yidi/defaults.toml``.
Money here is in yuan (``Decimal``); code converts to fen.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from yidi.money import decimal_to_fen
from yidi.policy_base import Section


def _as_list(value):
    if value is None:
        return []
    return [value] if isinstance(value, str) else value


class BankColumnMap(Section):
    """Which column of a bank's export holds each field. Each entry lists candidate header names; the first one
    present in the file is used (banks rename columns between versions: 交易日期 / 记账日期)."""

    date: list[str] = Field(description="Transaction date (may also carry the time)")
    time: list[str] = Field([], description="Transaction time when the bank puts it in its own column")
    txn_id: list[str] = Field([], description="The bank's own serial number (流水号/凭证号), when it has one")
    debit: list[str] = Field([], description="Money out (借方发生额), two-column convention")
    credit: list[str] = Field([], description="Money in (贷方发生额), two-column convention")
    amount: list[str] = Field([], description="One amount column (交易金额), with a direction flag or signed")
    direction: list[str] = Field([], description="The debit/credit flag column (借贷标志)")
    balance: list[str] = Field([], description="Balance after the transaction (余额)")
    counterparty_name: list[str] = Field([], description="对方户名")
    counterparty_account: list[str] = Field([], description="对方账号")
    counterparty_bank: list[str] = Field([], description="对方开户行")
    memo: list[str] = Field([], description="摘要/用途/附言: every one present is joined into the memo")
    own_account: list[str] = Field(
        [], description="Our own account number per row (本方账号/借记卡号), when the file has no account line"
    )

    @field_validator("*", mode="before")
    @classmethod
    def _listify(cls, value):
        return _as_list(value)


def _one_group_regex(value: str | None) -> str | None:
    if value is None:
        return value
    try:
        compiled = re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    if compiled.groups != 1:
        raise ValueError("the pattern must have exactly one capturing group")
    return value


def _strptime_formats(value: list[str]) -> list[str]:
    for fmt in value:
        if "%" not in fmt:
            raise ValueError(f"{fmt!r} is not a strptime format")
        datetime.now().strftime(fmt)
    return value


class _Layout(Section):
    """What bank and carrier templates share: how to find the header, where the data ends, what to skip."""

    encoding: str = Field(
        "gb18030", description="Text encoding of csv/txt exports when not UTF-8 (BOM/valid UTF-8 win)"
    )
    delimiter: str = Field(",", description="Field separator of csv/txt exports")
    header_row: int | None = Field(
        None,
        ge=0,
        description="0-based row of the column names; omitted = the first row (of 40) holding the columns",
    )
    detect_words: list[str] = Field(
        [],
        description="Words of which one must appear in the title lines above the header, in the header row or "
        "in the file name for the template to fit (telling apart exports with the same columns); empty = columns "
        "decide",
    )
    skip_markers: list[str] = Field(
        [], description="Rows inside the data whose first cell starts with one of these are skipped (本页小计)"
    )
    totals_row_markers: list[str] = Field(
        [], description="The totals row: first cell starts with one of these; its cells under the amount "
        "columns must equal the rows' sums"
    )
    source_note: str = Field(
        "", description="Where the layout comes from (a public sample, or 'assumption: …'); shown by "
        "`yidi settlement templates`"
    )

    @field_validator("detect_words", "skip_markers", "totals_row_markers", mode="before")
    @classmethod
    def _listify_words(cls, value):
        return _as_list(value)


class BankTemplate(_Layout):
    """One bank's corporate e-banking export layout (configured, not coded)."""

    bank_name: str = Field(description="The bank's name, shown in reports")
    columns: BankColumnMap
    amount_convention: Literal["debit_credit_columns", "signed_amount_with_flag", "signed_amount"] = Field(
        description="Two columns (借方/贷方), one amount with a 借贷标志, or one signed amount (negative = out)"
    )
    credit_flags: list[str] = Field(
        ["贷", "C", "CR", "收入", "收"], description="Flag values meaning money in"
    )
    debit_flags: list[str] = Field(
        ["借", "D", "DR", "支出", "付"], description="Flag values meaning money out"
    )
    date_formats: list[str] = Field(
        ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%Y%m%d", "%Y/%m/%d"],
        description="strptime formats of the date column",
    )
    time_formats: list[str] = Field(["%H:%M:%S", "%H%M%S"], description="strptime formats of the time column")
    account_pattern: str = Field(
        r"(?:账号|帐号)[^0-9]{0,6}([0-9][0-9 ]{5,40}[0-9])",
        description="Regex (one group) finding our account number in the lines before the header",
    )
    footer_markers: list[str] = Field(
        ["合计", "总计", "笔数"], description="A row starting with one of these ends the data (totals follow)"
    )
    debit_total_pattern: str | None = Field(
        None, description="Regex (one group) for the debit total after the data"
    )
    credit_total_pattern: str | None = Field(None, description="Regex (one group) for the credit total")
    count_pattern: str | None = Field(None, description="Regex (one group) for the number of transactions")
    account_in_file: bool = Field(
        True,
        description="The export names our account (account_pattern or columns.own_account); false = the export "
        "never does (some banks' downloads), the one account configured for the template is taken",
    )

    @field_validator("account_pattern", "debit_total_pattern", "credit_total_pattern", "count_pattern")
    @classmethod
    def _one_group_regex(cls, value: str | None) -> str | None:
        return _one_group_regex(value)

    @field_validator("date_formats", "time_formats")
    @classmethod
    def _formats(cls, value: list[str]) -> list[str]:
        return _strptime_formats(value)

    @model_validator(mode="after")
    def _convention_columns(self) -> BankTemplate:
        c = self.columns
        if self.amount_convention == "debit_credit_columns" and not (c.debit and c.credit):
            raise ValueError("debit_credit_columns needs columns.debit and columns.credit")
        if self.amount_convention == "signed_amount_with_flag" and not (c.amount and c.direction):
            raise ValueError("signed_amount_with_flag needs columns.amount and columns.direction")
        if self.amount_convention == "signed_amount" and not c.amount:
            raise ValueError("signed_amount needs columns.amount")
        return self


class CodColumnMap(Section):
    """Which column of a carrier's COD remittance export holds each field (candidate header names, first
    present wins)."""

    waybill: list[str] = Field(description="Waybill number (运单号)")
    collected: list[str] = Field(description="COD amount collected from the customer (代收金额)")
    remit_date: list[str] = Field([], description="Remittance date (回款日期); else remit_date_labels above")
    order_no: list[str] = Field([], description="Our order number as given to the carrier")
    recipient: list[str] = Field([], description="Recipient (收件人)")
    fee: list[str] = Field([], description="The carrier's COD fee (手续费)")
    remitted: list[str] = Field([], description="Amount paid back (回款金额 = 代收 − 手续费)")
    signed_date: list[str] = Field([], description="Delivery/sign date (签收日期)")
    status: list[str] = Field([], description="Remittance status per waybill (回款状态)")
    batch_no: list[str] = Field([], description="Remittance batch per row, when the export has it as a column")
    memo: list[str] = Field([], description="Remarks")

    @field_validator("*", mode="before")
    @classmethod
    def _listify(cls, value):
        return _as_list(value)


def _labels_pattern(labels: list[str], value: str) -> re.Pattern:
    return re.compile("(?:" + "|".join(re.escape(x) for x in labels) + ")" + r"[^0-9A-Za-z]{0,4}" + value)


class CodTemplate(_Layout):
    """One carrier's COD remittance export (代收货款回款明细) layout, configured, not coded. The key is the
    carrier's Kuaidi100 code (the source becomes ``cod:<key>``)."""

    carrier_name: str = Field(description="The carrier's name, shown in reports")
    columns: CodColumnMap
    date_formats: list[str] = Field(
        ["%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M:%S"],
        description="strptime formats of the date columns",
    )
    account_labels: list[str] = Field(
        ["月结卡号", "月结账号", "客户编码", "客户编号", "客户代码"],
        description="Labels before our account at the carrier in the title lines",
    )
    batch_labels: list[str] = Field(
        ["回款批次号", "返款批次号", "批次号", "结算单号"], description="Labels before the remittance batch number"
    )
    remit_date_labels: list[str] = Field(
        ["回款日期", "返款日期", "结算日期"], description="Labels before the remittance date in the title lines"
    )
    fee_sign: Literal["positive", "negative"] = Field(
        "positive", description="How the fee is printed: 'positive' (12.99) or 'negative' (a deduction, -12.99)"
    )
    remitted_statuses: list[str] = Field(
        ["已回款", "已返款", "已结算", "回款成功", "已打款"],
        description="Status values meaning the money was paid back (rows with these are remittances)",
    )
    pending_statuses: list[str] = Field(
        ["未回款", "待回款", "回款中", "未返款", "待结算", "未结算"],
        description="Status values meaning not paid back yet: listed, not money; any other status refuses the file",
    )
    footer_markers: list[str] = Field(
        ["合计", "总计", "笔数", "总笔数"], description="A row starting with one of these ends the data"
    )
    count_pattern: str | None = Field(
        r"(?:总笔数|笔数|合计笔数)\s*[:：]?\s*(\d+)",
        description="Regex (one group) for the number of rows after the data; null = not stated",
    )

    @field_validator("count_pattern")
    @classmethod
    def _one_group(cls, value: str | None) -> str | None:
        return _one_group_regex(value)

    @field_validator("date_formats")
    @classmethod
    def _date_formats(cls, value: list[str]) -> list[str]:
        return _strptime_formats(value)

    @model_validator(mode="after")
    def _needs_totals_row(self) -> CodTemplate:
        if not self.totals_row_markers:
            raise ValueError("totals_row_markers is required: a COD remittance without its 合计 row is refused")
        return self

    def account_regex(self) -> re.Pattern:
        return _labels_pattern(self.account_labels, r"([0-9A-Za-z][0-9A-Za-z\-]{3,31})")

    def batch_regex(self) -> re.Pattern:
        return _labels_pattern(self.batch_labels, r"([0-9A-Za-z][0-9A-Za-z\-]{3,39})")

    def remit_date_regex(self) -> re.Pattern:
        return _labels_pattern(self.remit_date_labels, r"(\d{4}[-/年]?\d{1,2}[-/月]?\d{1,2})")


class MerchantAccounts(Section):
    """Our own accounts: a file for any other account is refused as a whole."""

    alipay: list[str] = Field([], description="Alipay merchant account ids as printed in the bill header")
    wechatpay: list[str] = Field([], description="WeChat Pay merchant numbers (商户号)")
    bank: dict[str, list[str]] = Field({}, description="Per bank template key: our account numbers")
    cod: dict[str, list[str]] = Field(
        {}, description="Per carrier code: our COD/monthly account numbers (月结卡号)"
    )

    def for_source(self, source: str) -> list[str]:
        kind, _, name = source.partition(":")
        if kind in ("alipay", "wechatpay"):
            return list(getattr(self, kind))
        if kind in ("bank", "cod"):
            return list(getattr(self, kind).get(name, []))
        return []


class FeeContract(Section):
    rate: float = Field(ge=0, lt=0.2, description="Contract fee rate (0.006 = 0.6%)")
    min_yuan: Decimal = Field(Decimal("0"), ge=0, description="Minimum fee per transaction")


class DunningStep(Section):
    name: str = Field(description="Step name shown in the dunning list")
    days_overdue: int = Field(ge=0, description="Taken when the oldest overdue amount is this many days late")
    customer_template: str | None = Field(
        None, description="Notice to the customer (yidi/templates/<name>.zh.txt)"
    )
    customer_media: list[Literal["email", "sms"]] = Field([], description="How the customer is told")
    escalate_to: str | None = Field(None, description="Internal e-mail address told at this step")
    escalation_template: str = Field("settlement_escalation", description="Template of the internal notice")


CASE_CLASSES = (
    "unpaid_past_terms",
    "short_paid",
    "overpaid",
    "duplicate_payment",
    "payment_without_order",
    "refund_without_return",
    "fee_mismatch",
    "cod_not_remitted",
)


class SettlementPolicy(Section):
    accounts: MerchantAccounts = MerchantAccounts()
    fees: dict[str, FeeContract] = Field(
        {}, description="Contract fee per source ('alipay', 'wechatpay', 'cod:<carrier>')"
    )
    fee_tolerance_fen: int = Field(1, ge=0, description="A charged fee may differ from the contract by this")
    amount_tolerance_yuan: Decimal = Field(
        Decimal("1.00"), ge=0, description="Absolute tolerance when comparing paid and due amounts"
    )
    amount_tolerance_pct: float = Field(
        0.0,
        ge=0,
        le=10,
        description="Relative tolerance (% of the amount due); the larger of the two applies",
    )
    memo_reference_pattern: str = Field(
        r"[A-Za-z0-9][A-Za-z0-9\-]{5,39}",
        description="Tokens in a bank memo that may be order or invoice numbers (looked up, not trusted)",
    )
    match_days_before_order: int = Field(
        3, ge=0, description="A transfer may precede its order by this many days"
    )
    match_days_after_due: int = Field(30, ge=0, description="…and follow its due date by this many days")
    name_min_score: float = Field(
        85, ge=0, le=100, description="Payer name vs customer name, rapidfuzz WRatio"
    )
    fuzzy_payment_methods: list[str] = Field(
        ["bank_transfer", "installment"],
        description="Orders paid by these methods may be matched by amount and payer name (COD and online "
        "payments arrive through their own files)",
    )
    auto_match_min_score: float = Field(
        80, ge=0, le=100, description="Amount+name+date matches below are left"
    )
    ambiguity_margin: float = Field(
        3,
        ge=0,
        description="A fuzzy match must beat the runner-up by this many points, else it is left to a person",
    )
    unmatched_grace_hours: int = Field(
        24,
        ge=0,
        description="An unmatched payment becomes a case after this long (its order may still arrive)",
    )
    unpaid_grace_days: int = Field(0, ge=0, description="Days after the due date before 'unpaid past terms'")
    prepaid_due_days: int = Field(
        1, ge=0, description="Prepaid orders are due this many days after the order"
    )
    cod_remittance_working_days: int = Field(
        7, ge=1, description="Carrier remits COD within this many working days of delivery"
    )
    installment_interval_days: int = Field(30, ge=1, description="Days between instalment due dates")
    ageing_bucket_days: list[int] = Field(
        [30, 60, 90], description="Upper bounds of the overdue buckets (current, 1–30, 31–60, 61–90, over 90)"
    )
    dunning_steps: list[DunningStep] = Field([], description="Escalation ladder, by days overdue")
    finance_contact: str = Field(
        "finance@example.com，023-6000 0000", description="Shown to customers in payment notices"
    )
    ignore_counterparties: list[str] = Field(
        ["支付宝（中国）网络技术有限公司", "财付通支付科技有限公司"],
        description="Bank lines from/to these are provider settlements or our own transfers, not order payments",
    )
    ignore_memo_words: list[str] = Field(
        ["提现", "结息", "利息", "账户管理费"],
        description="Bank lines whose memo holds one of these are not order payments (withdrawals, interest)",
    )
    case_owners: dict[str, str] = Field(
        {"default": "finance@example.com"},
        description="Owner of new cases per class ('default' for the rest)",
    )
    inbox_dir: str = Field(
        "settlement/inbox", description="Where bills are dropped (under YIDI_HOME unless absolute)"
    )
    report_dir: str = Field(
        "reports/settlement", description="Where xlsx reports are written (under YIDI_HOME)"
    )
    analysis_weeks: int = Field(
        8, ge=1, le=104, description="Weeks covered by the weekly settlement analysis"
    )
    bank_templates: dict[str, BankTemplate] = Field(
        {}, description="Bank statement layouts by key (icbc, cmb…); yidi.toml replaces a key whole"
    )
    cod_templates: dict[str, CodTemplate] = Field(
        {}, description="Carrier COD remittance layouts by carrier code; yidi.toml replaces a key whole"
    )

    @field_validator("memo_reference_pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("ageing_bucket_days")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if not value or any(b <= a for a, b in zip(value, value[1:], strict=False)) or value[0] < 1:
            raise ValueError("must be positive and strictly increasing, e.g. [30, 60, 90]")
        return value

    @field_validator("dunning_steps")
    @classmethod
    def _ordered_steps(cls, value: list[DunningStep]) -> list[DunningStep]:
        days = [s.days_overdue for s in value]
        if days != sorted(set(days)):
            raise ValueError("steps must have strictly increasing days_overdue")
        return value

    @field_validator("case_owners")
    @classmethod
    def _known_classes(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = set(value) - set(CASE_CLASSES) - {"default"}
        if unknown:
            raise ValueError(f"unknown case classes {sorted(unknown)}; known: {', '.join(CASE_CLASSES)}")
        return value

    def tolerance_fen(self, due_fen):
        """Allowed difference for an amount due (scalar or array): max(absolute, relative)."""
        absolute = decimal_to_fen(self.amount_tolerance_yuan)
        relative = np.floor(np.abs(due_fen) * (self.amount_tolerance_pct / 100))
        return np.maximum(absolute, relative).astype("int64")

    def owner_for(self, case_class: str) -> str:
        return self.case_owners.get(case_class) or self.case_owners.get("default", "finance@example.com")
