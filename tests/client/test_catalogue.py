"""Every catalogue route, called through its generated method against the fake Crisp.

The fake's request log is the recording server: each call must arrive with the catalogue's
method, its path with every parameter escaped into one segment, the query options given and
the JSON body. The fake's own router (which reads the catalogue independently of the
client's) must also recognise the request as that route.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from crisp_api import Crisp, RouteError
from crisp_api.testing import FakeCrisp

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE: list[dict[str, Any]] = json.loads(
    (ROOT / "crisp_api" / "catalogue.json").read_text("utf-8")
)
PARAM = re.compile(r"\{(\w+)\}")
WRITES = ("POST", "PUT", "PATCH")
PAGE = 2
BODY = {"sample": ["body", 1]}
HOSTILE = "x/../y?z#w%25 ."
"""Part of every sample id: ``/``, ``..``, ``?``, ``#``, ``%``, a space; must stay one segment."""
OPTION = "v 1/&="
"""Every query option's sample value, which needs escaping too."""


def sample(param: str) -> str | int:
    return PAGE if param == "page_number" else f"{param}-{HOSTILE}"


def expected_path(template: str, values: dict[str, Any]) -> str:
    return "/v1" + PARAM.sub(lambda m: quote(str(values[m.group(1)]), safe=""), template)


def expected_query(options: dict[str, Any]) -> str:
    return "&".join(f"{key}={quote(str(options[key]), safe='')}" for key in sorted(options))


def split_target(target: str) -> tuple[str, str]:
    path, _, query = target.partition("?")
    return path, query


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCrisp]:
    with FakeCrisp(conversations=3, messages=2, seed=5) as server:
        yield server


@pytest.fixture
def crisp(fake: FakeCrisp) -> Iterator[Crisp]:
    fake.reset_stats()
    with fake.client(cache_ttl=0, max_retries=0) as client:
        yield client


def call_ignoring_errors(method: Any, *args: Any, **kwargs: Any) -> None:
    """Call a route; the fake refuses unknown ids (404) or sample bodies (400), which is
    fine here: only what was sent matters."""
    with contextlib.suppress(RouteError):
        method(*args, **kwargs)


def test_every_route_sends_its_method_path_query_and_body(crisp: Crisp, fake: FakeCrisp) -> None:
    expected: list[tuple[str, str, str, bytes]] = []
    for entry in CATALOGUE:
        params = PARAM.findall(entry["path"])
        values = {param: sample(param) for param in params}
        options = {name: f"{name}={OPTION}" for name in entry.get("query", [])}
        method = getattr(getattr(crisp, entry["service"]), entry["name"])
        args: list[Any] = [values[param] for param in params]
        if entry["method"] in WRITES:
            args.append(BODY)
        call_ignoring_errors(method, *args, **options)
        body = (
            json.dumps(BODY, separators=(",", ":")).encode() if entry["method"] in WRITES else b""
        )
        expected.append(
            (entry["method"], expected_path(entry["path"], values), expected_query(options), body)
        )

    log = fake.stats.log
    assert len(log) == len(expected) == len(CATALOGUE)
    for entry, request, (method, path, query, body) in zip(CATALOGUE, log, expected, strict=True):
        sent_path, sent_query = split_target(request.target)
        assert (request.method, sent_path, sent_query) == (method, path, query), entry["name"]
        assert request.body == body, entry["name"]
        template_segments = entry["path"].count("/")
        assert sent_path.count("/") == template_segments + 1, entry["name"]
    recognised = Counter((entry["method"], entry["path"]) for entry in CATALOGUE)
    assert fake.stats.routes == dict(recognised)


def test_query_mapping_and_named_options_merge(crisp: Crisp, fake: FakeCrisp) -> None:
    call_ignoring_errors(
        crisp.website.list_conversations,
        "w",
        1,
        {"per_page": 20, "search_query": "mapping"},
        search_query="named wins",
        filter_unread=True,
        filter_date_end=None,
    )
    (request,) = fake.stats.log
    assert split_target(request.target)[1] == (
        "filter_unread=1&per_page=20&search_query=named%20wins"
    )


def test_aliases_take_query_values_by_position(crisp: Crisp, fake: FakeCrisp) -> None:
    for entry in CATALOGUE:
        for alias in entry.get("aliases", []):
            params = PARAM.findall(entry["path"])
            values = {param: sample(param) for param in params}
            positional = {name: f"{name}-{OPTION}" for name in alias["positional_query"]}
            method = getattr(getattr(crisp, entry["service"]), alias["name"])
            fake.reset_stats()
            call_ignoring_errors(method, *(values[p] for p in params), *positional.values())
            (request,) = fake.stats.log
            assert request.method == entry["method"]
            assert split_target(request.target) == (
                expected_path(entry["path"], values),
                expected_query(positional),
            ), alias["name"]


