"""Expected calibration error over equal-mass bins, on inputs small enough to reckon by hand."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.calibration import (
    calibration_error,
    calibration_level,
    equal_mass_bins,
    expected_calibration_error,
    reliability_png,
)


def test_bins_hold_equal_numbers_of_users_sorted_by_risk():
    # Six users, three bins of two: (0.1, 0.2), (0.3, 0.4), (0.8, 0.9) whatever the input order.
    prob = [0.9, 0.1, 0.4, 0.2, 0.8, 0.3]
    y = [1, 0, 1, 0, 1, 0]
    table = equal_mass_bins(y, prob, bins=3)
    assert table["count"].tolist() == [2, 2, 2]
    assert table["bin_low"].tolist() == [0.1, 0.3, 0.8]
    assert table["bin_high"].tolist() == [0.2, 0.4, 0.9]
    assert table["mean_predicted"].tolist() == pytest.approx([0.15, 0.35, 0.85])
    assert table["observed_rate"].tolist() == [0.0, 0.5, 1.0]


def test_ece_is_the_size_weighted_mean_gap():
    # Bins (0.1, 0.2) → 0 observed, gap 0.15; (0.3, 0.4) → 0.5, gap 0.15; (0.8, 0.9) → 1, gap
    # 0.15: ECE 0.15. Unequal sizes (7 users in 3 bins: 3, 2, 2) weigh by count.
    prob = [0.9, 0.1, 0.4, 0.2, 0.8, 0.3]
    y = [1, 0, 1, 0, 1, 0]
    assert expected_calibration_error(y, prob, bins=3) == pytest.approx(0.15)
    prob7, y7 = [0.1, 0.1, 0.1, 0.5, 0.5, 0.9, 0.9], [0, 0, 1, 1, 0, 1, 1]
    # (0.1 × 3, 1/3 observed): gap 0.2333, weight 3/7; (0.5 × 2, 0.5): 0; (0.9 × 2, 1): 0.1, 2/7.
    table = equal_mass_bins(y7, prob7, bins=3)
    assert table["count"].tolist() == [3, 2, 2]
    assert calibration_error(table) == pytest.approx(3 / 7 * (1 / 3 - 0.1) + 2 / 7 * 0.1)


def test_a_calibrated_night_has_no_error_and_a_shifted_one_has_the_shift():
    # Each bin of ten users with risk r has exactly 10·r churners: calibrated, ECE 0.
    prob = np.repeat([0.1, 0.3, 0.5, 0.7, 0.9], 10)
    y = np.concatenate([np.arange(10) < 10 * r for r in (0.1, 0.3, 0.5, 0.7, 0.9)]).astype(int)
    assert expected_calibration_error(y, prob, bins=5) == pytest.approx(0.0)
    # Same users, every risk 0.1 lower: the model under-predicts by 0.1 everywhere.
    assert expected_calibration_error(y, prob - 0.1, bins=5) == pytest.approx(0.1)


def test_fewer_users_than_bins_gives_a_bin_per_user():
    table = equal_mass_bins([1, 0], [0.25, 0.75], bins=10)
    assert table["count"].tolist() == [1, 1]
    assert calibration_error(table) == pytest.approx(0.75)


def test_ties_are_cut_the_same_way_every_time():
    prob, y = [0.5] * 4, [1, 0, 0, 1]
    first = equal_mass_bins(y, prob, bins=2)
    assert first["observed_rate"].tolist() == [0.5, 0.5]  # stable sort: input order kept
    assert first.equals(equal_mass_bins(y, prob, bins=2))


@pytest.mark.parametrize(
    ("y", "prob", "bins", "message"),
    [
        ([1, 0], [0.5], 10, "same non-zero length"),
        ([], [], 10, "same non-zero length"),
        ([1, 0], [0.5, 1.5], 10, r"\[0, 1\]"),
        ([1, 0], [0.5, np.nan], 10, r"\[0, 1\]"),
        ([2, 0], [0.5, 0.5], 10, "0 or 1"),
        ([1, 0], [0.5, 0.5], 0, "at least 1"),
    ],
)
def test_bad_inputs_are_refused(y, prob, bins, message):
    with pytest.raises(ValueError, match=message):
        equal_mass_bins(y, prob, bins=bins)


def test_the_reliability_plot_is_a_png(tmp_path):
    table = equal_mass_bins([0, 1, 0, 1], [0.1, 0.2, 0.6, 0.7], bins=2)
    path = reliability_png(table, 0.3, 0.05, tmp_path / "r" / "as_of=2026-03-10.png", "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["as_of=2026-03-10.png"]  # no temp left


def test_the_level_counts_churners_against_the_sum_of_the_risks():
    # 100 users at 0.2: 20 expected, sd sqrt(100 * 0.2 * 0.8) = 4. 32 churners: z = 3,
    # ratio 1.6; 20 churners: z 0.
    prob = np.full(100, 0.2)
    level = calibration_level(np.r_[np.ones(32), np.zeros(68)], prob)
    assert (level.expected, level.observed) == pytest.approx((0.2, 0.32))
    assert level.z == pytest.approx(3.0)
    assert level.ratio == pytest.approx(1.6)
    assert calibration_level(np.r_[np.ones(20), np.zeros(80)], prob).z == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("churners", "users", "off"),
    [
        (37, 100, True),  # z 4.25, ratio 1.85: far and large
        (35, 100, False),  # z 3.75, ratio 1.75: large, but not far enough beyond the noise
        (2_300, 10_000, False),  # z 7.5, ratio 1.15: sure, but small
        (2_600, 10_000, True),  # z 15, ratio 1.3
        (1_400, 10_000, True),  # z -15, ratio 0.7: too few churners is off as well
    ],
)
def test_a_level_is_off_only_when_far_outside_the_noise_and_large(churners, users, off):
    y = np.r_[np.ones(churners), np.zeros(users - churners)]
    assert calibration_level(y, np.full(users, 0.2)).off is off


def test_certain_risks_that_fail_are_infinitely_off():
    assert calibration_level([1, 0], [0.0, 0.0]).z == float("inf")
    assert calibration_level([0, 1], [0.0, 1.0]).z == 0.0
    assert not calibration_level([0, 1], [0.0, 1.0]).off
