"""The operator's day in a real browser (issue 15, Build 9): the local stack (`make up`'s store, server and
deployments) on a free port, a short demo, then the rendered Prefect UI in Debian's chromium driven by selenium:
the deployments list, a completed run with readable logs, a table artifact with Chinese text, the review form
showing an order's details and a refused input's reason, and the reconcile Run form with its choices; and, on a
second server with authentication on (issue 20), the UI asking for credentials before it shows anything.

Run by `make browser-test` (and `.ci/run`), which set YIDI_BROWSER_TEST=1; skipped otherwise (a few minutes, and it
needs /usr/bin/chromium and /usr/bin/chromedriver: `apt-get install chromium chromium-driver fonts-noto-cjk`; no
browser is ever downloaded). A failed check leaves a screenshot and the page's text in YIDI_BROWSER_SHOTS (default
`.yidi/browser-shots/`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CJK = re.compile(r"[\u4e00-\u9fff]{2,}")

pytestmark = [
    pytest.mark.browser,
    # the module's stack (deploy every deployment, then a 40-order demo) takes minutes on a loaded 2-core machine:
    # the suite's 300 s per test would cut its setup short
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.environ.get("YIDI_BROWSER_TEST") != "1", reason="browser test: YIDI_BROWSER_TEST=1"),
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="needs Debian's chromium and chromium-driver"),  # fmt: skip
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _python(code: str, env: dict, timeout: float) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout)  # fmt: skip
    assert result.returncode == 0, f"{code}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Store, server and every deployment as `make up` makes them (no worker: nothing scheduled runs meanwhile),
    then `make demo`'s lifecycle with 40 orders of which the reviewer decides 3, so some stay pending."""
    home = tmp_path_factory.mktemp("browser-home")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "YIDI_DATABASE_URL"}
    env.update(YIDI_HOME=str(home), YIDI_PREFECT_PORT=str(port), PYTHONPATH=str(ROOT))
    api = f"http://127.0.0.1:{port}/api"
    review = None
    try:
        _python("from app import local_stack as s\n"
                "print(s.init_store()); s.start_server()\n"
                "s._prefect('work-pool', 'create', s.WORK_POOL, '--type', 'process', '--overwrite')\n"
                "r = s._prefect('--no-prompt', 'deploy', '--all', check=False)\n"
                "assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]", env, 300)  # fmt: skip
        _python("from app.cli.demo import run_demo\nrun_demo(orders=40, approve=2, reject=1)",
                {**env, "PREFECT_API_URL": api}, 600)  # fmt: skip
        demo_env = {**env, "PREFECT_API_URL": api, "YIDI_HOME": str(home / "demo")}
        # A reviewer's form left open: two pending orders, waiting (the module's end stops it).
        review = subprocess.Popen(
            [sys.executable, "-c", "from flows.review import review_orders\n"
             "review_orders(limit=2, poll_interval=1, timeout_hours=0.25)"],
            env=demo_env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        yield {"ui": f"http://127.0.0.1:{port}", "api": api, "env": env, "home": home}
    finally:
        if review is not None and review.poll() is None:
            os.killpg(review.pid, signal.SIGTERM)
        subprocess.run([sys.executable, "-m", "app.local_stack", "down"], env=env, cwd=ROOT, capture_output=True,
                       timeout=60)  # fmt: skip


@pytest.fixture(scope="module")
def api(stack):
    """A Prefect client on the stack's server (this process's settings stay as they were)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: stack["api"]}), get_client(sync_client=True) as client:
        yield client


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1600", "--lang=zh-CN"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, request):
    """Open a URL and wait for texts; a failed check keeps a screenshot and the page's text."""
    shots = Path(os.environ.get("YIDI_BROWSER_SHOTS") or ROOT / ".yidi" / "browser-shots")

    def open_and_wait(url: str, *texts: str, timeout: float = 30) -> str:
        browser.get(url)
        return wait_for(*texts, timeout=timeout)

    def wait_for(*texts: str, timeout: float = 30) -> str:
        from selenium.webdriver.common.by import By

        deadline = time.monotonic() + timeout
        body = ""
        while time.monotonic() < deadline:
            body = browser.find_element(By.TAG_NAME, "body").text
            if all(t in body for t in texts):
                return body
            time.sleep(0.5)
        shots.mkdir(parents=True, exist_ok=True)
        name = request.node.name
        browser.save_screenshot(str(shots / f"{name}.png"))
        (shots / f"{name}.txt").write_text(f"{browser.current_url}\n\n{body}", encoding="utf-8")
        missing = [t for t in texts if t not in body]
        raise AssertionError(f"{browser.current_url} never showed {missing}; screenshot {shots / name}.png")

    open_and_wait.wait_for = wait_for
    return open_and_wait


def _click(browser, text: str, exact: bool = True) -> None:
    from selenium.webdriver.common.by import By

    for button in browser.find_elements(By.TAG_NAME, "button"):
        label = button.text.strip()
        if (label == text) if exact else label.startswith(text):
            button.click()
            return
    raise AssertionError(f"no button {text!r} on {browser.current_url}")


def test_the_deployments_list_shows_every_deployment(stack, page):
    import yaml

    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]
    first_page = sorted(d["name"] for d in deployments)[:3]  # the list opens A to Z, ten a page
    page(f"{stack['ui']}/deployments", f"{len(deployments)} Deployments", *first_page)