def test_positional_query_names_are_query_options() -> None:
    """The catalogue lists every option in ``query``; positional ones only add an order."""
    for entry in CATALOGUE:
        options = entry.get("query", [])
        assert len(options) == len(set(options)), entry["name"]
        orders = [entry.get("positional_query", [])]
        orders += [alias["positional_query"] for alias in entry.get("aliases", [])]
        for order in orders:
            assert set(order) <= set(options), entry["name"]


@pytest.mark.parametrize("bad", ["", ".", ".."])
def test_ids_that_would_leave_their_segment_are_refused(crisp: Crisp, bad: str) -> None:
    with pytest.raises(ValueError, match="website_id"):
        crisp.website.get_website(bad)


SEARCH = (
    "search_query",
    "search_type",
    "search_operator",
    "include_empty",
    "filter_unread",
    "filter_resolved",
    "filter_not_resolved",
    "filter_mention",
    "filter_assigned",
    "filter_unassigned",
    "filter_date_start",
    "filter_date_end",
    "order_date_created",
    "order_date_updated",
)
# The original README's calls, verbatim (search_conversations without its stray quote).
SEED_CALLS = """
client.website.list_conversations(website_id, page_number)
client.website.create_new_conversation(website_id)
client.website.check_conversation_exists(website_id, session_id)
client.website.get_conversation(website_id, session_id)
client.website.remove_conversation(website_id, session_id)
client.website.initiate_conversation_with_existing_session(website_id, session_id)
client.website.get_messages_in_conversation(website_id, session_id, query)
client.website.send_message_in_conversation(website_id, session_id, data)
client.website.update_message_in_conversation(website_id, session_id, fingerprint, data)
client.website.compose_message_in_conversation(website_id, session_id, data)
client.website.mark_messages_read_in_conversation(website_id, session_id, data)
client.website.mark_messages_delivered_in_conversation(website_id, session_id, data)
client.website.get_conversation_routing_assign(website_id, session_id)
client.website.assign_conversation_routing(website_id, session_id, data)
client.website.get_conversation_metas(website_id, session_id)
client.website.update_conversation_metas(website_id, session_id, data)
client.website.list_conversation_pages(website_id, session_id, page_number)
client.website.list_conversation_events(website_id, session_id, page_number)
client.website.get_conversation_state(website_id, session_id)
client.website.change_conversation_state(website_id, session_id, data)
client.website.get_block_status_for_conversation(website_id, session_id)
client.website.block_incoming_messages_for_conversation(website_id, session_id, data)
client.website.request_email_transcript_for_conversation(website_id, session_id, data)
client.website.get_people_statistics(website_id)
client.website.list_people_segments(website_id, page_number)
client.website.list_people_profiles(website_id, page_number)
client.website.add_new_people_profile(website_id, data)
client.website.check_people_profile_exists(website_id, people_id)
client.website.get_people_profile(website_id, people_id)
client.website.save_people_profile(website_id, people_id, data)
client.website.update_people_profile(website_id, people_id, data)
client.website.remove_people_profile(website_id, people_id)
client.website.list_people_conversations(website_id, people_id, page_number)
client.website.add_people_event(website_id, people_id, data)
client.website.list_people_events(website_id, people_id, page_number)
client.website.get_people_data(website_id, people_id)
client.website.save_people_data(website_id, people_id, data)
client.website.get_people_subscription_status(website_id, people_id)
client.website.update_people_subscription_status(website_id, people_id, data)
client.website.create_website(data)
client.website.get_website(website_id)
client.website.delete_website(website_id)
client.website.batch_resolve_items(website_id, data)
client.website.batch_read_items(website_id, data)
client.website.batch_remove_items(website_id, data)
client.website.get_website_availability_status(website_id)
client.website.list_website_operators(website_id)
client.website.list_last_active_website_operators(website_id)
client.website.get_website_settings(website_id)
client.website.update_website_settings(website_id, data)
client.website.count_visitors(website_id)
client.website.list_visitors(website_id, page_number)
client.get_connect_account()
client.check_connect_session_validity()
client.list_all_connect_websites(page_number, filter_configured)
client.list_all_active_subscriptions()
client.list_subscriptions_website(website_id)
client.get_subscription_details(website_id, plugin_id)
client.subscribe_plugin_to_website(website_id)
client.unsubscribe_plugin_from_website(website_id, plugin_id)
client.get_subscription_settings(website_id, plugin_id)
client.save_subscription_settings(website_id, plugin_id, settings)
client.update_subscription_settings(website_id, plugin_id, settings)
client.forward_plugin_payload_to_channel(website_id, plugin_id, data)
client.dispatch_plugin_event(website_id, plugin_id, data)
client.bucket.generate_bucket_url(data)
""".strip().splitlines()
SEED_CALLS.insert(
    1, f"client.website.search_conversations(website_id, page_number, {', '.join(SEARCH)})"
)

