"""The one nDCG-per-round drawing, used by the demo's report and the flywheel benchmark."""

from __future__ import annotations

import io
from pathlib import Path

from flywheel_cli.demo_report import RoundRecord, write_report
from services.evaluation.plots import RoundSeries, ndcg_per_round_png

PNG = b"\x89PNG\r\n\x1a\n"


def _pixels(png: bytes) -> tuple[int, int]:
    import matplotlib.image

    return matplotlib.image.imread(io.BytesIO(png)).shape[:2]


def test_lines_hollow_markers_goal_and_empty_series() -> None:
    series = [
        RoundSeries("BM25", [(0, 0.37), (1, 0.37), (2, 0.37)], color="black", marker=None),
        RoundSeries("flywheel", [(0, 0.30), (1, 0.34), (2, 0.36)]),
        RoundSeries("rejected", [(2, 0.33)], color="tab:blue", hollow=True),
        RoundSeries("never measured", []),
    ]
    png = ndcg_per_round_png(series, title="t", goal=0.38)
    assert png.startswith(PNG)
    small = ndcg_per_round_png(series[:2], title="t", size=(3, 2), dpi=50)
    assert _pixels(small)[1] < _pixels(png)[1]


def test_demo_report_embeds_the_plot(tmp_path: Path) -> None:
    rounds = [
        RoundRecord(
            round=r,
            production="v1",
            canary=None,
            decision="-",
            outcome="-",
            heldout_ndcg={"BM25": 0.5, "v1 SPLADE": 0.4 + r / 100, "v1 hybrid": 0.55},
        )
        for r in range(3)
    ]
    page = write_report(tmp_path / "flywheel.html", rounds, {}, finished=True).read_text()
    assert 'alt="nDCG@10 per round per system" src="data:image/png;base64,iVBORw0KGgo' in page
