"""``python -m benchmarks``: see `benchmarks.cli`."""

try:
    from benchmarks.cli import main
except ImportError as missing:  # httpx or matplotlib: the bench extra
    raise SystemExit(
        f"benchmarks: {missing}; install the bench extra: pip install -e '.[bench]'"
    ) from None

raise SystemExit(main())
