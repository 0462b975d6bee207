"""Messages of a conversation: Crisp's backwards paging, sending, reading, editing, removing."""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from crisp_api.testing.context import Context, Raw
from crisp_api.testing.data import MESSAGES_PAGE, Message
from crisp_api.testing.errors import invalid_data, not_found
from crisp_api.testing.handlers.registry import CONVERSATION, handles

TEXT_TYPES = frozenset({"text", "note"})
OBJECT_TYPES = frozenset({"file", "animation", "audio", "picker", "field", "carousel", "event"})
SENDERS = frozenset({"user", "operator"})


@handles("GET", CONVERSATION + "/messages")
def get_messages(context: Context) -> object:
    """The latest 40 messages, oldest first; with ``timestamp_before=T``, the latest 40 of
    those older than T. A page of fewer than 40 is the last one."""
    conversation = context.conversation
    messages = conversation.messages
    before = context.query("timestamp_before")
    end = len(messages)
    if before is not None:
        end = bisect_left(messages, context.integer(before), key=_timestamp)
    page = messages[max(0, end - MESSAGES_PAGE):end]
    session_id, website_id = conversation.session_id, conversation.website_id
    return Raw(b"[" + b",".join(message.encode(session_id, website_id) for message in page)
               + b"]")


def _timestamp(message: Message) -> int:
    return message.timestamp


@handles("POST", CONVERSATION + "/message")
def send_message(context: Context) -> object:
    """Append a message (``type``, ``content``, ``from`` and ``origin`` required) with a new
    fingerprint; bumps ``updated_at``; answers ``{"fingerprint": N}``."""
    body = context.json()
    kind, sender, origin = body.get("type"), body.get("from"), body.get("origin")
    content = body.get("content")
    if (sender not in SENDERS or not _valid_content(kind, content)
            or not isinstance(origin, str)
            or not (origin in ("chat", "email") or origin.startswith("urn:"))):
        raise invalid_data()
    user = body.get("user")
    nickname = user.get("nickname") if isinstance(user, dict) else None
    conversation = context.conversation
    message = context.world.add_message(
        context.website, conversation, kind=str(kind), sender=str(sender), origin=origin,
        content=content, nickname=nickname if isinstance(nickname, str) else None,
    )
    context.stats.message_posted(conversation.session_id)
    return {"fingerprint": message.fingerprint}


def _valid_content(kind: Any, content: Any) -> bool:
    if kind in TEXT_TYPES:
        return isinstance(content, str) and content != ""
    return kind in OBJECT_TYPES and isinstance(content, dict) and bool(content)


def _find(context: Context) -> Message:
    fingerprint = context.integer(context.params["fingerprint"])
    for message in context.conversation.messages:
        if message.fingerprint == fingerprint:
            return message
    raise not_found()


@handles("GET", CONVERSATION + "/message/{fingerprint}")
def get_message(context: Context) -> object:
    """One message by fingerprint."""
    conversation = context.conversation
    return Raw(_find(context).encode(conversation.session_id, conversation.website_id))


@handles("PATCH", CONVERSATION + "/message/{fingerprint}")
def update_message(context: Context) -> object:
    """Replace a message's ``content`` (marked ``edited``); bumps ``updated_at``."""
    message = _find(context)
    content = context.json().get("content")
    if not _valid_content(message.type, content):
        raise invalid_data()
    message.content = content
    message.edited = True
    message.encoded = None
    context.world.bump(context.website, context.conversation)
    return {}


@handles("DELETE", CONVERSATION + "/message/{fingerprint}")
def remove_message(context: Context) -> object:
    """Delete a message; bumps ``updated_at``."""
    message = _find(context)
    context.world.remove_message(context.website, context.conversation, message)
    return {}
