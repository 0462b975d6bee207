"""Typed answers: the main answers are TypedDicts, and mypy --strict checks their use.

Run: ``python examples/typed_answers.py``. Like every example here, it starts its own fake
Crisp (`crisp_api.testing.FakeCrisp`) on loopback and needs nothing else. Against Crisp
itself, build the client with ``Crisp.from_env()`` and use your own website id.

`Message` is a union with one type per kind of content: testing ``message["type"]`` narrows
it, so mypy knows ``content`` is a string for a text and an object for a file.
"""

from crisp_api.testing import FakeCrisp
from crisp_api.types import Conversation, Message


def describe(message: Message) -> str:
    """One line for a message, whatever its kind."""
    if message["type"] == "text" or message["type"] == "note":
        return f"{message['from']}: {message['content'][:40]}"
    if message["type"] == "file":
        return f"{message['from']} sent a file: {message['content']['url']}"
    return f"{message['from']} sent a {message['type']}"


def title(conversation: Conversation) -> str:
    """Who the conversation is with (metas may lack a nickname)."""
    return conversation.get("meta", {}).get("nickname") or conversation["session_id"]


with FakeCrisp(conversations=2, messages=6, rtm=False) as fake:  # REST only: needs no extra
    client = fake.client()
    website_id = fake.website_id
    session_id = client.website.list_conversations(website_id, 1)[0]["session_id"]

    conversation = client.website.get_conversation(website_id, session_id)  # a Conversation
    print("conversation with", title(conversation))
    for message in client.website.iter_messages(website_id, session_id):  # Messages
        print(" ", describe(message))
