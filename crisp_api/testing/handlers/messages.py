"""Messages of a conversation: Crisp's backwards paging, sending, reading, editing, removing.

A page of messages answers 206 Partial Content while older messages remain beyond it, and
200 once it reaches the conversation's oldest message (an empty page too), as Crisp does;
a fake built with ``partial_status=False`` answers 200 to every page.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from crisp_api.testing.context import Context, Raw
from crisp_api.testing.data import MESSAGES_PAGE, SENDERS, Message, valid_content
from crisp_api.testing.errors import invalid_data
from crisp_api.testing.handlers.registry import CONVERSATION, handles

PARTIAL_CONTENT = 206
"""Crisp's status for a page of messages with older ones left to read."""


@handles("GET", CONVERSATION + "/messages")
def get_messages(context: Context) -> object:
    """The latest 40 messages, oldest first; with ``timestamp_before=T``, the latest 40 of
    those strictly older than T (messages sharing T's millisecond are all left out). 206 if
    older messages remain, else 200."""
    conversation = context.conversation
    messages = conversation.messages
    before = context.query("timestamp_before")
    end = len(messages)
    if before is not None:
        end = bisect_left(messages, context.integer(before), key=_timestamp)
    start = max(0, end - MESSAGES_PAGE)
    page = messages[start:end]
    session_id, website_id = conversation.session_id, conversation.website_id
    partial = start > 0 and context.world.partial_status
    return Raw(b"[" + b",".join(message.encode(session_id, website_id) for message in page)
               + b"]", PARTIAL_CONTENT if partial else 200)


def _timestamp(message: Message) -> int:
    return message.timestamp


@handles("POST", CONVERSATION + "/message")
def send_message(context: Context) -> object:
    """Append a message (``type``, ``content``, ``from`` and ``origin`` required) with a new
    fingerprint, or the sender's own integer ``fingerprint`` (409 if the conversation already
    holds it; other conversations may); bumps ``updated_at``; answers ``{"fingerprint": N}``."""
    body = context.json()
    kind, sender, origin = body.get("type"), body.get("from"), body.get("origin")
    content, fingerprint = body.get("content"), body.get("fingerprint")
    if (sender not in SENDERS or not valid_content(kind, content)
            or not isinstance(origin, str)
            or not (origin in ("chat", "email") or origin.startswith("urn:"))
            or not (fingerprint is None or _is_integer(fingerprint))):
        raise invalid_data()
    user = body.get("user")
    nickname = user.get("nickname") if isinstance(user, dict) else None
    conversation = context.conversation
    message = context.world.add_message(
        context.website, conversation, kind=str(kind), sender=str(sender), origin=origin,
        content=content, nickname=nickname if isinstance(nickname, str) else None,
        fingerprint=fingerprint,
    )
    context.stats.message_posted(conversation.session_id)
    return {"fingerprint": message.fingerprint}


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _find(context: Context) -> Message:
    fingerprint = context.integer(context.params["fingerprint"])
    return context.world.find_message(context.conversation, fingerprint)


@handles("GET", CONVERSATION + "/message/{fingerprint}")
def get_message(context: Context) -> object:
    """One message by fingerprint."""
    conversation = context.conversation
    return Raw(_find(context).encode(conversation.session_id, conversation.website_id))


@handles("PATCH", CONVERSATION + "/message/{fingerprint}")
def update_message(context: Context) -> object:
    """Replace a message's ``content`` (marked ``edited``); bumps ``updated_at``."""
    context.world.edit_message(context.website, context.conversation, _find(context),
                               context.json().get("content"))
    return {}


@handles("DELETE", CONVERSATION + "/message/{fingerprint}")
def remove_message(context: Context) -> object:
    """Delete a message; bumps ``updated_at``."""
    context.world.remove_message(context.website, context.conversation, _find(context))
    return {}
