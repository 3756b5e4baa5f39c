"""Scaling out (issue 17): a stage's chunks through the task runner the policy names, and overlapping runs.

The automated review's chunks run on a Dask cluster of two worker processes and decide exactly what the in-process
path decides; on PostgreSQL several runs of the same review started together (a barrier) decide each order once.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pandas as pd
import pytest
from prefect import flow
from review_data import ORDER_TIME, POLICY, build_store
from sqlalchemy import func, select

from flows.compose import configured_task_runner, in_process, with_prefect
from flows.review import automated_review
from flows.runners import ConfiguredTaskRunner
from yidi.db import StoreAddress, engine_of, init_db, make_engine, store_address
from yidi.schema import notification_outbox as outbox
from yidi.schema import order_events, orders
from yidi.schema_review import review_checks, review_findings
from yidi.settings import RuntimePolicy, get_settings

NOW = ORDER_TIME + timedelta(hours=1)


@pytest.fixture
def review_policy(tmp_path, monkeypatch):
    """The review test policy, with chunks of 16 orders so the ~45 candidates make three chunks (the policy's floor
    of 100 is for production; ``model_copy`` skips it on purpose)."""
    path = tmp_path / "yidi.toml"
    path.write_text(POLICY, encoding="utf-8")
    monkeypatch.setenv("YIDI_CONFIG", str(path))
    get_settings.cache_clear()
    settings = get_settings()
    return settings.model_copy(update={"review": settings.review.model_copy(update={"chunk_size": 16})})


def decisions(engine, ids: dict[str, int]) -> dict[str, tuple]:
    """Per case: state, review deadline, (rule, reason) findings, notices queued, state events."""
    by_id = {oid: name for name, oid in ids.items()}
    with engine.connect() as conn:
        state = {oid: (st, due) for oid, st, due in conn.execute(
            select(orders.c.id, orders.c.state, orders.c.review_due_at).where(orders.c.id.in_(by_id)))}
        findings = pd.DataFrame(conn.execute(select(review_findings.c.order_id, review_findings.c.rule,
                                                    review_findings.c.reason_code)).all(),
                                columns=["order_id", "rule", "reason"])  # fmt: skip
        notices = dict(conn.execute(select(outbox.c.order_id, func.count()).group_by(outbox.c.order_id)).all())
        events = dict(conn.execute(select(order_events.c.order_id, func.count())
                                   .where(order_events.c.kind == "state").group_by(order_events.c.order_id)).all())
    return {
        by_id[oid]: (state[oid][0], state[oid][1] and state[oid][1].replace(tzinfo=None),
                     sorted(findings.loc[findings["order_id"] == oid, ["rule", "reason"]].itertuples(index=False,
                                                                                                     name=None)),
                     notices.get(oid, 0), events.get(oid, 0))
        for oid in by_id
    }  # fmt: skip


def test_the_runtime_policy_picks_the_task_runner():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    assert isinstance(configured_task_runner(RuntimePolicy()), ThreadPoolTaskRunner)
    assert configured_task_runner(RuntimePolicy(thread_workers=3))._max_workers == 3
    remote = configured_task_runner(RuntimePolicy(task_runner="dask", dask_address="tcp://10.0.0.5:8786"))
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://10.0.0.5:8786"
    local = configured_task_runner(RuntimePolicy(task_runner="dask", dask_workers=3))
    assert local.address is None and local.cluster_kwargs["n_workers"] == 3
    # The flow's runner reads the policy when a run starts (each run enters ``duplicate()``).
    assert isinstance(ConfiguredTaskRunner().duplicate(), ThreadPoolTaskRunner)


def test_a_store_address_travels_to_another_process_without_its_password():
    import pickle

    address = StoreAddress("postgresql+psycopg://yidi:secret@db.internal:5432/yidi")
    assert "secret" not in repr(address)
    assert pickle.loads(pickle.dumps(address)) == address
    engine = engine_of(address)
    assert engine.url.password == "secret" and engine_of(engine) is engine
    assert store_address(engine) == address


@flow
def review_chunks(url: str, chunk_size: int) -> dict:
    """The automated review's step list in a flow run (a module-level flow: Dask ships the run's context, and a
    closure over an engine cannot be pickled)."""
    settings = get_settings()
    settings = settings.model_copy(update={"review": settings.review.model_copy(update={"chunk_size": chunk_size})})
    return automated_review(with_prefect, engine=engine_of(StoreAddress(url)), settings=settings, now=NOW,
                            build_docs=False, keep_results=False)  # fmt: skip


DASK_CHUNK = 25  # ~45 candidates: two chunks, one for each worker process


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """Starts (on first call, so a skipped case starts nothing) two worker processes, one thread each: chunks
    really run in other processes, their tasks and the store's address pickled there and back. The workers are
    forked from this process, which has imported the review's code (Prefect, pandas, Great Expectations) and built
    the review's validator (a Great Expectations context with its suites, once per process and policy) for the
    policy the flow runs with: spawned workers did all of that again, each, and it took most of this test's 85 s."""
    clusters = []

    def start():
        if clusters:
            return clusters[0]
        import dask
        from distributed import LocalCluster

        from expectations.engine import validator_for
        from yidi.settings import load_settings

        path = tmp_path_factory.mktemp("policy") / "yidi.toml"
        path.write_text(POLICY, encoding="utf-8")
        settings = load_settings(path)
        validator_for(settings.model_copy(update={"review": settings.review.model_copy(
            update={"chunk_size": DASK_CHUNK})}))  # fmt: skip
        with dask.config.set({"distributed.worker.multiprocessing-method": "fork"}):
            clusters.append(LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None))
        return clusters[0]

    yield start
    for cluster in clusters:
        cluster.close()


