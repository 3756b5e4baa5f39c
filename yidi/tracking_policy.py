"""The ``[tracking]`` section of the policy file: carrier polling and pushes (Kuaidi100), incidents, claims and
the customer notices they send (issue 5's rules; interception, issue 18, in ``yidi/parcels_policy.py``). Every key
is documented with its default in ``yidi/defaults.toml``."""

from __future__ import annotations

from pydantic import Field, field_validator

from yidi.parcels_policy import InterceptionPolicy
from yidi.policy_base import Section

INCIDENT_TYPES = ("delay", "stale", "problem", "refused", "returned", "damaged", "lost", "unknown_waybill")


class TrackingKeywords(Section):
    """Checkpoint-text keywords that reveal trouble or progress (carriers often say 破损/丢失 only in text)."""

    damaged: list[str] = ["破损", "损坏", "受损", "外包装破"]
    lost: list[str] = ["丢失", "遗失", "丢件", "下落不明"]
    refused: list[str] = ["拒收", "拒签"]
    returning: list[str] = ["退回", "退件", "返回寄件人", "原路返回"]
    problem: list[str] = ["问题件", "疑难件", "异常件"]
    invalid_address: list[str] = ["地址不详", "地址错误", "超区", "地址不存在"]
    held: list[str] = ["滞留"]
    delivered: list[str] = ["已签收", "签收人", "已妥投", "妥投"]
    out_for_delivery: list[str] = ["派件", "派送", "投递中", "驿站", "快递柜"]
    picked_up: list[str] = ["已揽收", "已揽件", "已收件", "揽收成功"]
    ignore: list[str] = Field(
        ["如有破损", "若有破损", "如发现破损", "如外包装破损", "防止丢失", "以防丢失", "请当面验货", "请拒收",
         "可拒收", "未签收", "如有疑问"],
        description="Boilerplate removed before matching (\"如有破损请拒收\" reports no damage)",
    )  # fmt: skip


