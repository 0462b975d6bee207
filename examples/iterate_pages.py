"""Walk every conversation and every message of a website, page after page.

Run: ``python examples/iterate_pages.py``. Like every example here, it starts its own fake
Crisp (`crisp_api.testing.FakeCrisp`) on loopback and needs nothing else. Against Crisp
itself, build the client with ``Crisp.from_env()`` and use your own website id.

The iterators fetch a page only when the loop reaches it, and stop at the end.
"""

from crisp_api.pagination import paginate
from crisp_api.testing import FakeCrisp

# rtm=False: REST only, which needs no extra.
with FakeCrisp(conversations=120, messages=45, people=30, rtm=False) as fake:
    client = fake.client()
    website_id = fake.website_id

    sessions = [c["session_id"] for c in client.website.iter_conversations(website_id,
                                                                            per_page=50)]
    print(f"{len(sessions)} conversations, read 50 per page")

    # Messages come newest first; Crisp pages them 40 at a time.
    messages = list(client.website.iter_messages(website_id, sessions[0]))
    print(f"{len(messages)} messages in {sessions[0]}")

    # Only what is newer than a timestamp you already have (e.g. the newest one you stored).
    middle = messages[len(messages) // 2]["timestamp"]
    newer = list(client.website.iter_messages(website_id, sessions[0], after=middle))
    print(f"{len(newer)} of them newer than {middle}")

    # Any other route with a {page_number}: the method, then its arguments before the page.
    profiles = list(paginate(client.website.list_people_profiles, website_id, per_page=20))
    print(f"{len(profiles)} people profiles")