def test_a_completed_demo_run_has_readable_logs(stack, api, page):
    """Seen: a completed worker run said "This run didn't generate logs"."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    runs = api.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["lifecycle-demo"])))
    assert len(runs) == 1 and runs[0].state.is_completed()
    assert runs[0].name.startswith("demo 40 ")  # named after what ran
    page(f"{stack['ui']}/runs/flow-run/{runs[0].id}", "orders by state:", "needs action:")


def test_a_table_artifact_shows_its_chinese_text(stack, api, page):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterType

    found = None
    tables = api.read_artifacts(artifact_filter=ArtifactFilter(type=ArtifactFilterType(any_=["table"])))
    for artifact in sorted(tables, key=lambda a: a.key != "review-failures-by-reason"):
        rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data or []
        cells = [str(v) for row in rows[:20] if isinstance(row, dict) for v in row.values()]
        chinese = [c for c in cells if CJK.search(c) and len(c) < 40]
        if chinese:
            found = (artifact, chinese[0])
            break
    assert found, "no table artifact with Chinese text after the demo"
    artifact, text = found
    page(f"{stack['ui']}/artifacts/artifact/{artifact.id}", text)


def test_the_review_form_shows_the_orders_and_a_refused_inputs_reason(stack, api, browser, page):
    """Seen: the Resume dialog hid the orders (description at 0 px), masking asterisks were eaten by markdown, and a
    refused submission came back with no visible reason."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from demo.review import find_paused_review_run, submit_review, wait_until_paused

    with temporary_settings({PREFECT_API_URL: stack["api"]}):
        run_id = find_paused_review_run(timeout=90)
        form = wait_until_paused(run_id)
        submit_review(run_id, "浏览器测试", [{"order_no": form["orders"][0], "decision": "reject", "reason": "x"}])
        again = wait_until_paused(run_id, after_state=form["state_id"])
    first = again["orders"][0]
    page(f"{stack['ui']}/runs/flow-run/{run_id}", "Resume")
    _click(browser, "Resume", exact=False)
    body = page.wait_for("Input refused", first, "(Asia/Shanghai)", "Waiting for a reviewer since")
    assert re.search(r"1\d\d\*\*\*\*\d{4}", body), "a masked phone, asterisks and all"
    assert "proposed solution" in body  # the refusal says what was missing (test_review_flows checks the same text)


def test_the_reconcile_run_form_offers_the_sources(stack, api, browser, page):
    """Seen: `source`, `period`, `file_path` were bare `str | None` toggles with no choices or hints."""
    from selenium.webdriver.common.by import By

    deployment = api.read_deployment_by_name("reconcile-settlements/reconcile-settlements-on-demand")
    page(f"{stack['ui']}/deployments/deployment/{deployment.id}/run", "Which payment files", "YYYY-Www")
    _click(browser, "str")  # the first parameter, source: from None to a value
    page.wait_for("wechatpay")
    options = [o.text for s in browser.find_elements(By.TAG_NAME, "select") for o in s.find_elements(By.TAG_NAME,
                                                                                                   "option")]
    assert {"alipay", "wechatpay", "bank:icbc", "cod:shunfeng"} <= set(options)


AUTH_STRING = "ops:browser-s3cret"


@pytest.fixture(scope="module")
def auth_ui(tmp_path_factory):
    """A second server, started by `make up`'s code with authentication on (issue 20), on its own port."""
    home = tmp_path_factory.mktemp("auth-home")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "YIDI_DATABASE_URL"}
    env.update(YIDI_HOME=str(home), YIDI_PREFECT_PORT=str(port), PYTHONPATH=str(ROOT), YIDI_PREFECT_HOST="127.0.0.1",
               PREFECT_SERVER_API_AUTH_STRING=AUTH_STRING)  # fmt: skip
    try:
        _python("from app import local_stack as s\ns.require_auth_beyond_loopback(); s.start_server()", env, 180)
        yield {"ui": f"http://127.0.0.1:{port}", "api": f"http://127.0.0.1:{port}/api"}
    finally:
        subprocess.run([sys.executable, "-m", "app.local_stack", "down"], env=env, cwd=ROOT, capture_output=True,
                       timeout=60)  # fmt: skip


def test_with_auth_on_the_ui_asks_for_credentials(auth_ui, browser, page):
    """PREFECT_SERVER_API_AUTH_STRING set: the API refuses a request without credentials, the UI shows its login
    form instead of the deployments, refuses a wrong password and lets the right one in."""
    import base64

    import requests
    from selenium.webdriver.common.by import By

    assert requests.post(f"{auth_ui['api']}/deployments/filter", json={}, timeout=10).status_code == 401
    basic = {"Authorization": "Basic " + base64.b64encode(AUTH_STRING.encode()).decode()}
    assert requests.post(f"{auth_ui['api']}/deployments/filter", json={}, headers=basic, timeout=10).status_code == 200

    body = page(f"{auth_ui['ui']}/deployments", "Login")
    assert "Deployments" not in body and "/login" in browser.current_url
    shots = Path(os.environ.get("YIDI_BROWSER_SHOTS") or ROOT / ".yidi" / "browser-shots")
    shots.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(shots / "auth-login.png"))  # looked at by a person: the login form, nothing else
    failed = body.count("Authentication failed")  # the refused page load itself says so once
    field = browser.find_element(By.CSS_SELECTOR, "input[type=password]")
    field.send_keys("ops:wrong")
    field.submit()
    deadline = time.monotonic() + 20
    while browser.find_element(By.TAG_NAME, "body").text.count("Authentication failed") <= failed:
        assert time.monotonic() < deadline, "a wrong password was not refused"
        time.sleep(0.3)
    assert "/login" in browser.current_url
    field = browser.find_element(By.CSS_SELECTOR, "input[type=password]")
    field.clear()
    field.send_keys(AUTH_STRING)
    field.submit()
    page.wait_for("Create a deployment to get started")  # the deployments page, read from the API with the password
    assert browser.current_url == f"{auth_ui['ui']}/deployments"
    browser.save_screenshot(str(shots / "auth-logged-in.png"))
