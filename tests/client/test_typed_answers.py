"""Typed answers: the TypedDicts of ``crisp_api.types``, the methods that return them, mypy's
view of a user's code (``typed_snippet.py``), and the fake's answers fitting the types."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

import pytest

import crisp_api.types as answer_types
from crisp_api import Crisp, _codegen
from crisp_api.testing import FakeCrisp

ROOT = Path(__file__).resolve().parents[2]
SNIPPET = Path(__file__).with_name("typed_snippet.py")
CATALOGUE: list[dict[str, Any]] = json.loads(
    (ROOT / "crisp_api" / "catalogue.json").read_text("utf-8")
)
SPEC: dict[str, Any] = json.loads((ROOT / "crisp_api" / "answer_types.json").read_text("utf-8"))
IGNORE = "  # type: ignore[typeddict-item]"
REVEALS = re.compile(r"#\s*reveals:\s*(.+)$")
MYPY_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<kind>error|note): (?P<text>.*)$")


# mypy on the user's snippet ----------------------------------------------------------------


def _collapse(text: str) -> str:
    """``TypedDict(pkg.Name, {...})`` as ``Name``; ``builtins.`` dropped; adjacent literals
    merged: mypy's spelling of a type, made independent of its version."""
    out = []
    index = 0
    while (start := text.find("TypedDict(", index)) >= 0:
        out.append(text[index:start])
        depth = 0
        for end in range(start, len(text)):
            depth += text[end] in "({["
            depth -= text[end] in ")}]"
            if depth == 0 and text[end] == ")":
                break
        name = text[start + len("TypedDict("):].split(",", 1)[0].strip("'\"")
        out.append(name.rpartition(".")[2])
        index = end + 1
    text = "".join(out) + text[index:]
    text = text.replace("builtins.", "")
    while True:
        merged = re.sub(r"Literal\[([^\]]*)\] \| Literal\[", r"Literal[\1, ", text)
        if merged == text:
            return text
        text = merged


