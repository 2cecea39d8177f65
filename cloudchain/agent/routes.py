"""What the agent answers on each path: plain functions of the query, returning an Answer or
raising a Problem (the HTTP status, code and message of an error, never a secret). server.py
runs them: a cached secret on its event loop, anything that may call AWS on a thread.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple

from ..envfile import check_loader_variables, check_prefix, env_names, render
from ..errors import (
    AccessDeniedError,
    CloudChainConfigError,
    CloudChainError,
    EndpointError,
    IntegrityError,
    SecretNotFoundError,
    ThrottledError,
    ValidationError,
)
from ..results import Versioned
from .cached import CachedSecrets

Params = dict[str, list[str]]


class Problem(Exception):
    """An answer other than 200: its status, code and message (never a secret)."""

    def __init__(self, status: int, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.hint = status, code, hint


def problem_for(err: CloudChainError) -> Problem:
    """The HTTP answer for a library error."""
    hint = err.hint
    if isinstance(err, ValidationError):
        return Problem(400, "bad_request", str(err), hint)
    if isinstance(err, SecretNotFoundError):
        return Problem(404, "not_found", str(err), hint)
    if isinstance(err, EndpointError):
        code = "throttled" if isinstance(err, ThrottledError) else "unavailable"
        return Problem(503, code, str(err), hint)
    if isinstance(err, AccessDeniedError):
        return Problem(502, "access_denied", str(err), hint)
    if isinstance(err, IntegrityError):
        return Problem(502, "integrity", str(err), hint)
    if isinstance(err, CloudChainConfigError):
        return Problem(502, "config", str(err), hint)
    return Problem(502, "aws_error", str(err), hint)


class Answer:
    """An answer: its body, content type, extra headers, and the code of an error."""

    def __init__(
        self,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        self.body, self.content_type, self.headers = body, content_type, headers or {}
        self.code = code  # an error answer's code


def json_answer(data: Any) -> Answer:
    """A 200 with a JSON body."""
    return Answer(json.dumps(data, ensure_ascii=False).encode(), "application/json")


class Agent:
    """What the handlers share: the secrets, the token (TCP only), and request counts."""

    def __init__(self, cached: CachedSecrets, token: str | None) -> None:
        self.cached = cached
        self.token = token
        self.statuses: Counter[int] = Counter()
        self.clients: Counter[tuple[str, int]] = Counter()  # (access-file name, status)
        self.lock = threading.Lock()
        self.registry = _registry(self)

    @staticmethod
    def _one(params: Params, name: str, required: bool = True) -> str | None:
        values = params.get(name, [])
        if len(values) > 1:
            raise Problem(400, "bad_request", f"{name} is given more than once")
        if not values:
            if required:
                raise Problem(400, "bad_request", f"the query needs {name}=")
            return None
        return values[0]

    def _secret_query(self, params: Params) -> tuple[str, str, int | None, str]:
        service, user = self._one(params, "service"), self._one(params, "user")
        version = self._one(params, "version", required=False)
        if version is not None and not (version.isascii() and version.isdigit()):
            raise Problem(400, "bad_request", "version must be a whole number")
        stage = self._one(params, "stage", required=False) or "current"
        return str(service), str(user), int(version) if version else None, stage

    @staticmethod
    def _secret_answer(found: Versioned) -> Answer:
        headers = {"X-Cloudchain-Version": str(found.version)}
        if isinstance(found.value, bytes):
            return Answer(found.value, "application/octet-stream", headers)
        return Answer(found.value.encode("utf-8"), "text/plain; charset=utf-8", headers)

    def cached_secret(self, params: Params) -> Answer | None:
        """The secret, if the cache holds it now (never waits); else None."""
        try:
            found = self.cached.peek_secret(*self._secret_query(params))
        except CloudChainError as err:
            raise problem_for(err) from None
        return None if found is None else self._secret_answer(found)

    def secret(self, params: Params) -> Answer:
        return self._secret_answer(self.cached.secret(*self._secret_query(params)))

    def service(self, params: Params) -> Answer:
        service = str(self._one(params, "service"))
        fmt = self._one(params, "format", required=False) or "json"
        if fmt not in ("json", "dotenv", "env"):
            raise Problem(400, "bad_request", "format must be json, dotenv or env")
        prefix = check_prefix(self._one(params, "prefix", required=False) or "")
        tags = {}
        for tag in params.get("tag", []):
            key, equals, value = tag.partition("=")
            if not equals:
                raise Problem(400, "bad_request", f"tag {tag!r} must be KEY=VALUE")
            tags[key] = value
        values = {u: v.value for u, v in self.cached.service(service, tags).items()}
        names = {} if fmt == "json" else env_names(service, list(values), prefix)
        check_loader_variables(service, names, set(params.get("allow_env", [])))
        try:
            text = render(fmt, values, names)
        except CloudChainError as err:  # a value that cannot be written in this format
            raise Problem(422, "refused", str(err), err.hint) from None
        kind = "application/json" if fmt == "json" else "text/plain; charset=utf-8"
        return Answer(text.encode("utf-8"), kind)

    def refresh(self, params: Params) -> Answer:
        service = str(self._one(params, "service"))
        user = self._one(params, "user", required=False)
        return json_answer({"dropped": self.cached.refresh(service, user)})

    def health(self, params: Params) -> Answer:
        return json_answer({"status": "ok"})

    def metrics(self, params: Params) -> Answer:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Answer(generate_latest(self.registry), CONTENT_TYPE_LATEST)

    def routes(self) -> dict[str, Route]:
        """Path -> its method, its handler, and whether the handler may wait for AWS."""
        return {
            "/v1/secret": Route("GET", self.secret, blocking=True),
            "/v1/service": Route("GET", self.service, blocking=True),
            "/v1/refresh": Route("POST", self.refresh),
            "/v1/watch": Route("GET", _long_polled),
            "/healthz": Route("GET", self.health),
            "/metrics": Route("GET", self.metrics),
        }

    def count(self, status: int, client: str | None = None) -> None:
        """Count one answer, for /metrics: by status, and by client name if it has one."""
        with self.lock:
            self.statuses[status] += 1
            if client is not None:
                self.clients[client, status] += 1


def _long_polled(params: Params) -> Answer:
    raise RuntimeError("server.py answers /v1/watch on its loop (watching.py)")


class Route(NamedTuple):
    """What a path takes."""

    method: str
    handle: Callable[[Params], Answer]
    blocking: bool = False


def _registry(agent: Agent) -> Any:
    """A Prometheus registry of the agent's own counts, read when /metrics is asked."""
    from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily

    class Collector:
        def collect(self) -> Any:
            stats, counters, cache = (
                agent.cached.cache.stats,
                agent.cached.counters,
                agent.cached.cache,
            )
            for name, text, value in (
                ("cloudchain_agent_cache_hits", "reads answered from the cache", stats.hits),
                ("cloudchain_agent_cache_misses", "reads that fetched from AWS", stats.misses),
                ("cloudchain_agent_refreshes", "prefetched services reloaded", counters.refreshes),
                ("cloudchain_agent_stale_served", "reads answered past their TTL", stats.stale),
                ("cloudchain_agent_aws_errors", "fetches that AWS failed", counters.aws_errors),
                ("cloudchain_agent_kms_calls", "KMS decrypt calls made", counters.kms_calls),
                (
                    "cloudchain_agent_change_checks",
                    "change checks made (a projected query, no KMS)",
                    counters.change_checks,
                ),
                (
                    "cloudchain_agent_changes_seen",
                    "secrets a change check found changed, new or gone",
                    counters.changes_seen,
                ),
                (
                    "cloudchain_agent_failovers",
                    "reads served from a replica region",
                    agent.cached.chain.failovers,
                ),
            ):
                yield CounterMetricFamily(name, text, value=value)
            yield GaugeMetricFamily("cloudchain_agent_cached_entries", "entries held", len(cache))
            yield GaugeMetricFamily(
                "cloudchain_agent_due_secrets",
                "prefetched secrets due for rotation",
                agent.cached.due_now(),
            )
            requests = CounterMetricFamily(
                "cloudchain_agent_requests", "requests answered, by status", labels=["status"]
            )
            by_client = CounterMetricFamily(
                "cloudchain_agent_client_requests",
                "requests answered, by the access file's client name and status",
                labels=["client", "status"],
            )
            with agent.lock:
                for status, count in sorted(agent.statuses.items()):
                    requests.add_metric([str(status)], count)
                for (name, status), count in sorted(agent.clients.items()):
                    by_client.add_metric([name, str(status)], count)
            yield requests
            yield by_client

    registry = CollectorRegistry()
    registry.register(Collector())  # type: ignore[arg-type]
    return registry
