"""``python -m returnstudy`` entry point."""

from returnstudy.cli import run

run()
