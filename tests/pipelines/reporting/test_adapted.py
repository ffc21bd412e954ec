"""The adapted folder's card says what became of the target-group head."""

from __future__ import annotations

from pipelines.reporting.adapted import _target_line


def test_the_card_says_whether_the_target_head_was_kept_or_refitted_and_where_thresholds_came_from():
    assert "kept unchanged" in _target_line("the starting model's, its scores held")
    refit = {
        "religion": {"threshold": 0.4, "f1": 0.667, "attacks": 14, "rows": 64, "chosen_on": "held-out rows"},
        "race": {"threshold": 0.5, "attacks": 0, "rows": 64, "chosen_on": "the starting model's"},
    }
    line = _target_line(refit)
    assert "re-fitted" in line and "religion (14 attacks, F1 66.7%)" in line and "race" not in line
    refit["religion"] = {"threshold": 0.5, "attacks": 2, "rows": 64, "chosen_on": "the starting model's"}
    assert "no group (too few attacks held out)" in _target_line(refit)
