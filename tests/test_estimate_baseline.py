"""No estimate moves: every number of every model, on the real snapshot and on seeded
simulated panels, equals the committed reference table to 1e-10 (relative above 1).

A deliberate change of a result regenerates the table with
``python -m tests.baseline.estimates --write`` and says why in the commit.
"""

from __future__ import annotations

import pandas as pd
import pytest

from baseline.estimates import COMMITTED, SNAPSHOT, compare, compute


@pytest.mark.skipif(not SNAPSHOT.is_dir(), reason=f"snapshot not found at {SNAPSHOT}")
def test_every_estimate_equals_the_committed_reference():
    old = pd.read_csv(COMMITTED)
    new = compute(SNAPSHOT)
    assert len(new) == len(old)
    bad = compare(new, old)
    assert bad.empty, f"{len(bad)} values moved by more than 1e-10:\n{bad.head(30).to_string()}"


def test_comparison_flags_a_moved_value_and_a_missing_row():
    old = pd.read_csv(COMMITTED).head(5)
    new = old.copy()
    new.loc[new.index[0], "value"] = new["value"].iloc[0] + 1e-8 * max(1.0, abs(new["value"].iloc[0]))
    new = new.iloc[:-1]
    bad = compare(new, old)
    assert len(bad) == 2
