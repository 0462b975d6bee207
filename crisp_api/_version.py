"""The package version, read by setup.cfg and sent in the User-Agent.

Semantic Versioning: a release ``X.Y.Z`` is the newest version heading of CHANGELOG.md and
the git tag ``vX.Y.Z``; between releases the version is the next one with ``.devN``."""

__version__ = "2.0.0"
