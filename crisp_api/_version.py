"""The package version, read by setup.cfg and sent in the User-Agent."""

__version__ = "2.0.0.dev0"
