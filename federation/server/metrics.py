"""A small hand-written Prometheus exporter (text exposition format 0.0.4).

The node needs a handful of series — requests by route and status, a latency histogram, auth
failures by code, log and index sizes — which does not justify a dependency.  Counters live in
memory per process; sizes are gauges the ``/metrics`` route reads at scrape time.

Labels are route *patterns* (``/v1/logs/{member}/checkpoint``), never raw paths, so a caller
cannot blow up the series count with made-up URLs.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

LabelPairs: TypeAlias = tuple[tuple[str, str], ...]
"""Label name/value pairs of one series, in output order."""
Gauges: TypeAlias = Mapping[str, tuple[str, Mapping[LabelPairs, float]]]
"""Gauge name -> (help text, {labels: value}), read at scrape time."""

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: LabelPairs) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    total: int = 0
    sum: float = 0.0

    def observe(self, seconds: float) -> None:
        i = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        if i < len(LATENCY_BUCKETS):
            self.counts[i] += 1
        self.total += 1
        self.sum += seconds


class Metrics:
    """The node's in-process counters and histogram."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, str]] = Counter()
        self.auth_failures: Counter[str] = Counter()
        self._latency: dict[str, _Histogram] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request and its duration."""
        self.requests[(route, method, str(status))] += 1
        self._latency.setdefault(route, _Histogram()).observe(seconds)

    def auth_failure(self, code: str) -> None:
        """Count one refused request (401/403) by error code."""
        self.auth_failures[code] += 1

    def render(self, gauges: Gauges) -> str:
        """The exposition text; ``gauges`` maps name -> (help, {label pairs: value})."""
        out: list[str] = []
        out += [
            "# HELP hashfed_http_requests_total HTTP requests by route pattern, method, status.",
            "# TYPE hashfed_http_requests_total counter",
        ]
        for (route, method, status), n in sorted(self.requests.items()):
            pairs: LabelPairs = (("route", route), ("method", method), ("status", status))
            out.append(f"hashfed_http_requests_total{_labels(pairs)} {n}")
        out += [
            "# HELP hashfed_http_request_duration_seconds Request latency by route pattern.",
            "# TYPE hashfed_http_request_duration_seconds histogram",
        ]
        for route, hist in sorted(self._latency.items()):
            cumulative = 0
            for bound, count in zip(LATENCY_BUCKETS, hist.counts, strict=True):
                cumulative += count
                pairs = (("route", route), ("le", _number(bound)))
                out.append(
                    f"hashfed_http_request_duration_seconds_bucket{_labels(pairs)} {cumulative}"
                )
            inf = (("route", route), ("le", "+Inf"))
            name = "hashfed_http_request_duration_seconds"
            out.append(f"{name}_bucket{_labels(inf)} {hist.total}")
            out.append(f"{name}_sum{_labels((('route', route),))} {repr(hist.sum)}")
            out.append(f"{name}_count{_labels((('route', route),))} {hist.total}")
        out += [
            "# HELP hashfed_auth_failures_total Refused requests (401/403) by error code.",
            "# TYPE hashfed_auth_failures_total counter",
        ]
        for code, n in sorted(self.auth_failures.items()):
            out.append(f"hashfed_auth_failures_total{_labels((('code', code),))} {n}")
        for name, (help_text, series) in sorted(gauges.items()):
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
            for pairs, value in sorted(series.items()):
                out.append(f"{name}{_labels(pairs)} {_number(value)}")
        return "\n".join(out) + "\n"


def route_label(request: web.Request) -> str:
    """The route pattern that matched, or ``unmatched`` (bounded label values)."""
    info = request.match_info
    if info.http_exception is not None:
        return "unmatched"
    resource = info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def metrics_middleware(
    metrics: Metrics, clock: Callable[[], float] = time.perf_counter
) -> Middleware:
    """Count and time every request.  Sits outside the error middleware, so it sees final
    statuses; an exception escaping it (client disconnect) is counted as 499."""

    @web.middleware
    async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = clock()
        status = 499
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            metrics.observe_request(route_label(request), request.method, status, clock() - start)

    return measure