class TrackingPolicy(Section):
    query_url: str = Field("https://poll.kuaidi100.com/poll/query.do", description="Kuaidi100 real-time query")
    subscribe_url: str = Field("https://poll.kuaidi100.com/poll", description="Kuaidi100 push subscription")
    customer_env: str = Field("YIDI_KUAIDI100_CUSTOMER", description="Env var holding the Kuaidi100 customer id")
    key_env: str = Field("YIDI_KUAIDI100_KEY", description="Env var holding the Kuaidi100 key")
    salt_env: str = Field("YIDI_KUAIDI100_SALT", description="Env var holding the push signature salt")
    min_poll_interval_minutes: int = Field(
        30, ge=30, le=1440, description="Each waybill at most this often (Kuaidi100 locks faster polling)"
    )
    requests_per_second: float = Field(10.0, gt=0, description="R: the account's global query rate")
    rate_limit_name: str = Field("kuaidi100-query", description="Prefect global rate limit shared by all runs")
    pace_fraction: float = Field(0.95, gt=0.5, le=1, description="Share of R actually used (network jitter)")
    batch_size: int = Field(500, ge=1, le=20000, description="Waybills per Prefect task")
    parallel_batches: int = Field(3, ge=1, le=16, description="Batches in flight (storing overlaps polling)")
    http_workers: int = Field(16, ge=1, le=256, description="Requests in flight per batch")
    request_timeout_seconds: float = Field(10.0, gt=0)
    max_attempts: int = Field(4, ge=1, le=10, description="Tries per waybill on transient errors")
    retry_backoff_seconds: float = Field(1.0, ge=0, description="First retry delay; doubles each try")
    retry_backoff_max_seconds: float = Field(30.0, ge=0)
    rate_limited_backoff_seconds: float = Field(2.0, ge=0, description="First delay after a throttling answer")
    circuit_breaker_failures: int = Field(
        20, ge=1, description="Consecutive unavailable answers that end the cycle's polling early"
    )
    stale_after_hours: int = Field(48, ge=1, description="No carrier update for this long opens a stale incident")
    expire_after_days: int = Field(30, ge=1, description="No update for this long: status expired, polling stops")
    unknown_waybill_after_hours: int = Field(
        24, ge=1, description="Carrier still does not know the waybill this long after shipping: incident"
    )
    delay_grace_working_days: int = Field(
        0, ge=0, description="Late when this many working days past the expected delivery date have begun"
    )
    incident_owners: dict[str, str] = {
        "delay": "logistics-desk", "stale": "logistics-desk", "problem": "logistics-desk",
        "refused": "customer-service", "returned": "customer-service", "damaged": "claims-desk",
        "lost": "claims-desk", "unknown_waybill": "warehouse-dispatch",
    }  # fmt: skip
    incident_due_working_days: dict[str, int] = {
        "delay": 1, "stale": 1, "problem": 1, "refused": 2, "returned": 3, "damaged": 2, "lost": 2,
        "unknown_waybill": 1,
    }  # fmt: skip
    order_exception_incidents: list[str] = Field(
        ["delay", "stale", "problem", "refused", "returned", "damaged", "lost", "unknown_waybill"],
        description="Open incidents of these types put the order in state exception",
    )
    notify_incidents: list[str] = Field(
        ["delay", "problem", "refused", "returned", "damaged", "lost"],
        description="Incident types the customer is told about (P2)",
    )
    notify_statuses: list[str] = Field(["out_for_delivery", "delivered"], description="Progress notices (T2)")
    delay_revised_working_days: int = Field(1, ge=1, le=30, description="Delay notice: revised date N working days on")
    notice_media: list[str] = Field(["sms", "email"], description="Each medium the order has a contact for")
    claim_due_working_days: int = Field(5, ge=1, description="File a loss/damage claim with the carrier within")
    uninsured_freight_multiple: dict[str, float] = Field(
        {"default": 3.0},
        description="Uninsured loss/damage: claim at most this multiple of the freight (per carrier code)",
    )
    push_enabled: bool = Field(False, description="Subscribe new shipments to Kuaidi100 pushes")
    interception: InterceptionPolicy = InterceptionPolicy()  # issue 18: 拦截
    callback_host: str = Field("127.0.0.1", description="`yidi tracking callbacks` listens here")
    callback_port: int = Field(8039, ge=1, le=65535)
    callback_path: str = "/kuaidi100/callback"
    callback_public_url: str = Field("", description="URL Kuaidi100 calls (default: http://host:port/path)")
    keywords: TrackingKeywords = TrackingKeywords()

    @field_validator("incident_owners", "incident_due_working_days")
    @classmethod
    def _known_incident_types(cls, value: dict) -> dict:
        unknown = sorted(set(value) - set(INCIDENT_TYPES))
        if unknown:
            raise ValueError(f"unknown incident types {unknown}; known: {list(INCIDENT_TYPES)}")
        return value

    @field_validator("order_exception_incidents", "notify_incidents")
    @classmethod
    def _known_incident_list(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(INCIDENT_TYPES))
        if unknown:
            raise ValueError(f"unknown incident types {unknown}; known: {list(INCIDENT_TYPES)}")
        return value

    @property
    def callback_url(self) -> str:
        return self.callback_public_url or f"http://{self.callback_host}:{self.callback_port}{self.callback_path}"

    @property
    def cycle_lock_name(self) -> str:
        return f"{self.rate_limit_name}-cycle"

    @property
    def global_limits(self) -> dict[str, dict[str, float]]:
        """The Prefect limits `make up` creates: the request rate (a second's worth of burst, decaying at R per
        second) and one polling cycle at a time (two would query the same waybills inside the interval)."""
        rate = self.requests_per_second
        return {
            self.rate_limit_name: {"limit": max(1, round(rate)), "slot_decay_per_second": rate},
            self.cycle_lock_name: {"limit": 1, "slot_decay_per_second": 0.0},
        }
