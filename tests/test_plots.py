"""Figures (returnstudy.plots) drawn with the Agg backend."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure

from _simpanel import make_panel
from returnstudy.models.event_study import event_study
from returnstudy.models.ppml import ppml
from returnstudy.models.twfe import twfe
from returnstudy.plots import plot_coefficients, plot_event_study


@pytest.fixture(scope="module")
def panel():
    return make_panel(0, n_geo=6, n_citizen=30)


def test_event_study_plot_contents(panel, tmp_path) -> None:
    res = event_study(panel, window=(-3, 2), model="ppml")
    fig = plot_event_study(res)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    # horizontal reference line at 0 on the log scale
    assert any(np.allclose(line.get_ydata(), 0) for line in ax.lines if len(line.get_ydata()) == 2)
    # hollow marker at the reference period (-1, 0)
    ref = [ln for ln in ax.lines if ln.get_label() == "reference period"]
    assert len(ref) == 1 and ref[0].get_xdata()[0] == -1 and ref[0].get_ydata()[0] == 0
    # estimated points: all periods except the reference, at the table's estimates
    est = [ln for ln in ax.lines if ln.get_gid() == "estimates"]
    t = res.table.drop(index=-1)
    np.testing.assert_allclose(est[0].get_ydata(), t["estimate"].to_numpy())
    assert "Years relative to entry into force" in ax.get_xlabel()
    assert "log points" in ax.get_ylabel()
    fig.savefig(tmp_path / "es.png")
    assert (tmp_path / "es.png").stat().st_size > 1000
    fig_irr = plot_event_study(res, scale="irr")
    ax2 = fig_irr.axes[0]
    assert any(np.allclose(line.get_ydata(), 1) for line in ax2.lines if len(line.get_ydata()) == 2)
    assert "Incidence-rate ratio" in ax2.get_ylabel()


def test_coefficient_plot(panel) -> None:
    results = {
        "PPML": ppml(panel, treatments=["eu_agreement"]),
        "PPML geo x year": ppml(panel, treatments=["eu_agreement"], fe=("corridor", "geo^year")),
    }
    fig = plot_coefficients(results, term="eu_agreement")
    ax = fig.axes[0]
    labels = {round(t.get_position()[1]): t.get_text() for t in ax.get_yticklabels()}
    assert labels == {1: "PPML", 0: "PPML geo x year"}  # first result on top
    pts = [ln for ln in ax.lines if ln.get_gid() == "estimates"][0]
    np.testing.assert_allclose(pts.get_xdata(), [r.coef("eu_agreement") for r in results.values()])
    np.testing.assert_allclose(pts.get_ydata(), [1, 0])
    assert ax.get_xlabel() == "Coefficient (log points, returns per order to leave)"
    linear = twfe(panel, treatments=["eu_agreement"])
    with pytest.raises(ValueError, match="Poisson"):
        plot_coefficients({"TWFE rate": linear}, term="eu_agreement", scale="irr")
    with pytest.raises(ValueError, match="mix Poisson"):
        plot_coefficients({**results, "TWFE rate": linear}, term="eu_agreement")
    with pytest.raises(KeyError, match="nope"):
        plot_coefficients(results, term="nope")
    fig2 = plot_coefficients([results["PPML"]], scale="pct")
    assert "%" in fig2.axes[0].get_xlabel()


@pytest.mark.parametrize("reference", [-2, -1])
def test_lead_lag_separator_follows_the_reference_period(panel, reference) -> None:
    res = event_study(panel, window=(-3, 2), model="ppml", reference=reference)
    ax = plot_event_study(res).axes[0]
    sep = [ln for ln in ax.lines if ln.get_gid() == "lead_lag_separator"]
    assert len(sep) == 1
    np.testing.assert_allclose(sep[0].get_xdata(), [reference + 0.5, reference + 0.5])
    ref = [ln for ln in ax.lines if ln.get_label() == "reference period"]
    assert ref[0].get_xdata()[0] == reference
    # an explicit reference overrides the result's
    ax2 = plot_event_study(res, reference=0).axes[0]
    np.testing.assert_allclose([ln for ln in ax2.lines if ln.get_gid() == "lead_lag_separator"][0].get_xdata(), [0.5, 0.5])


def _png_from_notebook_formatter(obj) -> bytes | None:
    """What a Jupyter cell shows for ``obj``: IPython's display formatter, no matplotlib backend set up."""
    import base64

    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(obj)
    png = data.get("image/png")
    return base64.b64decode(png) if isinstance(png, str) else png


def test_figures_render_in_a_notebook_cell_without_matplotlib_inline(panel) -> None:
    import io

    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    res = event_study(panel, window=(-3, 2), model="ppml")
    fig = plot_event_study(res)
    png = _png_from_notebook_formatter(fig)
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n"
    shown = mpimg.imread(io.BytesIO(png))
    assert shown.shape[:2] == (420, 700)  # 7 x 4.2 inches at 100 dpi
    # the same pixels as saving the figure directly
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    np.testing.assert_array_equal(shown, mpimg.imread(io.BytesIO(buf.getvalue())))
    # not registered with pyplot: a loop of plots does not accumulate open figures
    assert plt.get_fignums() == []
    coef = plot_coefficients({"a": res, "b": res}, term=0)
    height, width = mpimg.imread(io.BytesIO(_png_from_notebook_formatter(coef))).shape[:2]
    assert abs(height - 100 * (1.4 + 0.45 * 2)) <= 1 and width == 900  # matplotlib versions round 229.99... differently
