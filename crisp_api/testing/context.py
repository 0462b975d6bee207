"""What a route handler gets: the state, the route's parameters, the query and the body,
with the parsing and validation every handler shares."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from crisp_api.testing.data import Conversation, Website
from crisp_api.testing.errors import invalid_data
from crisp_api.testing.routes import Route
from crisp_api.testing.stats import Stats
from crisp_api.testing.world import World

PER_PAGE = 20
PER_PAGE_RANGE = (20, 50)
TRUE_VALUES = frozenset({"1", "true", "yes"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Raw:
    """Data already encoded as JSON, put into the envelope as is, answered with ``status``
    (a success: 200, or 206 for a page of messages with more left)."""

    json: bytes
    status: int = 200


@dataclass(slots=True)
class Context:
    """One call of a route handler. Lookups raise `ApiError` (404 or 400) when they fail."""

    world: World
    stats: Stats
    route: Route
    params: dict[str, str]
    query_string: str
    body: bytes
    _query: dict[str, str] | None = field(default=None, init=False)

    @property
    def website(self) -> Website:
        """The website of the ``{website_id}`` path parameter."""
        return self.world.website(self.params["website_id"])

    @property
    def conversation(self) -> Conversation:
        """The conversation of the ``{session_id}`` path parameter."""
        return self.website.conversation(self.params["session_id"])

    @property
    def profile(self) -> dict[str, Any]:
        """The people profile of the ``{people_id}`` path parameter (an id or an email)."""
        return self.website.profile(self.params["people_id"])

    def check(self) -> None:
        """Raise a 404 `ApiError` if the website, conversation or profile of the path does not
        exist (every route checks, including those without a handler of their own)."""
        if "website_id" in self.params:
            website = self.website
            if "session_id" in self.params:
                website.conversation(self.params["session_id"])
            if "people_id" in self.params:
                website.profile(self.params["people_id"])

    def query(self, name: str) -> str | None:
        """A query option's value, if given."""
        if self._query is None:
            self._query = dict(parse_qsl(self.query_string, keep_blank_values=True))
        return self._query.get(name)

    def flag(self, name: str) -> bool:
        """Whether a boolean query option is on (``1`` or ``true``)."""
        return (self.query(name) or "").lower() in TRUE_VALUES

    def integer(self, text: str | None, low: int = 0) -> int:
        """``text`` as an integer of at least ``low``; 400 otherwise."""
        if text is None or not text.isdigit() or int(text) < low:
            raise invalid_data()
        return int(text)

    def page(self) -> int:
        """The ``{page_number}`` path parameter, from 1."""
        return self.integer(self.params["page_number"], low=1)

    def per_page(self) -> int:
        """The ``per_page`` query option: 20 by default, 20 to 50 accepted."""
        text = self.query("per_page")
        if text is None:
            return PER_PAGE
        count = self.integer(text)
        low, high = PER_PAGE_RANGE
        if not low <= count <= high:
            raise invalid_data()
        return count

    def date(self, name: str) -> int | None:
        """A date query option (ISO 8601; naive means UTC) in epoch milliseconds."""
        text = self.query(name)
        if text is None or text == "":
            return None
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise invalid_data() from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return (moment - _EPOCH) // _MILLISECOND

    def json(self) -> dict[str, Any]:
        """The body, which must be a JSON object."""
        try:
            body = json.loads(self.body)
        except ValueError:
            raise invalid_data() from None
        if not isinstance(body, dict):
            raise invalid_data()
        return body