@pytest.mark.prefect
def test_review_chunks_on_a_dask_cluster_decide_as_in_process(prefect_server, dask_cluster, engine, tmp_path,
                                                              review_policy):
    from prefect_dask import DaskTaskRunner

    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite has one writer at a time: its chunks run one after another in the flow's process")
    sqlite_engine = make_engine(f"sqlite:///{tmp_path / 'in-process.db'}")
    init_db(sqlite_engine)
    one_chunk = review_policy.model_copy(update={"review": review_policy.review.model_copy(update={"chunk_size": 1000})})

    with sqlite_engine.begin() as conn:
        expected_ids = build_store(conn)
    expected = automated_review(in_process, engine=sqlite_engine, settings=one_chunk, now=NOW, build_docs=False,
                                keep_results=False)  # fmt: skip

    with engine.begin() as conn:
        ids = build_store(conn)

    cluster = dask_cluster()
    got = review_chunks.with_options(task_runner=DaskTaskRunner(address=cluster.scheduler_address))(
        store_address(engine).url, DASK_CHUNK)
    assert got["candidates"] == expected["candidates"] > 8 and got["checked"] == expected["checked"]
    assert got["auto_rejected"] == expected["auto_rejected"] > 0 and got["pending_review"] == expected["pending_review"]
    assert decisions(engine, ids) == decisions(sqlite_engine, expected_ids)


def started_together(count: int, work) -> list:
    """``work(i)`` in ``count`` threads released at once by a barrier; every result (or the exception raised)."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def one(i):
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - the test reports it
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return results


@pytest.mark.parametrize("runs", [2, 4])
def test_overlapping_reviews_decide_each_order_once(engine, review_policy, runs):
    """The same review started by ``runs`` workers at once (a scheduled run and on-demand ones, no deployment
    concurrency limit): every order is checked, moved, logged and told once, whoever got there first."""
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite cannot interleave writers (one write lock per file): the race needs PostgreSQL")
    with engine.begin() as conn:
        ids = build_store(conn)
        before = dict(conn.execute(select(orders.c.id, orders.c.version)).all())

    # Two chunks per run (each chunk is a Great Expectations validation: seconds on a loaded machine).
    settings = review_policy.model_copy(update={"review": review_policy.review.model_copy(update={"chunk_size": 25})})
    results = started_together(runs, lambda _i: automated_review(
        in_process, engine=engine, settings=settings, now=NOW, build_docs=False, keep_results=False))
    assert not [r for r in results if isinstance(r, Exception)], results

    got = decisions(engine, ids)
    with engine.connect() as conn:
        checks = conn.execute(select(review_checks.c.order_id, func.count()).group_by(review_checks.c.order_id)
                              .having(func.count() > 1)).all()  # fmt: skip
        dup_notices = conn.execute(select(outbox.c.dedupe_key).group_by(outbox.c.dedupe_key)
                                   .having(func.count() > 1)).all()  # fmt: skip
        after = dict(conn.execute(select(orders.c.id, orders.c.version)).all())
        checked = conn.execute(select(func.count()).select_from(review_checks)).scalar_one()
    assert checks == [] and dup_notices == []
    decided = {name: state for name, (state, *_rest) in got.items()}
    assert set(decided.values()) == {"auto_rejected", "pending_review"}
    # One state event per order, one version step per move: nobody moved an order another run had moved.
    assert {name: events for name, (*_s, events) in got.items()} == dict.fromkeys(ids, 1)
    assert all(after[oid] == before[oid] + 1 for oid in ids.values())
    # The runs' own counts add up to one decision per order: no run counted an order another run decided.
    assert sum(r["auto_rejected"] + r["pending_review"] for r in results) == checked >= len(ids)
    assert sum(r["auto_rejected"] for r in results) == list(decided.values()).count("auto_rejected")
    assert sum(n for *_x, n, _e in got.values()) == sum(r["notices"] for r in results) > 0


@pytest.mark.prefect
def test_review_chunks_with_the_default_thread_runner_on_postgres(prefect_server, engine, review_policy):
    """The flow's own runner (``ConfiguredTaskRunner``, threads by default) with chunks submitted side by side."""
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite has one writer at a time: its chunks run one after another in the flow's process")
    with engine.begin() as conn:
        ids = build_store(conn)
    got = review_chunks.with_options(task_runner=ConfiguredTaskRunner())(store_address(engine).url, 16)
    assert got["candidates"] > 8 and got["checked"] == got["auto_rejected"] + got["pending_review"]
    states = {state for state, *_rest in decisions(engine, ids).values()}
    assert states == {"auto_rejected", "pending_review"}


