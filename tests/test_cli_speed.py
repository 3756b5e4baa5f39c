"""The fast CLI (issue 12 Build 6, issue 16 Build 4): without a Prefect server every command that runs a flow starts
its first step within 2 s of CPU time, without importing Prefect; it never starts a temporary Prefect server, so a
killed command leaves no process behind and two commands at once do not race each other's servers.

Measured in a fresh subprocess (what a person runs), as the CPU time the process has used when the flow's first step
is called: unlike wall time, it does not grow when the machine is busy with other work, so the bound stays real
without being flaky under load.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIRST_STEP_CPU_SECONDS = 2.0

# A harness around the real CLI: no Prefect server anywhere (whatever runs on this machine), and the first step
# of the flow reports how far the process got, then stops (mode "measure") or waits to be killed (mode "hold").
HARNESS = textwrap.dedent("""
    import json, os, sys, time

    import app.cli.common as common

    common._configured_api_url = lambda: None
    common._port_open = lambda host, port: False
    module_name, attribute = os.environ["YIDI_TEST_FIRST_STEP"].split(":")
    module = __import__(module_name, fromlist=[attribute])

    def first_step(*args, **kwargs):
        print(json.dumps({"cpu": time.process_time(), "prefect": sorted(m for m in sys.modules
                          if m == "prefect" or m.startswith("prefect."))[:5]}), flush=True)
        if os.environ.get("YIDI_TEST_MODE") == "hold":
            time.sleep(120)
        os._exit(0)

    setattr(module, attribute, first_step)
    from app.cli.main import cli

    cli(sys.argv[1:], prog_name="yidi")
""")

IN_PROCESS = "flows.compose:in_process"
# (command, where its first step is called)
FLOW_COMMANDS = [
    (["intake", "run", "--channel", "spreadsheet"], IN_PROCESS),
    (["review", "run"], IN_PROCESS),
    (["review", "deadlines"], "tasks.review.deadlines:check_deadlines"),
    (["fulfilment", "run"], IN_PROCESS),
    (["fulfilment", "stocktake", "{count}"], IN_PROCESS),
    (["tracking", "poll"], IN_PROCESS),
    (["settlement", "reconcile"], IN_PROCESS),
    (["load", "orders", "{orders}"], IN_PROCESS),
    (["risk", "run"], IN_PROCESS),
    (["aftersales", "run"], IN_PROCESS),
    (["channels", "confirm"], IN_PROCESS),
    (["channels", "sync"], IN_PROCESS),
]


@pytest.fixture
def cli_env(sqlite_engine, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PYTHONPATH=str(REPO), YIDI_HOME=str(tmp_path / "home"), YIDI_KUAIDI100_CUSTOMER="c", YIDI_KUAIDI100_KEY="k",
        YIDI_DATABASE_URL=sqlite_engine.url.render_as_string(hide_password=False),
        PREFECT_HOME=str(tmp_path / "prefect-home"),  # no profile naming a server
        PREFECT_SERVER_ALLOW_EPHEMERAL_MODE="true",  # what Prefect would do on its own: yidi must not
    )  # fmt: skip
    (tmp_path / "count.csv").write_text("仓库,商品编码,实盘数量\nWH-CQ,SKU-1,1\n", encoding="utf-8")
    (tmp_path / "orders.csv").write_text("订单号,客户\nYD1,张三\n", encoding="utf-8")
    return env


def _argv(command: list[str], tmp_path: Path) -> list[str]:
    files = {"count": str(tmp_path / "count.csv"), "orders": str(tmp_path / "orders.csv")}
    return [part.format(**files) for part in command]


def _start(command, first_step, env, tmp_path, mode="measure") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HARNESS, *_argv(command, tmp_path)], cwd=tmp_path, text=True,
        env=env | {"YIDI_TEST_FIRST_STEP": first_step, "YIDI_TEST_MODE": mode},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip


@pytest.mark.parametrize(("command", "first_step"), FLOW_COMMANDS, ids=[" ".join(c[:2]) for c, _ in FLOW_COMMANDS])
def test_each_flow_command_starts_its_first_step_fast_without_prefect(cli_env, tmp_path, command, first_step):
    # CPU time still grows when another process shares the core (caches, frequency; 1.15-1.71 s seen for one
    # command): the suite runs in two processes on two cores, so the best of three starts is the measure (a slow
    # path is slow every time; the first start also writes the bytecode the others read).
    cpu = []
    for _attempt in range(3):
        proc = _start(command, first_step, cli_env, tmp_path)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip(), f"{command}: exit {proc.returncode}\n{out}\n{err[-3000:]}"
        reached = json.loads(out.strip().splitlines()[-1])
        assert reached["prefect"] == [], f"{command} imported Prefect on the in-process path: {reached['prefect']}"
        cpu.append(reached["cpu"])
        if reached["cpu"] < FIRST_STEP_CPU_SECONDS:
            break
    assert min(cpu) < FIRST_STEP_CPU_SECONDS, f"{command}: first step after {min(cpu):.2f} s of CPU at best ({cpu})"


def _processes_with(marker: str) -> list[int]:
    """Live processes whose environment carries ``marker`` (every child of a command inherits it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_a_killed_command_leaves_no_process_behind(cli_env, tmp_path):
    marker = f"YIDI_TEST_MARKER={uuid.uuid4().hex}"
    key, value = marker.split("=")
    proc = _start(["settlement", "reconcile"], IN_PROCESS, cli_env | {key: value}, tmp_path, mode="hold")
    line = proc.stdout.readline()  # the first step has started: the command is at work
    assert line.startswith("{"), proc.stderr.read()[-3000:]
    proc.send_signal(signal.SIGKILL)  # the command only: whatever it started must not outlive it
    proc.wait(timeout=30)
    assert _processes_with(marker) == []


def test_two_commands_at_once_both_finish(cli_env, tmp_path):
    """Seen: two flows started from the CLI at once failed with "Timed out while attempting to connect to
    ephemeral Prefect API server"."""
    commands = [
        subprocess.Popen([sys.executable, "-m", "app.cli.main", "settlement", "reconcile", "--json"], cwd=tmp_path,
                         env=cli_env | {"YIDI_PREFECT_PORT": "1"}, text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)  # fmt: skip
        for _ in range(2)
    ]
    for proc in commands:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        assert json.loads(out)["status"] == "completed"
        assert "ephemeral" not in err.lower()
