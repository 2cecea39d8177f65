"""The agent's log stays bounded and printable (in-process: cloudchain.agent.logs)."""

from __future__ import annotations

import logging

import pytest

from cloudchain.agent import logs


def test_past_the_rate_request_lines_are_counted_in_one_line(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: now[0])
    requests = logs.RequestLog(per_second=3)
    with caplog.at_level(logging.INFO, logger="cloudchain.agent"):
        for _ in range(10):
            requests.request("GET", "/v1/secret", 403, 0.1)
        requests.request("GET", "/healthz", 200, 0.1)  # a success here is never logged
        now[0] += 1.0
        requests.request("GET", "/v1/secret", 200, 0.1)
    lines = [record.getMessage() for record in caplog.records]
    assert lines == ["GET /v1/secret 403 0.1 ms"] * 3 + [
        "7 request lines left out (more than 3 a second)",
        "GET /v1/secret 200 0.1 ms",
    ]


def test_every_line_is_printable() -> None:
    record = logging.LogRecord(
        "cloudchain.agent", logging.INFO, "", 0, "GET %s", ("/\x1b[2J\x07",), None
    )
    assert logs.Escaped("%(message)s").format(record) == "GET /\\x1b[2J\\x07"
