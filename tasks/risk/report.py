"""What people read from an assessment (P4, E1, E2): the markdown summary with red/amber/green markers and text
sparklines, and an xlsx workbook (through ``yidi.sheets``, text never a formula) with native Excel charts: KPI
trends, credit grades and receivables ageing. Personal data is masked (customer names)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from openpyxl.chart import BarChart, LineChart, Reference
from openpyxl.styles import PatternFill

from tasks.risk.kpi import ORDER_KPIS
from tasks.risk.periods import RAG_MARK
from yidi.masking import mask_name
from yidi.money import yuan_text
from yidi.sheets import YUAN_FORMAT, excel_writer, write_people_sheet

TREND_CHART_KPIS = ["review_on_time_pct", "on_time_delivery_pct", "exception_rate_pct", "return_rate_pct",
                    "collection_rate_pct", "settlement_match_pct"]  # fmt: skip


# What a manager reads in the workbook beside each KPI's code (the order KPIs carry theirs in tasks/risk/kpi.py).
KPI_LABELS = {k.name: k.label for k in ORDER_KPIS} | {
    "collection_rate_pct": "回款率 %", "dso_days": "应收账款周转天数 DSO (天)", "settlement_match_pct": "对账匹配率 %",
    "complaint_rate_pct": "投诉率 %", "response_hours_p50": "投诉首次响应 中位数 (h)",
    "resolution_hours_p50": "投诉解决 中位数 (h)", "satisfaction_score": "满意度 (1–5 分)",
}  # fmt: skip
# Cell fills of a red/amber/green status, as Excel's own "Good / Neutral / Bad" styles colour them.
RAG_FILLS = {"绿": "C6EFCE", "黄": "FFEB9C", "红": "FFC7CE", "green": "C6EFCE", "amber": "FFEB9C", "red": "FFC7CE"}


def kpi_table(totals: pd.DataFrame, trend: pd.DataFrame) -> pd.DataFrame:
    """KPI, value, target, status marker and the trend sparkline, one row per KPI (the artifact and the CLI)."""
    spark = trend.set_index("kpi")["sparkline"] if not trend.empty else pd.Series(dtype=object)
    return pd.DataFrame({
        "kpi": totals["kpi"],
        "value": [None if pd.isna(v) else round(float(v), 2) for v in totals["value"]],
        "target": [None if pd.isna(v) else float(v) for v in totals["target"]],
        "status": [RAG_MARK.get(s if isinstance(s, str) else "none", "·") for s in totals["status"]],
        "trend": totals["kpi"].map(spark).fillna(""),
    })  # fmt: skip


def masked_customers(frame: pd.DataFrame, column: str = "name") -> pd.DataFrame:
    out = frame.copy()
    if column in out:
        out[column] = [mask_name(n) if isinstance(n, str) else n for n in out[column]]
    return out


def markdown(summary: dict, kpis: pd.DataFrame) -> str:
    credit, carriers, legal, recv = (
        summary["credit"],
        summary["carriers"],
        summary["legal"],
        summary["receivables"],
    )
    lines = [
        f"# Risk and KPI assessment {summary['period']}",
        f"- Credit: {credit['evaluated']} customers graded {credit['by_grade']}; "
        f"**{credit['downgrades']} downgraded**, {credit['upgrades']} upgraded",
        f"- Carriers {carriers['month']}: {carriers['routes']} routes, **{carriers['penalised']} penalised, "
        f"{carriers['excluded']} excluded**, {carriers['uninsured']} high-value shipments uninsured",
        "- Legal: " + (", ".join(f"{k} {v}" for k, v in legal["violations"].items() if v) or "no violations"),
        f"- Receivables: exposure {yuan_text(recv['exposure_fen'], grouping=True, symbol=True)}, overdue "
        f"{yuan_text(recv['overdue_fen'], grouping=True, symbol=True)} (top customers {recv['top_share_pct']:.1f} %)",
        f"- Anonymised {summary['anonymised']['anonymised']} orders past the retention period",
        "",
        "| KPI | value | target | status | trend |",
        "|---|---:|---:|---|---|",
    ]
    for r in kpis.itertuples(index=False):
        lines.append(f"| {r.kpi} | {'—' if r.value is None else r.value} | {'—' if r.target is None else r.target} "
                     f"| {r.status} | `{r.trend}` |")  # fmt: skip
    if summary.get("workbook"):
        lines += ["", f"Workbook: [{summary['workbook']}](file://{summary['workbook']})"]
    return "\n".join(lines)


def _line_chart(sheet, rows: int, columns: int, title: str) -> None:
    chart = LineChart()
    chart.title = title
    chart.y_axis.title = "%"
    data = Reference(sheet, min_col=1, min_row=1, max_col=columns, max_row=rows + 1)
    chart.add_data(data, titles_from_data=True, from_rows=True)
    chart.set_categories(Reference(sheet, min_col=2, min_row=1, max_col=columns, max_row=1))
    chart.width, chart.height = 22, 10
    sheet.add_chart(chart, f"A{rows + 4}")


def _bar_chart(sheet, rows: int, title: str, anchor: str, value_col: int = 2) -> None:
    chart = BarChart()
    chart.title = title
    chart.add_data(Reference(sheet, min_col=value_col, min_row=1, max_row=rows + 1), titles_from_data=True)
    chart.set_categories(Reference(sheet, min_col=1, min_row=2, max_row=rows + 1))
    sheet.add_chart(chart, anchor)


def _labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """The KPI's name for people beside its code."""
    if "kpi" not in frame.columns:
        return frame
    out = frame.copy()
    out.insert(int(out.columns.get_loc("kpi")) + 1, "指标", out["kpi"].map(KPI_LABELS).fillna(""))
    return out


