"""Websites, their operators and visitors, and the plugin tier's connect routes."""

from __future__ import annotations

from typing import Any

from crisp_api.testing.context import PER_PAGE, Context
from crisp_api.testing.data import Conversation, Website
from crisp_api.testing.errors import ApiError, invalid_data, not_found
from crisp_api.testing.handlers.registry import WEBSITE, handles


@handles("GET", WEBSITE)
def get_website(context: Context) -> object:
    """``{"website_id", "name", "domain", "logo"}``."""
    return context.website.to_json()


@handles("GET", WEBSITE + "/settings")
def get_settings(context: Context) -> object:
    """The website with empty settings sections."""
    return {**context.website.to_json(), "contact": {}, "inbox": {}, "emails": {},
            "chatbox": {}}


@handles("GET", WEBSITE + "/operators/list")
def list_operators(context: Context) -> object:
    """Every operator: ``{"type": "owner"|"member", "details": {...}}``."""
    return [operator.to_json() for operator in context.website.operators]


@handles("GET", WEBSITE + "/operator/{user_id}")
def get_operator(context: Context) -> object:
    """One operator by user id."""
    for operator in context.website.operators:
        if operator.user_id == context.params["user_id"]:
            return operator.to_json()
    raise not_found()


def _online(website: Website) -> list[Conversation]:
    return [conversation for conversation in website.ordered()
            if conversation.availability == "online"]


@handles("GET", WEBSITE + "/visitors/list/{page_number}")
def list_visitors(context: Context) -> object:
    """Visitors online now (the conversations whose availability is ``online``), 20 per page."""
    page = context.page()
    online = _online(context.website)[(page - 1) * PER_PAGE:page * PER_PAGE]
    return [_visitor(conversation) for conversation in online]


def _visitor(conversation: Conversation) -> dict[str, Any]:
    meta = conversation.meta
    device = meta.get("device", {})
    return {
        "session_id": conversation.session_id,
        "inbox_id": None,
        "nickname": meta.get("nickname", ""),
        "email": meta.get("email", ""),
        "avatar": meta.get("avatar", ""),
        "useragent": device.get("system", {}).get("useragent", ""),
        "initiated": True,
        "active": True,
        "last_page": {"page_title": "Pricing", "page_url": "https://example.com/pricing"},
        "geolocation": device.get("geolocation", {}),
        "timezone": device.get("timezone", 0),
        "capabilities": device.get("capabilities", []),
        "locales": device.get("locales", []),
    }


@handles("GET", WEBSITE + "/visitors/count")
def count_visitors(context: Context) -> object:
    """``{"count": N}`` visitors online."""
    return {"count": len(_online(context.website))}


@handles("GET", "/plugin/connect/account")
def get_connect_account(context: Context) -> object:
    """``{"plugin_id": ...}``."""
    return {"plugin_id": context.world.plugin_id}


@handles("GET", "/plugin/connect/endpoints")
def get_connect_endpoints(context: Context) -> object:
    """Where the RTM API is: ``{"socket": {"app": URL}}``, the fake's own RTM server (``{}``
    when it runs without one); during an RTM outage with a discovery status, that error."""
    failing = context.world.rtm_discovery_status
    if failing is not None:
        raise ApiError(failing, "not_found" if failing == 404 else "rtm_unavailable")
    url = context.world.rtm_url
    return {} if url is None else {"socket": {"app": url}}


@handles("HEAD", "/plugin/connect/session")
def check_connect_session(context: Context) -> object:
    """The plugin token is valid (authentication already checked it)."""
    return {}


def _connected(website: Website) -> dict[str, Any]:
    return {"website_id": website.website_id, "token": dict(website.token), "settings": {}}


@handles("GET", "/plugin/connect/websites/all/{page_number}")
def list_connect_websites(context: Context) -> object:
    """Every website the plugin is connected to, 20 per page."""
    page = context.page()
    websites = list(context.world.websites.values())[(page - 1) * PER_PAGE:page * PER_PAGE]
    return [_connected(website) for website in websites]


@handles("GET", "/plugin/connect/websites/since")
def list_connect_websites_since(context: Context) -> object:
    """Websites connected since ``date_since`` (ISO 8601, required)."""
    since = context.date("date_since")
    if since is None:
        raise invalid_data()
    return [{**_connected(website), "difference": "added"}
            for website in context.world.websites.values() if website.created_at >= since]
