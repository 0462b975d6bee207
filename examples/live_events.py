"""Live events: Crisp's RTM API as a stream (`crisp_api.events.EventStream`).

Run: ``python examples/live_events.py``. Like every example here, it starts its own fake
Crisp (`crisp_api.testing.FakeCrisp`, which serves the RTM API over Socket.IO too) on
loopback. Needs the ``events`` and ``testing`` extras:
``pip install '.[events,testing]'``. Against Crisp itself, build the client with
``Crisp.from_env()`` on the plugin tier.

Events sent while the socket is down are lost (Crisp does not replay them): a consumer that
must miss nothing reconciles through the REST API after ``stream.reconnects`` grows.
"""

from crisp_api.testing import FakeCrisp

NAMES = ["message:send", "message:received", "session:set_state"]

with FakeCrisp(conversations=3, messages=2) as fake:
    client = fake.client()
    website_id = fake.website_id
    session_id = client.website.list_conversations(website_id, 1)[0]["session_id"]

    # Connected and authenticated when `events` returns; closed when the block ends.
    with client.events(NAMES) as stream:
        fake.add_message(session_id, content="Hi, is anyone there?")  # a visitor writes
        client.website.send_message_in_conversation(
            website_id, session_id,
            {"type": "text", "content": "Yes! How can I help?", "from": "operator",
             "origin": "chat"},
        )
        client.website.change_conversation_state(website_id, session_id, {"state": "resolved"})

        # Read until our own change comes back. The fake, like Crisp, also announces the
        # state changes that messages cause (a visitor's message reopens a conversation).
        while True:
            event = stream.get(timeout=10)
            if event is None:
                raise SystemExit("no event within 10 s")
            detail = event.data.get("content") or event.data.get("state")
            print(f"{event.name:18} {event.session_id}  {detail}")
            if event.name == "session:set_state" and detail == "resolved":
                break
