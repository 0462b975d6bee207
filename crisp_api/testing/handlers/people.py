"""People: profiles (list, add, get, save, update, remove), their conversations, events,
data and statistics."""

from __future__ import annotations

from typing import Any

from crisp_api.testing.context import PER_PAGE, Context
from crisp_api.testing.data import new_profile
from crisp_api.testing.errors import ApiError, invalid_data
from crisp_api.testing.handlers.registry import PROFILE, WEBSITE, handles

PROFILE_FIELDS = frozenset({"email", "person", "company", "segments", "notepad"})


@handles("GET", WEBSITE + "/people/profiles/{page_number}")
def list_profiles(context: Context) -> object:
    """Newest profiles first, ``per_page`` like conversations; ``search_text`` matches the
    email or nickname."""
    page, per_page = context.page(), context.per_page()
    profiles = context.website.ordered_people()
    search = (context.query("search_text") or "").lower()
    if search:
        profiles = [profile for profile in profiles
                    if search in profile["email"].lower()
                    or search in str(profile["person"].get("nickname", "")).lower()]
    return profiles[(page - 1) * per_page:page * per_page]


@handles("POST", WEBSITE + "/people/profile")
def add_profile(context: Context) -> object:
    """Create a profile (``email`` required and unused); ``{"people_id": ...}``."""
    body = _valid_body(context, require_email=True)
    website = context.website
    email = body["email"]
    if email in website.emails:
        raise ApiError(409, "people_exists")
    person = body.get("person", {})
    profile = new_profile(context.world.new_id(), email,
                          str(person.get("nickname") or email.partition("@")[0]),
                          context.world.now())
    _apply(profile, body, context.world.now())
    context.world.add_profile(website, profile)
    return {"people_id": profile["people_id"]}


@handles("HEAD", PROFILE)
@handles("GET", PROFILE)
def get_profile(context: Context) -> object:
    """One profile, by people id or email."""
    return context.profile


@handles("PUT", PROFILE)
def save_profile(context: Context) -> object:
    """Replace a profile's fields (``email`` required)."""
    body = _valid_body(context, require_email=True)
    profile = context.profile
    blank = new_profile(profile["people_id"], profile["email"], "", profile["created_at"])
    for name in PROFILE_FIELDS - {"email"}:
        profile[name] = blank[name]
    _change_email(context, profile, body["email"])
    _apply(profile, body, context.world.now())
    context.world.profile_changed(context.website, profile)
    return {}


@handles("PATCH", PROFILE)
def update_profile(context: Context) -> object:
    """Change the given fields; ``person`` and ``company`` are merged key by key."""
    body = _valid_body(context, require_email=False)
    profile = context.profile
    if "email" in body:
        _change_email(context, profile, body["email"])
    _apply(profile, body, context.world.now())
    context.world.profile_changed(context.website, profile)
    return {}


@handles("DELETE", PROFILE)
def remove_profile(context: Context) -> object:
    """Delete a profile (its conversations stay)."""
    context.world.remove_profile(context.website, context.profile)
    return {}


def _valid_body(context: Context, require_email: bool) -> dict[str, Any]:
    body = context.json()
    email = body.get("email")
    valid = (
        not set(body) - PROFILE_FIELDS
        and ((email is None and not require_email) or (isinstance(email, str) and "@" in email))
        and isinstance(body.get("person", {}), dict)
        and isinstance(body.get("company", {}), dict)
        and isinstance(body.get("notepad", ""), str)
        and isinstance(body.get("segments", []), list)
        and all(isinstance(segment, str) for segment in body.get("segments", []))
    )
    if not valid:
        raise invalid_data()
    return body


def _change_email(context: Context, profile: dict[str, Any], email: str) -> None:
    website = context.website
    owner = website.emails.get(email)
    if owner is not None and owner != profile["people_id"]:
        raise ApiError(409, "people_exists")
    website.change_email(profile, email)


def _apply(profile: dict[str, Any], body: dict[str, Any], now: int) -> None:
    for name in ("person", "company"):
        if name in body:
            profile[name].update(body[name])
    for name in ("segments", "notepad"):
        if name in body:
            profile[name] = body[name]
    profile["updated_at"] = max(now, profile["updated_at"] + 1)


@handles("GET", WEBSITE + "/people/conversations/{people_id}/list/{page_number}")
def list_profile_conversations(context: Context) -> object:
    """The session ids of a person's conversations, newest first, 20 per page."""
    website = context.website
    profile = context.profile
    page = context.page()
    sessions = sorted(website.sessions_of.get(profile["people_id"], ()),
                      key=lambda session_id: -website.conversations[session_id].updated_at)
    return sessions[(page - 1) * PER_PAGE:page * PER_PAGE]


@handles("POST", WEBSITE + "/people/events/{people_id}")
def add_event(context: Context) -> object:
    """Record an event (``text`` required; ``data`` object and ``color`` optional)."""
    body = context.json()
    text, data = body.get("text"), body.get("data", {})
    if not isinstance(text, str) or not text or not isinstance(data, dict):
        raise invalid_data()
    event = {"text": text, "data": data, "color": str(body.get("color", "")),
             "timestamp": context.world.now()}
    people_id = context.profile["people_id"]
    context.website.people_events.setdefault(people_id, []).append(event)
    return {}


@handles("GET", WEBSITE + "/people/events/{people_id}/list/{page_number}")
def list_events(context: Context) -> object:
    """A person's events, newest first, 20 per page."""
    page = context.page()
    events = context.website.people_events.get(context.profile["people_id"], [])
    newest_first = events[::-1]
    return newest_first[(page - 1) * PER_PAGE:page * PER_PAGE]


@handles("GET", WEBSITE + "/people/data/{people_id}")
def get_data(context: Context) -> object:
    """``{"data": {...}}``."""
    return {"data": context.website.people_data.get(context.profile["people_id"], {})}


@handles("PUT", WEBSITE + "/people/data/{people_id}")
def save_data(context: Context) -> object:
    """Replace a person's data: ``{"data": {...}}``."""
    context.website.people_data[context.profile["people_id"]] = dict(_data(context))
    return {}


@handles("PATCH", WEBSITE + "/people/data/{people_id}")
def update_data(context: Context) -> object:
    """Merge into a person's data: ``{"data": {...}}``."""
    people_id = context.profile["people_id"]
    context.website.people_data.setdefault(people_id, {}).update(_data(context))
    return {}


def _data(context: Context) -> dict[str, Any]:
    data = context.json().get("data")
    if not isinstance(data, dict):
        raise invalid_data()
    return data


@handles("GET", WEBSITE + "/people/stats")
def people_statistics(context: Context) -> object:
    """``{"total": N}``."""
    return {"total": len(context.website.people)}
