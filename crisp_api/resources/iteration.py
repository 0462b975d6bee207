"""Iterators on the website resource: ``client.website.iter_conversations(...)`` and friends.

Hand-written, and mixed into the generated `WebsiteResource` by ``crisp_api._codegen``. The
walking itself lives in `crisp_api.pagination`; these methods hand it the resource's own
route methods, so what they send is exactly what those methods send. The items are typed
(`crisp_api.types.ConversationListItem`, `crisp_api.types.Message`): plain dicts at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from crisp_api import pagination
from crisp_api.caller import Caller
from crisp_api.routing import ROUTES, QueryValue
from crisp_api.types import ConversationListItem, Message

_MESSAGES = ROUTES["website", "get_messages_in_conversation"]


class WebsiteIteration:
    """Lazy iterators over the website's paged lists (conversations, messages).

    For any other ``{page_number}`` route (people profiles, people conversations, visitors,
    campaigns...), use `crisp_api.pagination.paginate` with the route's method.
    """

    # What the generated class provides: its client and the route methods walked here.
    _client: Caller
    list_conversations: Callable[..., Any]
    get_messages_in_conversation: Callable[..., Any]
    _partial_signal: pagination.PartialSignal | None = None

    def iter_conversations(
        self,
        website_id: str,
        *,
        per_page: int = pagination.PER_PAGE,
        start: int = 1,
        use_cache: bool = True,
        **filters: QueryValue,
    ) -> Iterator[ConversationListItem]:
        """Every conversation of a website that ``filters`` select, in the API's order.

        ``per_page`` is 20 to 50 (default 20), ``start`` the first page number, ``filters``
        the query options of `list_conversations`; see `crisp_api.pagination.iter_conversations`.
        """
        return pagination.iter_conversations(
            self.list_conversations,
            website_id,
            per_page=per_page,
            start=start,
            use_cache=use_cache,
            **filters,
        )

    def iter_messages(
        self,
        website_id: str,
        session_id: str,
        *,
        after: int | None = None,
        use_cache: bool = True,
    ) -> Iterator[Message]:
        """Every message of a conversation newer than ``after`` (if given), newest first.

        See `crisp_api.pagination.iter_messages`.
        """
        return pagination.newest_first(
            self.iter_message_pages(website_id, session_id, after=after, use_cache=use_cache)
        )

    def iter_message_pages(
        self,
        website_id: str,
        session_id: str,
        *,
        after: int | None = None,
        use_cache: bool = True,
    ) -> Iterator[list[Message]]:
        """The pages of `iter_messages` as the API sends them: newest page first, each page
        oldest message first. See `crisp_api.pagination.iter_message_pages`; Crisp's 206
        (more to come) and 200 (last page) save the request a full last page would cost.
        """
        return pagination.message_pages(
            self.message_page_fetcher(website_id, session_id, use_cache=use_cache),
            after=after,
            signal=self.partial_signal(),
        )

    def message_page_fetcher(
        self, website_id: str, session_id: str, *, use_cache: bool = True
    ) -> Callable[[int | None], tuple[list[Message], int | None]]:
        """``fetch(timestamp_before) -> (messages, status)`` for `pagination.walk_messages`."""
        client = self._client

        def fetch(before: int | None) -> tuple[list[Message], int | None]:
            query = None if before is None else {"timestamp_before": before}
            answer = client.fetch(_MESSAGES, (website_id, session_id), query, use_cache=use_cache)
            return answer.data, answer.status

        return fetch

    def partial_signal(self) -> pagination.PartialSignal:
        """Whether this client's server has been seen marking message pages with 206."""
        if self._partial_signal is None:
            self._partial_signal = pagination.PartialSignal()
        return self._partial_signal