# --- the other chunked stages on the same Dask cluster: a drop's chunks, settlement's files ---------------------------


@flow
def take_in_drop(path: str, url: str) -> dict:
    """Intake's step list for one drop in a flow run: its chunks (10 rows each) are tasks on the flow's runner."""
    from flows.intake import order_intake

    return order_intake(with_prefect, files=[path], options={"spreadsheet": {"chunk_rows": 10}},
                        engine=engine_of(StoreAddress(url)))[f"file:{path}"]  # fmt: skip


@flow
def reconcile_files(url: str, files: list[str]) -> dict:
    """Settlement's step list in a flow run: each payment file is a task on the flow's runner."""
    from test_settlement import NOW

    from flows.settlement import reconciliation

    result = reconciliation(with_prefect, files=files, engine=engine_of(StoreAddress(url)), now=NOW, actor="worker")
    return {"files": [f["status"] for f in result["files"]], "matched": result["matching"]["matched_lines"]}


def on_dask(flow_fn, cluster):
    from prefect_dask import DaskTaskRunner

    return flow_fn.with_options(task_runner=DaskTaskRunner(address=cluster.scheduler_address))


def ran_in(cluster) -> set[int]:
    """The process ids of the cluster's workers (the chunks ran there, not in this process)."""
    import os

    from distributed import Client

    with Client(cluster.scheduler_address) as client:
        pids = set(client.run(os.getpid).values())
    assert os.getpid() not in pids and len(pids) == 2
    return pids


@pytest.mark.prefect
def test_a_drops_chunks_on_a_dask_cluster_land_as_in_process(prefect_server, dask_cluster, engine, tmp_path):
    """Each chunk (its connector, its batch of rows, the store's address) is pickled to a worker process, which
    opens the store itself; the store ends with what one process landing the chunks in order writes."""
    from test_concurrency import assert_taken_in_once
    from test_intake_bulk import bulk_file
    from test_intake_drop_chunks import store_counts

    from flows.compose import in_process
    from flows.intake import order_intake

    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite has one writer at a time: a drop's chunks land one after another in the flow's process")
    import shutil

    rows, bad = bulk_file(tmp_path, "drop.csv", n=40, bad=(3, 17))
    (tmp_path / "dask").mkdir()
    dask_drop = shutil.copy(tmp_path / "drop.csv", tmp_path / "dask" / "drop.csv")  # each run moves its file away
    alone = make_engine(f"sqlite:///{tmp_path / 'alone.db'}")
    init_db(alone)
    path = str(tmp_path / "drop.csv")
    expected = order_intake(in_process, files=[path], engine=alone, options={"spreadsheet": {"chunk_rows": 10}})

    cluster = dask_cluster()
    ran_in(cluster)
    got = on_dask(take_in_drop, cluster)(str(dask_drop), store_address(engine).url)
    assert (got["read"], got["new"], got["quarantined"]) == (40, 38, 2) and got["batches"] > 2
    assert got == expected[f"file:{path}"]
    assert_taken_in_once(engine, rows, bad)
    assert store_counts(engine) == store_counts(alone)


@pytest.mark.prefect
def test_settlement_files_on_a_dask_cluster_reconcile_as_in_process(prefect_server, dask_cluster, engine, tmp_path):
    """A day's four payment files each ingested in a worker process (the store as its address, the policy as the
    flow run read it); matching and what follows it in the flow run: every line matched once, as alone."""
    from test_concurrency import reconcile_day, settlement_outcome
    from test_settlement import build_store, day_files

    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite has one writer at a time: the files are taken in one after another in the flow's process")
    build_store(engine)
    files = [str(f) for f in day_files(tmp_path)]
    alone = make_engine(f"sqlite:///{tmp_path / 'alone.db'}")
    init_db(alone)
    build_store(alone)
    expected = reconcile_day(str(alone.url), files)

    cluster = dask_cluster()
    ran_in(cluster)
    got = on_dask(reconcile_files, cluster)(store_address(engine).url, files)
    assert got["files"] == ["ingested"] * 4 and got["matched"] == expected["matched"] == 9
    assert settlement_outcome(engine) == settlement_outcome(alone)
