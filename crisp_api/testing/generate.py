"""Seeded random content: ids, names, sentences, devices, the shapes Crisp fills them with.

Everything here draws only from the ``random.Random`` it is given, so the same seed always
produces the same values.
"""

from __future__ import annotations

import uuid
from random import Random
from typing import Any

FIRST_NAMES = (
    "Ada", "Alan", "Alice", "Amir", "Ana", "Bao", "Bea", "Carlos", "Chloe", "Dan", "Dina", "Elif",
    "Emma", "Farid", "Grace", "Hana", "Hugo", "Ines", "Ivan", "Jade", "Jonas", "Kenji", "Lea",
    "Liam", "Lina", "Marc", "Maya", "Nadia", "Noah", "Olga", "Omar", "Paul", "Priya", "Quentin",
    "Rosa", "Sami", "Sofia", "Tariq", "Una", "Victor", "Wen", "Yara", "Zoe",
)
LAST_NAMES = (
    "Adams", "Bernard", "Chen", "Diallo", "Dubois", "Garcia", "Haddad", "Ito", "Jensen", "Kim",
    "Kowalski", "Lambert", "Lopez", "Martin", "Meyer", "Moreau", "Nakamura", "Novak", "Okafor",
    "Petit", "Rossi", "Santos", "Schmidt", "Silva", "Tanaka", "Weber", "Yilmaz", "Zhang",
)
WORDS = (
    "account", "again", "api", "billing", "bug", "can", "cancel", "card", "chat", "checkout",
    "could", "dashboard", "delivery", "domain", "email", "error", "export", "help", "hello",
    "how", "i", "import", "invoice", "is", "it", "login", "me", "my", "need", "not", "order",
    "page", "password", "payment", "plan", "please", "plugin", "refund", "reset", "seems",
    "setup", "shipping", "still", "support", "thanks", "the", "this", "to", "trial", "update",
    "upgrade", "we", "website", "when", "why", "widget", "with", "working", "you", "your",
)
EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.test", "inbox.test")
COUNTRIES = (
    ("FR", "Nantes", "Pays de la Loire", 47.2184, -1.5536, -60),
    ("US", "Austin", "Texas", 30.2672, -97.7431, 360),
    ("DE", "Berlin", "Berlin", 52.52, 13.405, -60),
    ("JP", "Osaka", "Osaka", 34.6937, 135.5023, -540),
    ("BR", "Recife", "Pernambuco", -8.0476, -34.877, 180),
    ("IN", "Pune", "Maharashtra", 18.5204, 73.8567, -330),
)
BROWSERS = (
    ("Firefox", "128.0", "Gecko", "Linux", "x86_64"),
    ("Chrome", "126.0", "Blink", "Windows", "10"),
    ("Safari", "17.5", "WebKit", "Mac OS", "14.5"),
    ("Chrome", "126.0", "Blink", "Android", "14"),
)
SEGMENTS = ("customer", "lead", "trial", "vip", "churn-risk", "partner")
TOPICS = ("Billing question", "Bug report", "Feature request", "Login issue", "Refund")
FILE_TYPES = (("pdf", "application/pdf"), ("png", "image/png"), ("csv", "text/csv"))


def seeded(seed: int | str) -> Random:
    """A generator for reproducible fake data (never for anything secret)."""
    return Random(seed)  # noqa: S311


def make_uuid(rng: Random) -> str:
    """A version-4 UUID string drawn from ``rng`` (not from the OS, so it is reproducible)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def sentence(rng: Random) -> str:
    """A short sentence of support-chat words."""
    words = rng.choices(WORDS, k=rng.randint(2, 16))
    return " ".join(words).capitalize() + rng.choice((".", "?", "!", "..."))


def full_name(rng: Random) -> tuple[str, str]:
    """A (first name, last name) pair."""
    return rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)


def email_for(first: str, last: str, number: int) -> str:
    """A unique-per-``number`` address under a reserved test domain."""
    domain = EMAIL_DOMAINS[number % len(EMAIL_DOMAINS)]
    return f"{first.lower()}.{last.lower()}.{number}@{domain}"


def ip_address(rng: Random) -> str:
    """An address from the documentation ranges (RFC 5737)."""
    prefix = rng.choice(("192.0.2", "198.51.100", "203.0.113"))
    return f"{prefix}.{rng.randint(1, 254)}"


def device(rng: Random) -> dict[str, Any]:
    """A conversation's ``meta.device``: capabilities, geolocation, system, timezone, locales."""
    country, city, region, latitude, longitude, timezone = rng.choice(COUNTRIES)
    browser, browser_version, engine, system, system_version = rng.choice(BROWSERS)
    return {
        "capabilities": ["browsing", "call"] if rng.random() < 0.3 else [],
        "geolocation": {
            "country": country,
            "region": region,
            "city": city,
            "coordinates": {"latitude": latitude, "longitude": longitude},
        },
        "system": {
            "os": {"version": system_version, "name": system},
            "engine": {"version": browser_version, "name": engine},
            "browser": {"major": browser_version.split(".")[0], "version": browser_version,
                        "name": browser},
            "useragent": f"Mozilla/5.0 ({system}) {browser}/{browser_version}",
        },
        "timezone": timezone,
        "locales": [rng.choice(("en", "fr", "de", "ja", "pt"))],
    }


def file_content(rng: Random) -> dict[str, str]:
    """The ``content`` of a ``file`` message."""
    extension, mime = rng.choice(FILE_TYPES)
    name = f"{rng.choice(WORDS)}-{rng.randint(1, 999)}.{extension}"
    token = f"{rng.getrandbits(64):016x}"
    return {"name": name, "url": f"https://storage.example.test/upload/{token}/{name}",
            "type": mime}
