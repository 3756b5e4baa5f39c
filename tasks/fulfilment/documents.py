"""Warehouse paperwork (F5): a printable shipping document per shipment (HTML + the same facts as JSON data) and
pick lists per warehouse (xlsx + csv), under ``$YIDI_HOME/documents/``.

Documents are for staff and the carrier: they carry full names, phones and addresses (masking is for logs and
the Prefect UI, not for a label the courier must read). Files are written atomically (temp file + rename), so
a reader never sees half a document.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
from datetime import date, datetime
from pathlib import Path

import pandas as pd

from yidi.money import yuan_text
from yidi.settings import yidi_home
from yidi.sheets import csv_bytes, write_xlsx


def documents_dir(*parts: str) -> Path:
    path = yidi_home().joinpath("documents", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _atomic_write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _default(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


PAGE_STYLE = """
  body { font-family: "Noto Sans CJK SC", "Microsoft YaHei", sans-serif; margin: 0; color: #111; }
  .doc { width: 190mm; margin: 8mm auto; border: 1px solid #333; padding: 6mm; }
  h1 { font-size: 18pt; margin: 0 0 2mm 0; display: flex; justify-content: space-between; }
  .waybill { font-family: monospace; font-size: 20pt; letter-spacing: 1px; }
  .grid { display: grid; grid-template-columns: 1fr 1fr; gap: 4mm; margin: 4mm 0; }
  .box { border: 1px solid #666; padding: 3mm; min-height: 22mm; }
  .box h2 { font-size: 10pt; margin: 0 0 1mm 0; color: #555; }
  table { width: 100%; border-collapse: collapse; font-size: 10pt; }
  th, td { border: 1px solid #999; padding: 1.5mm; text-align: left; }
  td.num, th.num { text-align: right; }
  .facts td { border: none; padding: 0.8mm 2mm 0.8mm 0; }
  .foot { font-size: 8pt; color: #555; margin-top: 3mm; }
  @media print { .doc { border: none; margin: 0; } @page { size: A4; margin: 8mm; } }
"""


def shipping_document_html(doc: dict) -> str:
    """One printable page: ship-from, ship-to, goods, quantities, weights, waybill (F5)."""
    goods_rows = "\n".join(
        f"<tr><td>{_e(g['item_code'])}</td><td>{_e(g['name'])}</td><td>{_e(g.get('spec'))}</td>"
        f"<td>{_e(g.get('batch_no') or '')}</td><td class='num'>{g['quantity']:g} {_e(g.get('unit') or '')}</td>"
        f"<td class='num'>{(g.get('weight_kg') or 0):.2f}</td></tr>"
        for g in doc["goods"]
    )
    sender, recipient = doc["sender"], doc["recipient"]
    amount = {key: yuan_text(doc[key], grouping=True, symbol=True)
              for key in ("cod_amount_fen", "declared_value_fen", "insurance_fee_fen", "freight_fen")}  # fmt: skip
    cod = f"<tr><td>代收货款</td><td><b>{amount['cod_amount_fen']}</b></td></tr>" if doc["cod_amount_fen"] else ""
    insured = (
        f"<tr><td>保价</td><td>声明价值 {amount['declared_value_fen']}，保费 {amount['insurance_fee_fen']}</td></tr>"
        if doc["insured"]
        else f"<tr><td>声明价值</td><td>{amount['declared_value_fen']}（未保价）</td></tr>"
    )
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>发货单 {_e(doc['shipment_no'])}</title>
<style>{PAGE_STYLE}</style></head>
<body><div class="doc">
<h1><span>发货单 · {_e(doc['carrier_name'])} {_e(doc.get('service') or '')}</span>
<span class="waybill">{_e(doc['waybill_no'])}</span></h1>
<table class="facts">
<tr><td>发货单号</td><td>{_e(doc['shipment_no'])}</td><td>订单号</td><td>{_e(doc['order_no'])}</td></tr>
<tr><td>发货日期</td><td>{_e(doc['ship_date'])}</td><td>预计送达</td><td>{_e(doc['expected_delivery_date'])}</td></tr>
<tr><td>分拣码</td><td>{_e(doc.get('sort_code') or '')}</td><td>发货仓</td><td>{_e(sender['warehouse'])}</td></tr>
</table>
<div class="grid">
<div class="box"><h2>寄件人 / Ship from</h2>{_e(sender['name'])} {_e(sender['phone'])}<br>
{_e(sender['province'])}{_e(sender['city'])}{_e(sender['district'])}{_e(sender['address'])}</div>
<div class="box"><h2>收件人 / Ship to</h2><b>{_e(recipient['name'])}</b> {_e(recipient['phone'])}<br>
{_e(recipient['province'])}{_e(recipient['city'])}{_e(recipient['district'])}{_e(recipient['address'])}</div>
</div>
<table><thead><tr><th>商品编码</th><th>品名</th><th>规格</th><th>批次</th><th class="num">数量</th>
<th class="num">重量(kg)</th></tr></thead><tbody>
{goods_rows}
</tbody></table>
<table class="facts" style="margin-top:3mm">
<tr><td>实重</td><td>{doc['weight_kg']:.2f} kg</td></tr>
<tr><td>计费重</td><td>{doc['chargeable_weight_kg']:.2f} kg（体积 {doc['volume_m3']:.4f} m³）</td></tr>
<tr><td>运费</td><td>{amount['freight_fen']}</td></tr>
{insured}
{cod}
</table>
<div class="foot">承运商责任：{_e(doc.get('liability') or '按承运协议')}。选择依据：{_e(doc.get('choice_reason') or '')}</div>
</div></body></html>
"""


def write_shipping_document(doc: dict, folder: Path | None = None) -> Path:
    """``<shipment_no>.html`` (printable) and ``<shipment_no>.json`` (the same facts as data); returns the HTML."""
    folder = folder or documents_dir("shipping", str(doc["ship_date"]))
    html_path = folder / f"{doc['shipment_no']}.html"
    _atomic_write(html_path, shipping_document_html(doc).encode("utf-8"))
    _atomic_write(
        folder / f"{doc['shipment_no']}.json",
        json.dumps(doc, ensure_ascii=False, indent=2, default=_default).encode("utf-8"),
    )
    return html_path


PICK_COLUMNS = {
    "warehouse": "仓库",
    "item_code": "商品编码",
    "item_name": "品名",
    "spec": "规格",
    "batch_no": "批次",
    "expiry_date": "有效期至",
    "quantity": "数量",
    "unit": "单位",
    "shipment_no": "发货单号",
    "order_no": "订单号",
    "carrier": "承运商",
    "waybill_no": "运单号",
}


def write_pick_lists(picks: pd.DataFrame, label: str, folder: Path | None = None) -> list[Path]:
    """Per warehouse: ``picklist-<warehouse>-<label>.xlsx`` (pick lines by item, and a totals sheet) and the same
    lines as UTF-8-with-BOM csv (Excel opens Chinese correctly). ``picks`` has the PICK_COLUMNS keys."""
    folder = folder or documents_dir("picklists")
    written: list[Path] = []
    if picks.empty:
        return written
    for warehouse, frame in picks.groupby("warehouse", sort=True):
        frame = frame.sort_values(["item_code", "batch_no", "shipment_no"], na_position="last")
        lines = frame[list(PICK_COLUMNS)].rename(columns=PICK_COLUMNS)
        totals = (
            frame.groupby(["item_code", "item_name", "unit"], dropna=False, as_index=False)["quantity"].sum()
            .rename(columns={"item_code": "商品编码", "item_name": "品名", "unit": "单位", "quantity": "合计数量"})
        )  # fmt: skip
        stem = f"picklist-{warehouse}-{label}"
        xlsx = folder / f"{stem}.xlsx"
        tmp = folder / f".{stem}.xlsx.tmp"
        write_xlsx({"拣货单": lines, "按商品汇总": totals}, tmp)  # item names from outside: never formulas
        os.replace(tmp, xlsx)
        csv = _atomic_write(folder / f"{stem}.csv", csv_bytes(lines))
        written.extend([xlsx, csv])
    return written
