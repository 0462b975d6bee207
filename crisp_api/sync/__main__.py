"""``python -m crisp_api.sync``: ``crisp-sync`` without its console script (the same
``main``), for environments where scripts are not on the PATH."""

from crisp_api.sync.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
