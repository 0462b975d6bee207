"""Conversations: listing with Crisp's paging and filters, creation, removal, state, meta,
block, verification, routing, participants and read marks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crisp_api.testing.context import Context, Raw
from crisp_api.testing.data import META_FIELDS, Conversation
from crisp_api.testing.errors import invalid_data
from crisp_api.testing.handlers.registry import CONVERSATION, WEBSITE, handles

_STRING_META = META_FIELDS - {"data", "device", "segments"}


def encode_list(conversations: list[Conversation]) -> Raw:
    """A JSON array of conversations from their cached encodings."""
    return Raw(b"[" + b",".join(conversation.encode() for conversation in conversations) + b"]")


@handles("GET", WEBSITE + "/conversations/{page_number}")
def list_conversations(context: Context) -> object:
    """Newest ``updated_at`` first; ``filter_date_start``/``filter_date_end`` bound
    ``updated_at`` inclusively; a page past the end is empty."""
    website = context.website
    page = context.page()
    per_page = context.per_page()
    start = context.date("filter_date_start")
    end = context.date("filter_date_end")
    return encode_list(website.page(page, per_page, start, end, _filter(context)))


def _filter(context: Context) -> Callable[[Conversation], bool] | None:
    """The conversation filter the other query options ask for, if any."""
    tests: list[Callable[[Conversation], bool]] = []
    if context.flag("filter_unread"):
        tests.append(lambda conversation: conversation.unread_operator > 0)
    if context.flag("filter_resolved"):
        tests.append(lambda conversation: conversation.state == "resolved")
    if context.flag("filter_not_resolved"):
        tests.append(lambda conversation: conversation.state != "resolved")
    if context.flag("filter_unassigned"):
        tests.append(lambda conversation: not conversation.assigned)
    assignee = context.query("filter_assigned")
    if assignee:
        tests.append(lambda conversation: conversation.assigned.get("user_id") == assignee)
    search = (context.query("search_query") or "").lower()
    if search and context.query("search_type") == "segment":
        tests.append(lambda conversation: search in conversation.meta.get("segments", []))
    elif search:
        tests.append(lambda conversation: _mentions(conversation, search))
    if not tests:
        return None
    return lambda conversation: all(test(conversation) for test in tests)


def _mentions(conversation: Conversation, text: str) -> bool:
    meta = conversation.meta
    last = conversation.last
    haystack = (str(meta.get("nickname", "")), str(meta.get("email", "")), conversation.topic,
                "" if last is None else last.excerpt())
    return any(text in value.lower() for value in haystack)


@handles("POST", WEBSITE + "/conversation")
def create_conversation(context: Context) -> object:
    """A new empty conversation."""
    conversation = context.world.create_conversation(context.website)
    return {"session_id": conversation.session_id}


@handles("HEAD", CONVERSATION)
@handles("GET", CONVERSATION)
def get_conversation(context: Context) -> object:
    """One conversation (HEAD: whether it exists)."""
    return Raw(context.conversation.encode())


@handles("DELETE", CONVERSATION)
def remove_conversation(context: Context) -> object:
    """Delete a conversation and its messages."""
    context.world.remove_conversation(context.website, context.conversation)
    return {}


@handles("POST", CONVERSATION + "/initiate")
def initiate_conversation(context: Context) -> object:
    """Accepted for an existing conversation; nothing to change in the fake."""
    return {}


@handles("GET", CONVERSATION + "/state")
def get_state(context: Context) -> object:
    """``{"state": ...}``."""
    return {"state": context.conversation.state}


@handles("PATCH", CONVERSATION + "/state")
def change_state(context: Context) -> object:
    """Set ``pending``, ``unresolved`` or ``resolved``; bumps ``updated_at``."""
    state = context.json().get("state")
    if not isinstance(state, str):
        raise invalid_data()
    context.world.set_state(context.website, context.conversation, state)
    return {}


@handles("GET", CONVERSATION + "/meta")
def get_meta(context: Context) -> object:
    """The conversation's ``meta`` object."""
    return context.conversation.meta


