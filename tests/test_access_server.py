"""Issue 20, build 1: `make up` never exposes an unauthenticated Prefect server beyond loopback."""

from __future__ import annotations

import pytest

from app import local_stack


@pytest.fixture
def nothing_starts(monkeypatch):
    def must_not_run(*_args, **_kwargs):
        raise AssertionError("make up went on after it should have refused")

    monkeypatch.setattr(local_stack, "init_store", must_not_run)
    monkeypatch.setattr(local_stack, "start_server", must_not_run)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "yidi.example.com"])
def test_a_non_loopback_make_up_without_auth_refuses_to_start(monkeypatch, nothing_starts, host):
    monkeypatch.setenv("YIDI_PREFECT_HOST", host)
    monkeypatch.delenv("PREFECT_SERVER_API_AUTH_STRING", raising=False)
    with pytest.raises(SystemExit, match=f"refusing to bind the Prefect server to {host}.*PREFECT_SERVER_API_AUTH"):
        local_stack.up()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_needs_no_auth(monkeypatch, host):
    monkeypatch.setenv("YIDI_PREFECT_HOST", host)
    monkeypatch.delenv("PREFECT_SERVER_API_AUTH_STRING", raising=False)
    local_stack.require_auth_beyond_loopback()


def test_with_auth_the_server_binds_wide_and_workers_and_cli_get_the_credentials(monkeypatch):
    monkeypatch.setenv("YIDI_PREFECT_HOST", "0.0.0.0")
    monkeypatch.setenv("PREFECT_SERVER_API_AUTH_STRING", "ops:s3cret")
    monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    local_stack.require_auth_beyond_loopback()
    assert local_stack.bind_host() == "0.0.0.0"
    assert local_stack.prefect_env()["PREFECT_API_AUTH_STRING"] == "ops:s3cret"
    assert local_stack.api_url().startswith("http://127.0.0.1:")  # clients on this machine stay on loopback
