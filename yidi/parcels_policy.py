"""Issue 18's policy sections that live under other areas' sections: ``[fulfilment.parcels]`` (orders merged into
one parcel) and ``[tracking.interception]`` (拦截: stopping a parcel whose order was cancelled, refunded or changed
after its waybill existed). Kept here so ``yidi/settings.py`` stays the schema's index; every key is documented
with its default in ``yidi/defaults.toml``.
"""

from __future__ import annotations

from pydantic import Field

from yidi.policy_base import Section


class ParcelPolicy(Section):
    merge: bool = True  # ship approved orders of one customer to one address from one warehouse together
    window_hours: float = Field(24.0, gt=0)  # orders placed within this many hours of a parcel's first order join it
    max_orders: int = Field(5, ge=2, le=50)  # orders per parcel at most
    # A merged parcel waits this long before its waybill is asked for: the operator's time to undo the merge
    # (`yidi fulfilment unmerge`). Orders shipped alone never wait.
    hold_minutes: float = Field(15.0, ge=0)


class InterceptionPolicy(Section):
    enabled: bool = True
    url: str = "https://api.kuaidi100.com/label/order"  # Kuaidi100 interceptOrder (key/secret from env, as polling)
    intercept_type: str = Field("RETURN_SEND_ADDR", pattern="^(RETURN_SEND_ADDR|RETURN_SEND_STATION)$")
    secret_env: str = "YIDI_KUAIDI100_SECRET"  # the account's secret: sign = MD5(param + t + key + secret)
    partner_id_env: str = "YIDI_KUAIDI100_PARTNER_ID"  # 电子面单 account (月结账号) the waybills were issued under
    max_attempts: int = Field(6, ge=1)  # transient failures before an interception is left for a person
    timeout_seconds: float = Field(10.0, gt=0)
    notice_media: list[str] = ["sms", "email"]  # how the customer is told of the request and its outcome
