"""``python -m dlkit.search``: one search worker process (see :mod:`dlkit.search.workers`)."""

from dlkit.search.workers import main

raise SystemExit(main())
