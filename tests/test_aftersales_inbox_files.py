"""The after-sales file-drop inbox does not re-read every file each cycle: committed files move to processed/, a
file dropped again lands nothing new, and a file dropped while a cycle runs is read by the next one."""

from __future__ import annotations

import json

from aftersales_support import add_order, build_reference, local

from flows.aftersales import land_inbox_task


def _drop(inbox, name, records):
    folder = inbox / "requests" / "form"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")


def test_processed_files_move_away_and_a_redrop_adds_nothing(engine, tmp_path):
    build_reference(engine)
    add_order(engine, "YD-F", {"SKU-0009": 1}, delivered=local(2026, 12, 2))
    inbox = tmp_path / "inbox"
    first_file = [{"source_id": "form-1", "order_no": "YD-F", "kind": "退货"}, {"source_id": "form-2", "kind": "退货"}]
    _drop(inbox, "a.json", first_file)
    land = land_inbox_task.fn if hasattr(land_inbox_task, "fn") else land_inbox_task
    first = land(engine, inbox, local(2026, 12, 5, 11), "test")
    assert first == {"requests/form": {"landed": 1, "duplicates": 0, "quarantined": 1}}
    assert list((inbox / "requests" / "form").iterdir()) == []
    assert [p.name for p in (inbox / "processed" / "requests" / "form").iterdir()] == ["a.json"]
    assert land(engine, inbox, local(2026, 12, 5, 11, 15), "test") == {}  # nothing left to read
    _drop(inbox, "a.json", first_file)  # the same file dropped again: kept beside the first, nothing new lands
    again = land(engine, inbox, local(2026, 12, 5, 11, 30), "test")
    assert again == {"requests/form": {"landed": 0, "duplicates": 2, "quarantined": 0}}
    assert sorted(p.name for p in (inbox / "processed" / "requests" / "form").iterdir()) == ["a.1.json", "a.json"]