@pytest.fixture(scope="module")
def mypy_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, list[dict[str, str]], Path]:
    """One mypy run over the snippet and a copy of it without its ``type: ignore``."""
    folder = tmp_path_factory.mktemp("mypy")
    source = SNIPPET.read_text("utf-8")
    assert source.count(IGNORE) == 1
    typo = folder / "typed_snippet_typo.py"
    typo.write_text(source.replace(IGNORE, ""), "utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--warn-unused-ignores", "--no-color-output",
         "--no-error-summary", "--show-error-codes", "--cache-dir", str(folder / "cache"),
         str(SNIPPET), str(typo)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert not done.stderr.strip(), done.stderr
    lines = [found.groupdict() for found in map(MYPY_LINE.match, done.stdout.splitlines())
             if found]
    return done.returncode, lines, typo


def _of(lines: list[dict[str, str]], path: Path) -> list[dict[str, str]]:
    return [line for line in lines if Path(line["file"]).name == path.name]


def test_mypy_reveals_the_types_a_user_sees(
    mypy_run: tuple[int, list[dict[str, str]], Path],
) -> None:
    _, lines, _ = mypy_run
    mine = _of(lines, SNIPPET)
    expected = {
        number: found.group(1).strip()
        for number, text in enumerate(SNIPPET.read_text("utf-8").splitlines(), start=1)
        if (found := REVEALS.search(text))
    }
    assert len(expected) >= 15
    revealed = {}
    for line in mine:
        found = re.fullmatch(r'Revealed type is "(.*)"', line["text"])
        assert found, line  # nothing but reveals: no error, no unused or too narrow ignore
        revealed[int(line["line"])] = _collapse(found.group(1))
    assert revealed == expected


def test_a_misspelt_key_is_a_type_error(
    mypy_run: tuple[int, list[dict[str, str]], Path],
) -> None:
    returncode, lines, typo = mypy_run
    assert returncode == 1
    errors = [line for line in _of(lines, typo) if line["kind"] == "error"]
    number = next(number for number, text in
                  enumerate(SNIPPET.read_text("utf-8").splitlines(), start=1) if IGNORE in text)
    assert [(int(e["line"]), e["text"]) for e in errors] == [
        (number, 'TypedDict "Conversation" has no key "sesion_id"  [typeddict-item]')
    ]


# The generated types and annotations -------------------------------------------------------


def _expected_return(entry: dict[str, Any]) -> Any:
    returns = entry.get("returns")
    return Any if returns is None else eval(returns, vars(answer_types))


def test_every_typed_dict_is_total_false_with_the_required_keys_of_its_description() -> None:
    for kind in SPEC["types"]:
        declared = getattr(answer_types, kind["name"])
        if "union" in kind:
            assert not is_typeddict(declared)
            continue
        assert is_typeddict(declared), kind["name"]
        assert declared.__total__ is False
        required = {field["name"] for field in kind["fields"] if field.get("required")}
        if "base" in kind:
            required |= getattr(answer_types, kind["base"]).__required_keys__
        assert declared.__required_keys__ == required, kind["name"]
        assert inspect.getdoc(declared), kind["name"]


def test_methods_return_their_catalogue_type(crisp: Crisp) -> None:
    typed = 0
    for entry in CATALOGUE:
        resource = getattr(crisp, entry["service"])
        names = [entry["name"], *(alias["name"] for alias in entry.get("aliases", []))]
        names += [entry[key] for key in ("seed_name", "official_name") if key in entry]
        expected = _expected_return(entry)
        typed += expected is not Any
        for name in names:
            hints = get_type_hints(getattr(resource, name))
            assert hints["return"] == expected, name
        if entry["service"] == "plugin" and "seed_name" in entry:
            shortcut = get_type_hints(getattr(crisp, entry["seed_name"]))
            assert shortcut["return"] == expected, entry["seed_name"]
    assert typed >= 12


def test_the_iterators_are_typed(crisp: Crisp) -> None:
    website = crisp.website
    assert get_type_hints(website.iter_conversations)["return"] == (
        Iterator[answer_types.ConversationListItem]
    )
    assert get_type_hints(website.iter_messages)["return"] == Iterator[answer_types.Message]
    assert get_type_hints(website.iter_message_pages)["return"] == (
        Iterator[list[answer_types.Message]]
    )


def test_the_most_used_methods_are_documented(crisp: Crisp) -> None:
    documented = [entry for entry in CATALOGUE if entry.get("doc")]
    assert len(documented) >= 30
    for entry in documented:
        doc = inspect.getdoc(getattr(getattr(crisp, entry["service"]), entry["name"])) or ""
        assert " ".join(entry["doc"].split()) in " ".join(doc.split()), entry["name"]


def test_the_generator_needs_no_formatter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rendering starts no process (no ruff) and gives the committed files, lines within
    the width but for the docstrings' route lines."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the generator started a process")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    routes = {f"``{entry['method']} {entry['path']}``" for entry in CATALOGUE}
    for path, text in _codegen.render_all().items():
        assert path.read_text("utf-8") == text, path
        for line in text.splitlines():
            assert len(line) <= _codegen.WIDTH or line.strip() in routes, (path, line)


# The fake's answers fit the types ----------------------------------------------------------


def _problems(value: Any, expected: Any, where: str) -> list[str]:
    """Where ``value`` does not fit the type ``expected`` (keys Crisp may omit aside)."""
    origin = get_origin(expected)
    if expected is Any:
        return []
    if is_typeddict(expected):
        if type(value) is not dict:
            return [f"{where}: {value!r} is not a dict"]
        hints = get_type_hints(expected)
        found = [f"{where}: no {key!r}" for key in expected.__required_keys__ - value.keys()]
        found += [f"{where}: undeclared {key!r}" for key in value.keys() - hints.keys()]
        for key in sorted(value.keys() & hints.keys()):
            found += _problems(value[key], hints[key], f"{where}.{key}")
        return found
    if origin in (Union, types.UnionType):
        if any(not _problems(value, member, where) for member in get_args(expected)):
            return []
        return [f"{where}: {value!r} fits none of {expected}"]
    if origin is Literal:
        return [] if value in get_args(expected) else [f"{where}: {value!r} not in {expected}"]
    if origin is list:
        if type(value) is not list:
            return [f"{where}: {value!r} is not a list"]
        (item,) = get_args(expected)
        return [p for index, one in enumerate(value)
                for p in _problems(one, item, f"{where}[{index}]")]
    if origin is dict:
        if type(value) is not dict:
            return [f"{where}: {value!r} is not a dict"]
        _, item = get_args(expected)
        return [p for key, one in value.items() for p in _problems(one, item, f"{where}[{key!r}]")]
    if expected is type(None):
        return [] if value is None else [f"{where}: {value!r} is not None"]
    if expected is float:
        return [] if type(value) in (int, float) else [f"{where}: {value!r} is not a number"]
    return [] if type(value) is expected else [f"{where}: {value!r} is not {expected}"]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCrisp]:
    with FakeCrisp(conversations=12, messages=30, people=5, seed=11, rtm=False) as server:
        yield server


