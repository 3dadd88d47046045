"""fewer_collections: the cyclic collector's thresholds raised inside the block, restored after; the
console entry point exits without a last pass of the collector."""

from __future__ import annotations


def test_fewer_collections_raises_the_thresholds_inside_the_block_only() -> None:
    import gc

    from returnstudy._collect import THRESHOLDS, fewer_collections

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        with fewer_collections():
            assert gc.get_threshold() == THRESHOLDS
            with fewer_collections((100, 5, 50)):  # never lower than what is set
                assert gc.get_threshold() == (THRESHOLDS[0], THRESHOLDS[1], 50)
            assert gc.get_threshold() == THRESHOLDS
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*before)


def test_console_entry_exits_with_the_commands_status_and_skips_the_last_collection() -> None:
    import subprocess
    import sys

    script = (
        "import atexit, gc\n"
        "import returnstudy.cli as cli\n"
        "cli.main = lambda: 4\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0, flush=True))\n"
        "cli.run()\n"
        "print('not reached')\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 4, r.stderr
    assert r.stdout.split() == ["frozen", "True"]  # atexit handlers still run, after the freeze
