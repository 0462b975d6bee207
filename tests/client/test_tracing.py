"""The tracing layer (`middleware.tracing`, given Crisp's routes by `crisp_api.tracing`)
against the fake, its spans caught by the OpenTelemetry SDK's in-memory exporter: one span
per call named after the route template, its attempts as events, the HTTP conventions'
attributes, and nothing of the credentials, the ids in the URL or the bodies."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from crisp_api import Crisp
from crisp_api.errors import NotFoundError
from crisp_api.testing import FakeCrisp, Faults
from crisp_api.tracing import tracing

LIST = "GET /website/{website_id}/conversations/{page_number}"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCrisp]:
    with FakeCrisp(conversations=5, messages=2, seed=61) as server:
        yield server


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def client(fake: FakeCrisp, exporter: InMemorySpanExporter) -> Iterator[Crisp]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = fake.client()
    client.use(tracing(tracer_provider=provider), before="logging")
    yield client
    fake.set_faults()


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    [span] = exporter.get_finished_spans()
    return span


def shown(span: ReadableSpan) -> str:
    """Everything a span shows: its name, attributes and events."""
    return repr((span.name, dict(span.attributes or {}),
                 [(event.name, dict(event.attributes or {})) for event in span.events]))


def test_the_layer_is_outermost_by_name(client: Crisp) -> None:
    assert [layer.name for layer in client.middleware][:2] == ["tracing", "logging"]


def test_a_call_is_one_span_named_after_its_route(
    client: Crisp, fake: FakeCrisp, exporter: InMemorySpanExporter
) -> None:
    client.website.list_conversations(fake.website_id, 1)
    span = only_span(exporter)
    assert (span.name, span.kind, span.status.status_code) == (
        LIST, SpanKind.CLIENT, StatusCode.UNSET)
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "url.template": "/website/{website_id}/conversations/{page_number}",
        "server.address": fake.host,
        "server.port": fake.port,
        "http.response.status_code": 200,
        "middleware.cache": "miss",
    }
    assert [(event.name, (event.attributes or {})["http.attempt"]) for event in span.events] == [
        ("http.attempt", 1)]
    for secret in (fake.website_id, fake.key, fake.identifier):
        assert secret not in shown(span)


def test_retried_attempts_are_events_of_the_one_span(
    client: Crisp, fake: FakeCrisp, exporter: InMemorySpanExporter
) -> None:
    fake.set_faults(Faults(error_rate=1.0, error_statuses=(503,), budget=2, html_error_ratio=0))
    client.website.list_conversations(fake.website_id, 1)
    span = only_span(exporter)
    assert span.name == LIST
    attempts = [dict(event.attributes or {}) for event in span.events]
    assert [(a["http.attempt"], a.get("http.response.status_code"), a.get("retry"))
            for a in attempts] == [(1, 503, True), (2, 503, True), (3, 200, None)]
    assert all(a["retry.wait_s"] >= 0 for a in attempts[:2])
    attributes = dict(span.attributes or {})
    assert (attributes["http.request.resend_count"], attributes["http.response.status_code"],
            span.status.status_code) == (2, 200, StatusCode.UNSET)


def test_an_error_answer_is_an_error_span_with_its_status_as_type(
    client: Crisp, fake: FakeCrisp, exporter: InMemorySpanExporter
) -> None:
    with pytest.raises(NotFoundError):
        client.website.get_conversation(fake.website_id, "session_missing")
    span = only_span(exporter)
    assert span.name == "GET /website/{website_id}/conversation/{session_id}"
    assert (span.status.status_code, span.status.description) == (StatusCode.ERROR, "404")
    attributes = dict(span.attributes or {})
    assert (attributes["error.type"], attributes["http.response.status_code"]) == ("404", 404)
    assert "session_missing" not in shown(span)
    assert not any(event.name == "exception" for event in span.events)


def test_a_failure_without_an_answer_names_its_class(
    client: Crisp, fake: FakeCrisp, exporter: InMemorySpanExporter
) -> None:
    fake.set_faults(Faults(drop_before_rate=1.0))
    with pytest.raises(Exception):  # noqa: B017, PT011 - the client's own network error
        client.website.list_conversations(fake.website_id, 1)
    span = only_span(exporter)
    attributes = dict(span.attributes or {})
    assert span.status.status_code == StatusCode.ERROR
    assert attributes["error.type"] == span.status.description
    assert attributes["error.type"].endswith("Error")
    assert "http.response.status_code" not in attributes
    assert attributes["http.request.resend_count"] >= 1


def test_a_cached_answer_is_a_span_without_attempts(
    client: Crisp, fake: FakeCrisp, exporter: InMemorySpanExporter
) -> None:
    client.website.list_conversations(fake.website_id, 2)
    client.website.list_conversations(fake.website_id, 2)
    first, second = exporter.get_finished_spans()
    assert (first.name, second.name) == (LIST, LIST)
    assert dict(second.attributes or {})["middleware.cache"] == "hit"
    assert second.events == ()


def test_a_path_of_no_route_is_named_by_its_method_alone(
    client: Crisp, fake: FakeCrisp, exporter: InMemorySpanExporter
) -> None:
    with pytest.raises(NotFoundError):
        client.get(f"/website/{fake.website_id}/no-such-thing/42")
    span = only_span(exporter)
    assert span.name == "GET"
    assert "url.template" not in (span.attributes or {})
    assert fake.website_id not in shown(span)


def test_a_message_body_is_never_shown(
    client: Crisp, fake: FakeCrisp, exporter: InMemorySpanExporter
) -> None:
    session_id = fake.conversations()[0]["session_id"]
    client.website.send_message_in_conversation(
        fake.website_id, session_id,
        {"type": "text", "from": "operator", "origin": "chat", "content": "private words"})
    span = only_span(exporter)
    assert span.name == "POST /website/{website_id}/conversation/{session_id}/message"
    assert "private words" not in shown(span)


def test_without_opentelemetry_the_layer_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'crisp-api-next\[otel\]'"):
        tracing()
