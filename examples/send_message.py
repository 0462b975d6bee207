"""Send a text message into a conversation, as an operator, and read it back.

Run: ``python examples/send_message.py``. Like every example here, it starts its own fake
Crisp (`crisp_api.testing.FakeCrisp`) on loopback and needs nothing else. Against Crisp
itself, build the client with ``Crisp.from_env()`` and use your own ids.
"""

from crisp_api.testing import FakeCrisp

with FakeCrisp(conversations=3, messages=2, rtm=False) as fake:  # REST only: needs no extra
    client = fake.client()
    website_id = fake.website_id
    session_id = client.website.list_conversations(website_id, 1)[0]["session_id"]

    sent = client.website.send_message_in_conversation(
        website_id, session_id,
        {"type": "text", "content": "Hello from the examples!", "from": "operator",
         "origin": "chat"},
    )
    print("sent, fingerprint", sent["fingerprint"])

    newest = next(client.website.iter_messages(website_id, session_id))  # newest first
    print("newest message:", newest["content"])
    # A POST is never retried after an ambiguous failure: the fake counts what arrived.
    print("posts received:", fake.stats.message_posts[session_id])