@handles("PATCH", CONVERSATION + "/meta")
def update_meta(context: Context) -> object:
    """Replace the given meta fields (strings, ``data``/``device`` objects, ``segments``
    strings); unknown fields or wrong types are refused. Bumps ``updated_at``."""
    body = context.json()
    if not body or set(body) - META_FIELDS:
        raise invalid_data()
    for name, value in body.items():
        if not _valid_meta(name, value):
            raise invalid_data()
    context.world.update_meta(context.website, context.conversation, body)
    return {}


def _valid_meta(name: str, value: Any) -> bool:
    if name in _STRING_META:
        return isinstance(value, str)
    if name == "segments":
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    return isinstance(value, dict)


@handles("GET", CONVERSATION + "/block")
def get_block(context: Context) -> object:
    """``{"blocked": bool}``."""
    return {"blocked": context.conversation.is_blocked}


@handles("PATCH", CONVERSATION + "/block")
def set_block(context: Context) -> object:
    """Block or unblock incoming messages: ``{"blocked": bool}``."""
    context.conversation.is_blocked = _boolean(context, "blocked")
    context.conversation.changed()
    return {}


@handles("GET", CONVERSATION + "/verify")
def get_verify(context: Context) -> object:
    """``{"verified": bool}``."""
    return {"verified": context.conversation.is_verified}


@handles("PATCH", CONVERSATION + "/verify")
def set_verify(context: Context) -> object:
    """Mark the visitor's identity verified or not: ``{"verified": bool}``."""
    context.conversation.is_verified = _boolean(context, "verified")
    context.conversation.changed()
    return {}


def _boolean(context: Context, name: str) -> bool:
    value = context.json().get(name)
    if not isinstance(value, bool):
        raise invalid_data()
    return value


@handles("GET", CONVERSATION + "/routing")
def get_routing(context: Context) -> object:
    """``{"assigned": {"user_id": ...}}`` (empty when unassigned)."""
    return {"assigned": context.conversation.assigned}


@handles("PATCH", CONVERSATION + "/routing")
def assign_routing(context: Context) -> object:
    """Assign to one of the website's operators (``{"assigned": {"user_id": ...}}``), or
    unassign with ``{"assigned": {}}``. Bumps ``updated_at``."""
    assigned = context.json().get("assigned")
    if not isinstance(assigned, dict):
        raise invalid_data()
    website = context.website
    user_id = assigned.get("user_id")
    if assigned and not any(operator.user_id == user_id for operator in website.operators):
        raise invalid_data()
    conversation = context.conversation
    conversation.assigned = {"user_id": str(user_id)} if assigned else {}
    context.world.bump(website, conversation)
    return {}


@handles("GET", CONVERSATION + "/participants")
def get_participants(context: Context) -> object:
    """``{"participants": [...]}``."""
    return {"participants": context.conversation.participants}


@handles("PUT", CONVERSATION + "/participants")
def save_participants(context: Context) -> object:
    """Replace the participants: ``{"participants": [{"type": ..., "target": ...}]}``."""
    participants = context.json().get("participants")
    if not isinstance(participants, list) or not all(
        isinstance(item, dict) and isinstance(item.get("type"), str)
        and isinstance(item.get("target"), str) for item in participants
    ):
        raise invalid_data()
    conversation = context.conversation
    conversation.participants = [{"type": item["type"], "target": item["target"]}
                                 for item in participants]
    conversation.changed()
    return {}


@handles("PATCH", CONVERSATION + "/read")
def mark_read(context: Context) -> object:
    """Clear the unread count of the side that read (``from``: ``operator`` or ``user``)."""
    body = context.json()
    conversation = context.conversation
    if body.get("from") == "operator":
        conversation.unread_operator = 0
    elif body.get("from") == "user":
        conversation.unread_visitor = 0
    else:
        raise invalid_data()
    conversation.changed()
    return {}
