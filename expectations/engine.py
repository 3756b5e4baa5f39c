"""The Great Expectations machinery of the automated review: one ephemeral context, the four suites built in code,
a pandas datasource, lean results mapped back to orders, results kept, Data Docs built offline.

Speed matters (1M orders per run is the benchmark): each suite validates only its own columns (GX copies the
failing rows of its whole batch per expectation), the order id is the frame's unnamed index so GX hands back a plain
list of failing ids, unexpected values are not collected, and nothing goes through GX's result store on the hot
path (serialising full results there costs more than validating). Results are compacted (counts, first ids) before
they are kept on disk and rendered.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from expectations import customer, price_payment, product, validity
from expectations.reasons import check_policy_codes

# GX's regex expectation calls str.contains; our name rule needs a group (a back-reference), which pandas warns
# about on every run although the match is exactly what we want.
warnings.filterwarnings("ignore", message="This pattern is interpreted as a regular expression, and has match groups")

SUITE_MODULES = (customer, product, price_payment, validity)
SUITE_COLUMNS = {module.SUITE: list(module.COLUMNS) for module in SUITE_MODULES}
RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "exclude_unexpected_values": True,
    "return_unexpected_index_query": False,
    "partial_unexpected_count": 0,
}
KEPT_IDS = 20  # failing ids kept per expectation in stored results / Data Docs (all of them go to the store)
FAILURE_COLUMNS = ["order_id", "suite", "rule", "reason_code", "severity", "area"]


class ExpectationError(RuntimeError):
    """An expectation could not be evaluated (missing column, wrong type): never treated as passed."""


@dataclass
class ValidationOutcome:
    failures: pd.DataFrame  # FAILURE_COLUMNS, one row per failing order per rule
    stats: pd.DataFrame  # one row per expectation: suite, rule, reason_code, severity, success, counts
    results: dict = field(default_factory=dict)  # suite -> ExpectationSuiteValidationResult (compacted)


def _policy_fingerprint(settings) -> str:
    relevant = {k: settings.model_dump(mode="json")[k] for k in ("review", "payment", "pricing", "general")}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def _skip_batch_fingerprints() -> None:
    """GX fingerprints every in-memory pandas batch under 1 GB (md5 over ``hash_pandas_object`` of data and index)
    just to label the batch in its metadata; on a 1M-order chunk that labelling cost more than the validating
    (measured: ~4 s of ~7 s). Nothing here reads the fingerprint, so the threshold is set to 0: no batch hashed."""
    from great_expectations.execution_engine import pandas_execution_engine

    pandas_execution_engine.HASH_THRESHOLD = 0


class ReviewValidator:
    """Build once per process and policy (``validator_for``): the context and suites are reused for every chunk."""

    def __init__(self, settings):
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        check_policy_codes(settings.review.severity)
        _skip_batch_fingerprints()
        self.settings = settings
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        for site in list(self.context.get_site_names()):
            self.context.delete_data_docs_site(site)  # the ephemeral default writes to a temp dir: not ours
        asset = self.context.data_sources.add_pandas("yidi_review").add_dataframe_asset("orders")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("review_chunk")
        self.suites = {}  # area suite: the definition (Data Docs, messages)
        self.parts: dict[str, list[tuple[str, object]]] = {}  # area suite -> [(column, suite of that column)]
        for module in SUITE_MODULES:
            meta = {"area": module.__doc__.split(":")[0].strip()}
            self.suites[module.SUITE] = self.context.suites.add(
                gx.ExpectationSuite(name=module.SUITE, expectations=module.build(settings), meta=meta))
            by_column: dict[str, list] = {}
            for expectation in module.build(settings):
                by_column.setdefault(expectation.column, []).append(expectation)
            self.parts[module.SUITE] = [
                (column, self.context.suites.add(gx.ExpectationSuite(name=f"{module.SUITE}.{column}",
                                                                     expectations=expectations, meta=meta)))
                for column, expectations in by_column.items()
            ]  # fmt: skip

    def validate(self, frame: pd.DataFrame) -> ValidationOutcome:
        """Validate the order-level review frame (index: order id) against every suite.

        Each area suite runs column by column (one batch per column, holding only that column): GX filters the
        whole batch frame several times per expectation, so narrow batches keep the cost per expectation down to
        its own column. The per-column results are merged back into one result per area suite.
        """
        from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResult

        pieces, stats, results = [], [], {}
        for name, parts in self.parts.items():
            items, first = [], None
            for column, suite in parts:
                batch_frame = frame[[column]].rename_axis(index=None)  # unnamed index: GX returns plain ids
                batch = self.batch_definition.get_batch(batch_parameters={"dataframe": batch_frame})
                result = batch.validate(suite, result_format=RESULT_FORMAT)
                first = first or result
                items.extend(result.results)
            for item in items:
                meta = item.expectation_config.meta or {}
                info = item.exception_info or {}
                if info.get("raised_exception"):
                    raise ExpectationError(f"{name} {meta.get('rule')}: {info.get('exception_message')}")
                ids = item.result.get("unexpected_index_list") or []
                stats.append({"suite": name, "rule": meta["rule"], "reason_code": meta["reason_code"],
                              "severity": meta["severity"], "success": bool(item.success),
                              "unexpected_count": int(item.result.get("unexpected_count") or 0),
                              "element_count": int(item.result.get("element_count") or 0)})  # fmt: skip
                if ids:
                    pieces.append((np.asarray(ids, dtype="int64"), name, meta))
                    item.result["unexpected_index_list"] = [int(i) for i in ids[:KEPT_IDS]]
            passed = sum(bool(i.success) for i in items)
            results[name] = ExpectationSuiteValidationResult(
                success=passed == len(items), results=items, suite_name=name, meta=first.meta if first else {},
                statistics={"evaluated_expectations": len(items), "successful_expectations": passed,
                            "unsuccessful_expectations": len(items) - passed,
                            "success_percent": 100.0 * passed / len(items) if items else 100.0},
            )  # fmt: skip
        return ValidationOutcome(_failures_frame(pieces), pd.DataFrame(stats), results)


def _failures_frame(pieces) -> pd.DataFrame:
    if not pieces:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "order_id" else "str") for c in FAILURE_COLUMNS})
    lengths = [len(ids) for ids, _, _ in pieces]
    return pd.DataFrame({
        "order_id": np.concatenate([ids for ids, _, _ in pieces]),
        "suite": np.repeat([name for _, name, _ in pieces], lengths),
        "rule": np.repeat([m["rule"] for _, _, m in pieces], lengths),
        "reason_code": np.repeat([m["reason_code"] for _, _, m in pieces], lengths),
        "severity": np.repeat([m["severity"] for _, _, m in pieces], lengths),
        "area": np.repeat([m["area"] for _, _, m in pieces], lengths),
    })  # fmt: skip


_VALIDATORS: dict[str, ReviewValidator] = {}


def validator_for(settings) -> ReviewValidator:
    key = _policy_fingerprint(settings)
    if key not in _VALIDATORS:
        _VALIDATORS.clear()
        _VALIDATORS[key] = ReviewValidator(settings)
    return _VALIDATORS[key]


# --- kept results and offline Data Docs ------------------------------------------------------------------------


def gx_home(home: Path | None = None) -> Path:
    from yidi.settings import yidi_home

    path = (home or yidi_home()) / "gx"
    path.mkdir(parents=True, exist_ok=True)
    return path


def keep_results(outcome: ValidationOutcome, run_key: str, batch_name: str, home: Path | None = None) -> list[Path]:
    """Write the compacted validation results as JSON under ``$YIDI_HOME/gx/validations/<run>/``."""
    folder = gx_home(home) / "validations" / run_key
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for suite, result in outcome.results.items():
        path = folder / f"{suite}__{batch_name}.json"
        path.write_text(json.dumps(result.to_json_dict(), ensure_ascii=False), encoding="utf-8")
        written.append(path)
    return written


# Data Docs pull bootstrap, jQuery, bootstrap-table, font-awesome and vega from public CDNs. No installed package
# ships those assets, so the pages are made self-contained instead: external <script>/<link> tags are removed
# (validation pages are static HTML and stay readable), GX's own local stylesheet is kept, a small stylesheet is
# inlined, and the JS-driven index page is replaced by a static one listing every kept validation page.
_EXTERNAL_TAG = re.compile(
    r"<script[^>]*\bsrc=[\"']https?://[^>]*>\s*</script>|<link[^>]*\bhref=[\"']https?://[^>]*>", re.I
)
_EXTERNAL_URL = re.compile(r"(?:src|href)=[\"']https?://[^\"']*[\"']", re.I)
_EXTERNAL_CSS_URL = re.compile(r"url\(\s*['\"]?https?://[^)]*\)", re.I)
OFFLINE_CSS = """
body{font-family:-apple-system,"Segoe UI","PingFang SC","Microsoft YaHei",sans-serif;margin:0;color:#212529}
.container,.container-fluid{padding:1rem 2rem}.row{display:flex;flex-wrap:wrap}.col-12{width:100%}
[class*="col-md-"]{padding:0 .5rem}.col-md-2{width:16%}.col-md-10{width:80%}
table{border-collapse:collapse;margin:.5rem 0;width:100%}td,th{border:1px solid #dee2e6;padding:.3rem .6rem;
vertical-align:top;text-align:left}th{background:#f1f3f5}.card{border:1px solid #dee2e6;border-radius:4px;
margin:.75rem 0;padding:.5rem 1rem}.text-danger,.fa-times{color:#c92a2a}.text-success,.fa-check-circle{color:#2b8a3e}
.badge{display:inline-block;padding:.1rem .4rem;border-radius:3px;background:#e9ecef}
.collapse:not(.show){display:block}nav,.navbar,.sidebar,#ge-cta-footer,.ge-cta-footer{display:none}
code,pre{background:#f8f9fa;padding:0 .2rem}a{color:#1864ab}
"""


def make_offline(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    text = _EXTERNAL_TAG.sub("", text)
    text = _EXTERNAL_URL.sub('data-offline-removed=""', text)
    text = _EXTERNAL_CSS_URL.sub("none", text)
    if page.suffix == ".css":
        page.write_text(text, encoding="utf-8")
        return
    if "yidi-offline-css" not in text:
        text = text.replace("</head>", f'<style id="yidi-offline-css">{OFFLINE_CSS}</style></head>', 1)
    page.write_text(text, encoding="utf-8")


def build_data_docs(run_key: str, home: Path | None = None, settings=None) -> Path:
    """Render the kept results of ``run_key`` as Data Docs pages (offline) and refresh the static index."""
    from great_expectations.core.expectation_validation_result import expectationSuiteValidationResultSchema
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    from yidi.settings import get_settings

    base = gx_home(home)
    site = base / "data_docs"
    validator = validator_for(settings or get_settings())
    context = validator.context
    site_config = {
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    # The validator (and its GX context) is cached per policy, the home is not: point the site at this home.
    registered = context.list_data_docs_sites().get("yidi")
    if registered is None:
        context.add_data_docs_site(site_name="yidi", site_config=site_config)
    elif registered["store_backend"]["base_directory"] != str(site):
        context.update_data_docs_site(site_name="yidi", site_config=site_config)
    keys = []
    for path in sorted((base / "validations" / run_key).glob("*.json")):
        suite, _, batch_name = path.stem.partition("__")
        result = expectationSuiteValidationResultSchema.load(json.loads(path.read_text(encoding="utf-8")))
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite),
            run_id=RunIdentifier(run_name=run_key, run_time=datetime.now(UTC)),
            batch_identifier=batch_name,
        )
        context.validation_results_store.set(key, result)
        keys.append(key)
    if keys:
        context.build_data_docs(site_names=["yidi"], resource_identifiers=keys)
    for page in [*site.rglob("*.html"), *site.rglob("*.css")]:
        make_offline(page)
    _write_static_index(site, base / "validations")
    return site / "index.html"


def _write_static_index(site: Path, kept: Path) -> None:
    rows = []
    for page in sorted(site.glob("validations/*/*/*/*.html"), reverse=True):
        suite, run_key, run_time, batch = page.relative_to(site / "validations").with_suffix("").parts
        stored = kept / run_key / f"{suite}__{batch}.json"
        status, failed = "?", ""
        if stored.is_file():
            data = json.loads(stored.read_text(encoding="utf-8"))
            status = "passed" if data.get("success") else "failed"
            failed = ", ".join(
                f"{r['expectation_config']['meta'].get('reason_code')} ({r['result'].get('unexpected_count')})"
                for r in data.get("results", []) if not r.get("success")
            )  # fmt: skip
        rows.append(
            f"<tr><td>{html.escape(run_key)}</td><td>{html.escape(run_time)}</td><td>{html.escape(suite)}</td>"
            f"<td>{html.escape(batch)}</td><td class=\"{'text-success' if status == 'passed' else 'text-danger'}\">"
            f"{status}</td><td>{html.escape(failed)}</td>"
            f"<td><a href=\"{html.escape(page.relative_to(site).as_posix())}\">open</a></td></tr>"
        )
    (site / "index.html").write_text(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>yidi review: Data Docs</title>"
        f"<link rel=\"stylesheet\" href=\"static/styles/data_docs_default_styles.css\"><style>{OFFLINE_CSS}</style>"
        "</head><body><div class=\"container\"><h1>Automated order review: validation results</h1>"
        "<p>Great Expectations results of the review suites (V1 customer, V2 product/service, V3 price &amp; "
        "payment, V4 validity), newest first. Failing counts per reason code; each page lists the first failing "
        "order ids (all findings are in the order store).</p><table><tr><th>run</th><th>time</th><th>suite</th>"
        "<th>batch</th><th>status</th><th>failed (orders)</th><th></th></tr>"
        + "".join(rows) + "</table></div></body></html>",
        encoding="utf-8",
    )
