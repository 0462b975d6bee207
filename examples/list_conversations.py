"""List the conversations of a website, one page at a time.

Run: ``python examples/list_conversations.py``. Like every example here, it starts its own
fake Crisp (`crisp_api.testing.FakeCrisp`) on loopback and needs nothing else. Against Crisp
itself, build the client with ``Crisp.from_env()`` (``CRISP_IDENTIFIER``, ``CRISP_KEY``,
``CRISP_TIER``) and use your own website id.
"""

from crisp_api.testing import FakeCrisp

with FakeCrisp(conversations=25, messages=2, rtm=False) as fake:  # REST only: needs no extra
    client = fake.client()
    website_id = fake.website_id

    page = client.website.list_conversations(website_id, 1)  # page numbers start at 1
    print(f"page 1 holds {len(page)} conversations")
    for conversation in page[:5]:
        print(conversation["session_id"], conversation["state"])
