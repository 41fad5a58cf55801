"""The papers' figures beside ours: every row computed, every difference over 1 % explained, the rows that
must match pinned."""

import json
import math
import subprocess
import sys

import pytest
from conftest import REPO

from nas_attn.papers import FIGURES, UNAVAILABLE, Quantity
from nas_attn.papers.tables import compare, to_markdown


@pytest.fixture(scope="module")
def comparisons():
    return compare()


def test_quantity_reads_printed_figures():
    q = Quantity("3.28M")
    assert math.isclose(q.value, 3.28e6) and math.isclose(q.step, 1e4)
    assert q.printed_as(3_284_999) and not q.printed_as(3_286_000)
    assert Quantity("33K").printed_as(33_312) and not Quantity("0.8M").printed_as(700_000)
    with pytest.raises(ValueError, match="not a printed figure"):
        Quantity("3.4 M")


def test_every_difference_over_one_percent_has_a_reason(comparisons):
    for c in comparisons:
        if c.status in ("differs", "n/a"):
            assert c.figure.reason, c.figure.row
        assert c.figure.source and c.figure.table


# (row, params status, paper flops) of the rows that must match within 1 % or print as the paper's figure
PINNED = [
    ("SE-Net", "rounds", "0.03M"), ("ULSAM", "rounds", "0.2M"), ("1.0 MV1 (vanilla)", "match", "569M"),
    ("1.0 MV1 + ULSAM (two rows)", "match", "569.2M"), ("1.0 MV1 + ULSAM", "match", "569.1M"),
    ("0.75 MV1 (vanilla)", "match", "325M"), ("0.75 MV1 + ULSAM (g = 1, 4)", "rounds", "296M"),
    ("0.50 MV1 (vanilla)", "rounds", "149M"),
]


@pytest.mark.parametrize("row,status,flops", PINNED)
def test_pinned_rows_match(comparisons, row, status, flops):
    c = next(c for c in comparisons if c.figure.row == row and c.figure.flops.text == flops)
    assert c.status == status


def test_every_ulsam_network_row_is_within_one_percent_in_flops(comparisons):
    """The FLOPs of every MobileNet row are within 1 % (the params differ by the paper's rounded base)."""
    nets = [c for c in comparisons if c.figure.paper == "ULSAM" and c.figure.table != FIGURES[0].table]
    assert len(nets) == 20
    assert all(abs(c.flops_diff) <= 0.01 for c in nets), [(c.figure.row, c.flops_diff) for c in nets]


def test_backbone_counts_match_their_sources(comparisons):
    rows = [c for c in comparisons if c.figure.paper == "backbone"]
    assert {c.status for c in rows} == {"match", "rounds"} and len(rows) == 9


def test_unavailable_tables_say_where_they_were_looked_for():
    assert {u.paper for u in UNAVAILABLE} == {"ULSAM", "LGAM", "LADNet"}
    assert all(u.looked for u in UNAVAILABLE)


def test_the_networks_of_unavailable_tables_carry_our_figures(comparisons):
    ours = {c.figure.row: c for c in comparisons if c.status == "ours only"}
    assert {c.figure.paper for c in ours.values()} == {"LGAM", "LADNet"} and len(ours) == 16
    assert all(c.params and c.flops for c in ours.values())
    wrn = ours["WRN-16-10 (vanilla)"]
    assert wrn.params == 17_116_634 + 90 * 641  # the 10-class WRN-16-10 with a 100-class classifier
    for label in ("WRN-16-10", "ResNeXt-29"):  # every module adds to the vanilla network, LGAM least of the MLPs
        base = ours[f"{label} (vanilla)"].params
        added = {m: ours[f"{label} + {m}"].params - base for m in ("SE", "SGE", "CBAM", "BAM", "LGAM")}
        assert all(v > 0 for v in added.values()) and added["LGAM"] < min(added["SE"], added["CBAM"], added["BAM"])
    for drn in ("DRN-C-26", "DRN-D-22"):  # LADNet's claim (below vanilla) is not reachable by an added module
        assert ours[f"{drn} + LA beside every block"].params > ours[f"{drn} (vanilla)"].params


def test_docs_hold_the_current_table(comparisons):
    docs = (REPO / "docs" / "paper-tables.md").read_text()
    assert to_markdown(comparisons) in docs


def test_cli_prints_every_row_as_json():
    r = subprocess.run([sys.executable, "-m", "nas_attn", "paper-tables", "--format", "json", "--paper", "backbone"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["rows"]) == 9 and out["rows"][3]["target"]["backbone"] == "drn_a_50"
    assert out["rows"][3]["params"] == 25_557_032 and out["not_available"]