@pytest.fixture
def crisp(fake: FakeCrisp) -> Iterator[Crisp]:
    with fake.client(cache_ttl=0, max_retries=0) as client:
        yield client


def test_the_fakes_answers_fit_every_typed_route(crisp: Crisp, fake: FakeCrisp) -> None:
    website_id = fake.website_id
    site = crisp.website
    session_id = site.list_conversations(website_id, 1)[0]["session_id"]
    fingerprint = site.get_messages_in_conversation(website_id, session_id)[0]["fingerprint"]
    people_id = site.list_people_profiles(website_id, 1)[0]["people_id"]
    answers = {
        ("website", "get_website"): site.get_website(website_id),
        ("website", "list_conversations"): site.list_conversations(website_id, 1),
        ("website", "create_new_conversation"): site.create_new_conversation(website_id),
        ("website", "get_conversation"): site.get_conversation(website_id, session_id),
        ("website", "get_messages_in_conversation"): site.get_messages_in_conversation(
            website_id, session_id),
        ("website", "send_message_in_conversation"): site.send_message_in_conversation(
            website_id, session_id,
            {"type": "text", "from": "operator", "origin": "chat", "content": "Typed"}),
        ("website", "get_message_in_conversation"): site.get_message_in_conversation(
            website_id, session_id, fingerprint),
        ("website", "get_conversation_metas"): site.get_conversation_metas(website_id,
                                                                           session_id),
        ("website", "list_website_operators"): site.list_website_operators(website_id),
        ("website", "list_people_profiles"): site.list_people_profiles(website_id, 1),
        ("website", "add_new_people_profile"): site.add_new_people_profile(
            website_id, {"email": "typed@example.com", "person": {"nickname": "Typed"}}),
        ("website", "get_people_profile"): site.get_people_profile(website_id, people_id),
        ("website", "list_people_conversations"): site.list_people_conversations(
            website_id, people_id, 1),
        ("plugin", "list_all_connect_websites"): crisp.plugin.list_all_connect_websites(1),
        ("plugin", "list_connect_websites_since"): crisp.plugin.list_connect_websites_since(
            "2000-01-01T00:00:00.000Z"),
    }
    typed = {(entry["service"], entry["name"]): entry for entry in CATALOGUE if "returns" in entry}
    assert answers.keys() == typed.keys()  # a new ``returns`` needs a sample call here
    for key, answer in answers.items():
        assert type(answer) in (dict, list), key  # TypedDicts are plain dicts at run time
        assert answer, key
        assert _problems(answer, _expected_return(typed[key]), "/".join(key)) == []


def test_the_iterators_yield_what_their_types_say(crisp: Crisp, fake: FakeCrisp) -> None:
    website_id = fake.website_id
    items = list(crisp.website.iter_conversations(website_id))
    assert len(items) >= 12
    kinds = set()
    for item in items:
        assert _problems(item, answer_types.ConversationListItem, item["session_id"]) == []
        for message in crisp.website.iter_messages(website_id, item["session_id"]):
            kinds.add(message["type"])
            assert _problems(message, answer_types.Message, item["session_id"]) == []
    assert {"text", "file"} <= kinds  # content both as a string and as an object
