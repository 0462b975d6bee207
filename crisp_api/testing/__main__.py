"""Serve a fake Crisp from the command line: ``python -m crisp_api.testing --help``."""

from crisp_api.testing.cli import main

raise SystemExit(main())
