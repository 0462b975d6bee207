"""A user's code against the typed answers, for ``mypy --strict`` (never run).

`tests.client.test_typed_answers` type-checks this file and compares each ``reveal_type`` with
the type named in the comment at the end of its line. The ``type: ignore`` below must be needed
(mypy runs with ``--warn-unused-ignores``): a misspelt key is an error.
"""

from __future__ import annotations

from typing import reveal_type

from crisp_api import Crisp


def conversations(client: Crisp, website_id: str, session_id: str) -> None:
    conversation = client.website.get_conversation(website_id, session_id)
    reveal_type(conversation["session_id"])  # reveals: str
    state = conversation.get("state")
    reveal_type(state)  # reveals: Literal['pending', 'unresolved', 'resolved'] | None
    reveal_type(conversation["meta"]["nickname"])  # reveals: str
    _ = conversation["sesion_id"]  # type: ignore[typeddict-item]
    for item in client.website.iter_conversations(website_id, filter_unread=True):
        reveal_type(item)  # reveals: ConversationListItem
        reveal_type(item["updated_at"])  # reveals: int
    listed = client.website.list_conversations(website_id, 1)
    reveal_type(listed[0])  # reveals: ConversationListItem
    created = client.website.create_new_conversation(website_id)
    reveal_type(created["session_id"])  # reveals: str


def messages(client: Crisp, website_id: str, session_id: str) -> None:
    for message in client.website.iter_messages(website_id, session_id, after=0):
        reveal_type(message["fingerprint"])  # reveals: int
        reveal_type(message["from"])  # reveals: Literal['user', 'operator']
        if message["type"] == "file":
            reveal_type(message["content"]["url"])  # reveals: str
        elif message["type"] == "text":
            reveal_type(message["content"])  # reveals: str
    for page in client.website.iter_message_pages(website_id, session_id):
        reveal_type(page[0]["timestamp"])  # reveals: int
    sent = client.website.send_message_in_conversation(
        website_id, session_id, {"type": "text", "from": "operator", "origin": "chat",
                                 "content": "Hello"}
    )
    reveal_type(sent["fingerprint"])  # reveals: int


def others(client: Crisp, website_id: str, people_id: str) -> None:
    profile = client.website.get_people_profile(website_id, people_id)
    reveal_type(profile["people_id"])  # reveals: str
    profiles = client.website.list_people_profiles(website_id, 1, per_page=50)
    reveal_type(profiles[0])  # reveals: PeopleProfile
    operators = client.website.list_website_operators(website_id)
    reveal_type(operators[0]["details"]["user_id"])  # reveals: str
    reveal_type(client.website.get_website(website_id)["domain"])  # reveals: str
    reveal_type(client.plugin.list_all_connect_websites(1)[0]["website_id"])  # reveals: str
    reveal_type(client.list_all_connect_websites(1, 1))  # reveals: list[ConnectWebsite]
    reveal_type(client.website.get_website_settings(website_id))  # reveals: Any
