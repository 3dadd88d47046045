"""fewer_collections: the cyclic collector's thresholds raised inside the block, restored after."""

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
