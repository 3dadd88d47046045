"""``python -m returnstudy`` entry point."""

from returnstudy.cli import main

raise SystemExit(main())