SEED_VALUES: dict[str, Any] = {
    "website_id": f"website-{HOSTILE}",
    "session_id": f"session-{HOSTILE}",
    "people_id": "someone@example.com",
    "plugin_id": f"plugin-{HOSTILE}",
    "page_number": PAGE,
    "fingerprint": 524_372_189,  # an int, as the original library formatted it with %d
    "data": BODY,
    "settings": {"enabled": True},
    "query": {"timestamp_before": 1_700_000_000_000},
    "filter_configured": 1,
    **{name: f"{name} {OPTION}" for name in SEARCH},
}
SEED_QUERIES = {
    "search_conversations": expected_query({name: SEED_VALUES[name] for name in SEARCH}),
    "get_messages_in_conversation": "timestamp_before=1700000000000",
    "list_all_connect_websites": "filter_configured=1",
}


def seed_entry(service: str, name: str) -> dict[str, Any]:
    """The catalogue entry a seed-README name calls."""
    found = [
        entry
        for entry in CATALOGUE
        if entry["service"] == service
        and (
            entry.get("seed_name") == name
            or name in [alias["name"] for alias in entry.get("aliases", [])]
        )
    ]
    assert found, (service, name)
    assert {(entry["method"], entry["path"]) for entry in found} == {
        (found[0]["method"], found[0]["path"])
    }
    return found[0]


def test_seed_readme_calls_work_with_the_seed_signatures(crisp: Crisp, fake: FakeCrisp) -> None:
    calls = []
    for line in SEED_CALLS:
        found = re.fullmatch(r"client\.(?:(website|bucket)\.)?(\w+)\(.*\)", line)
        assert found, line
        service, name = found.group(1) or "plugin", found.group(2)
        calls.append((line, name, seed_entry(service, name)))
        call_ignoring_errors(eval, line, {"client": crisp, **SEED_VALUES})

    log = fake.stats.log
    assert len(log) == len(calls)
    for request, (line, name, entry) in zip(log, calls, strict=True):
        values = {param: SEED_VALUES[param] for param in PARAM.findall(entry["path"])}
        assert request.method == entry["method"], line
        assert split_target(request.target) == (
            expected_path(entry["path"], values),
            SEED_QUERIES.get(name, ""),
        ), line
        if entry["method"] in WRITES:
            given = re.search(r"\b(data|settings)\)$", line)
            assert json.loads(request.body) == (SEED_VALUES[given.group(1)] if given else {}), line


def test_every_seed_name_is_in_the_seed_readme() -> None:
    called = {line.partition("(")[0].rpartition(".")[2] for line in SEED_CALLS}
    seed_names = {entry["seed_name"] for entry in CATALOGUE if "seed_name" in entry}
    assert seed_names <= called


def test_plugin_shortcuts_on_the_client_are_the_plugin_methods(crisp: Crisp) -> None:
    for entry in CATALOGUE:
        seed = entry.get("seed_name")
        if entry["service"] == "plugin" and seed:
            shortcut = inspect.signature(getattr(crisp, seed))
            method = inspect.signature(getattr(crisp.plugin, seed))
            assert shortcut == method, seed


def documented(method: Any) -> str:
    return inspect.getdoc(method) or ""


def test_every_generated_method_documents_title_method_and_route(crisp: Crisp) -> None:
    for entry in CATALOGUE:
        resource = getattr(crisp, entry["service"])
        names = [entry["name"], *(alias["name"] for alias in entry.get("aliases", []))]
        for name in names:
            doc = documented(getattr(resource, name))
            assert doc.startswith(entry["title"] + "."), name
            assert f"``{entry['method']} {entry['path']}``" in doc, name


def test_every_query_option_is_a_keyword_of_its_method(crisp: Crisp) -> None:
    for entry in CATALOGUE:
        parameters = inspect.signature(
            getattr(getattr(crisp, entry["service"]), entry["name"])
        ).parameters
        for option in entry.get("query", []):
            assert parameters[option].default is None, (entry["name"], option)


def test_regenerating_the_resources_changes_nothing() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "crisp_api._codegen", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
