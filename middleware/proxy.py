"""Which HTTP proxy, if any, the transport goes through for each origin.

`Proxies` is a frozen value, chosen once when a client is built:

* `Proxies.from_environment` reads ``HTTPS_PROXY`` (for https origins), ``HTTP_PROXY`` (for
  http origins) and ``NO_PROXY`` (origins reached directly), upper or lower case, exactly as
  `urllib.request.getproxies_environment` and `urllib.request.proxy_bypass_environment` read
  them (lower case wins; ``NO_PROXY=*`` bypasses every proxy; ``HTTP_PROXY`` is ignored in a
  CGI request). ``ALL_PROXY`` is not read.
* `Proxies.fixed` sends every origin through one proxy, whatever the environment says.
* `DIRECT` uses no proxy.

A proxy URL is ``http://`` or ``https://`` (TLS to the proxy itself), optionally with
``user:password@`` for Basic proxy authentication; a URL without a scheme means ``http://``,
as curl reads it. Credentials are taken out of the URL when it is parsed: they travel only in
the ``Proxy-Authorization`` header, and nothing here shows them (`Proxy.url` has none).
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

# The stdlib's own NO_PROXY matching; typeshed does not list it, Python has it since 3.x's start.
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]

from urllib3.exceptions import LocationParseError
from urllib3.util import make_headers, parse_url


@dataclass(frozen=True)
class Proxy:
    """One proxy: its URL without credentials, and the header that authenticates to it."""

    url: str
    """``scheme://host:port``: safe to show."""
    authorization: str | None = field(default=None, repr=False)
    """The ``Proxy-Authorization`` value, when the URL carried credentials."""

    @classmethod
    def parse(cls, url: str, name: str) -> Proxy:
        """The proxy at ``url`` (``name`` is where it came from, for the error message: an
        option or an environment variable); a clear ValueError if it is not one, which never
        repeats the credentials."""
        text = url.strip()
        if "://" not in text:
            text = f"http://{text}"
        try:
            parts = parse_url(text)
            split = urlsplit(text)
        except (LocationParseError, ValueError):
            raise ValueError(f"{name} is not a proxy URL: {_shown(text)!r}") from None
        if parts.scheme not in ("http", "https") or not parts.host:
            raise ValueError(f"{name} must be an http:// or https:// proxy URL with a host "
                             f"(SOCKS is not supported), got {_shown(text)!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        authorization = None
        if split.username is not None or split.password is not None:
            login = f"{unquote(split.username or '')}:{unquote(split.password or '')}"
            authorization = make_headers(proxy_basic_auth=login)["proxy-authorization"]
        return cls(f"{parts.scheme}://{parts.host}:{port}", authorization)

    @property
    def headers(self) -> dict[str, str]:
        """The headers sent to the proxy (its authentication, if any)."""
        return {} if self.authorization is None else {"Proxy-Authorization": self.authorization}


@dataclass(frozen=True)
class Proxies:
    """The proxy for http origins, the proxy for https origins, and the origins that bypass
    them (in ``NO_PROXY`` syntax: host names, domain suffixes, ``host:port``, ``*``)."""

    http: Proxy | None = None
    https: Proxy | None = None
    no_proxy: str = ""

    @classmethod
    def from_environment(cls) -> Proxies:
        """The proxies the environment names now (see the module docstring)."""
        found = urllib.request.getproxies_environment()
        return cls(
            http=Proxy.parse(found["http"], "HTTP_PROXY") if found.get("http") else None,
            https=Proxy.parse(found["https"], "HTTPS_PROXY") if found.get("https") else None,
            no_proxy=found.get("no", ""),
        )

    @classmethod
    def fixed(cls, url: str, name: str = "proxy") -> Proxies:
        """Every origin through the proxy at ``url`` (``name``: the option, for errors)."""
        proxy = Proxy.parse(url, name)
        return cls(http=proxy, https=proxy)

    def for_origin(self, origin: str) -> Proxy | None:
        """The proxy to reach ``origin`` (``scheme://host[:port]``) through, or None."""
        parts = urlsplit(origin)
        proxy = self.https if parts.scheme == "https" else self.http
        if proxy is None or not self.no_proxy:
            return proxy
        bypassed: object = proxy_bypass_environment(parts.netloc, {"no": self.no_proxy})
        return None if bypassed else proxy


DIRECT = Proxies()
"""No proxy for any origin."""


def _shown(url: str) -> str:
    """``url`` without what sits before an ``@`` in its authority (credentials)."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}"