def _fill_status(sheet, frame: pd.DataFrame) -> None:
    if "status" not in frame.columns:
        return
    column = int(frame.columns.get_loc("status")) + 1
    for row, status in enumerate(frame["status"], start=2):
        colour = next((c for k, c in RAG_FILLS.items() if isinstance(status, str) and k in status), None)
        if colour:
            sheet.cell(row=row, column=column).fill = PatternFill("solid", start_color=colour, end_color=colour)


def write_workbook(
    path: Path, sheets: dict[str, pd.DataFrame], trend: pd.DataFrame, grades: dict, ageing: pd.Series,
    yuan_sheets: tuple[str, ...] = ("Ageing trend",),
) -> Path:  # fmt: skip
    """The workbook: one sheet per table as people read it (KPI names beside their codes, statuses filled red,
    amber or green, money in yuan with a currency format, Beijing times, columns that show; ``yuan_sheets`` hold
    yuan in every number cell), and native charts (KPI trend lines, grade and ageing bars)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    chart_trend = trend[trend["kpi"].isin(TREND_CHART_KPIS)].drop(columns=["sparkline"], errors="ignore")
    chart_trend = chart_trend.assign(kpi=chart_trend["kpi"].map(KPI_LABELS).fillna(chart_trend["kpi"]))
    grade_frame = pd.DataFrame({"grade": list(grades), "customers": list(grades.values())})
    ageing_frame = pd.DataFrame(
        {"age (days past due)": ageing.index, "outstanding (yuan)": ageing.to_numpy() / 100}
    )
    with excel_writer(path) as writer:
        for name, frame in sheets.items():
            shown = _labelled(frame)
            sheet = write_people_sheet(writer, name, shown)
            _fill_status(sheet, shown)
            if name in yuan_sheets:
                for row in sheet.iter_rows(min_row=2):
                    for cell in row:
                        if isinstance(cell.value, int | float):
                            cell.number_format = YUAN_FORMAT
        write_people_sheet(writer, "KPI trend chart", chart_trend)
        write_people_sheet(writer, "Credit grades", grade_frame)
        write_people_sheet(writer, "Ageing", ageing_frame)
        book = writer.book
        _line_chart(book["KPI trend chart"], len(chart_trend), chart_trend.shape[1], "KPI trend (%)")
        _bar_chart(book["Credit grades"], len(grade_frame), "Customers by credit grade", "D2")
        _bar_chart(book["Ageing"], len(ageing_frame), "Outstanding by age (yuan)", "D2")
    return path
