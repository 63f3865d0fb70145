"""vSAM's variation schedule (Eqs. 8-15) and ARSAM's autoregressive schedule, by hand."""
import pytest
import torch

from arsam.schedules import AutoregressiveSchedule, VariationSchedule, change_rate, slice_variance


def test_slice_variance_is_the_mean_within_slice_population_variance():
    # sorted: [1, 2, 3, 4 | 10, 20, 30, 40]; variances 1.25 and 125
    assert slice_variance([40, 1, 30, 2, 20, 3, 10, 4], 2) == pytest.approx((1.25 + 125) / 2)
    assert slice_variance([5.0, 5.0, 5.0], 3) == 0.0


def test_change_rate():
    assert change_rate(3.0, 2.0) == 0.5
    assert change_rate(3.0, None) is None
    assert change_rate(3.0, 0.0) is None


def test_warm_up_samples_every_step():
    s = VariationSchedule(start_iter=3, window=4, slices=2)
    g = torch.Generator().manual_seed(0)
    assert [s.decide(i, g) for i in (1, 2, 3)] == [True, True, True]


def test_bernoulli_draws_use_the_given_generator():
    s = VariationSchedule(start_iter=0, window=10, slices=2, init_rate=0.3, max_rate=0.8)
    g, ref = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    got = [s.decide(i, g) for i in range(1, 8)]
    want = [torch.rand((), generator=ref, dtype=torch.float64).item() < 0.3 for _ in range(7)]
    assert got == want


def test_sampling_stops_at_max_rate_within_a_window():
    s = VariationSchedule(start_iter=0, window=4, slices=2, init_rate=0.5, max_rate=0.5)
    g = torch.Generator().manual_seed(0)
    decisions = []
    for i in range(1, 9):
        s.s = 4.0  # p = 1: every draw says yes (Eq. 14 would clip s to max_rate·N)
        decisions.append(s.decide(i, g))
        s.update(i, decisions[-1], 1.0, 1.0)
    assert decisions == [True, True, False, False, True, True, False, False]


def test_rate_update_follows_eq_14():
    alpha, n = 0.1, 4
    s = VariationSchedule(alpha=alpha, start_iter=0, window=n, slices=2, init_rate=0.5)
    psf, sgd = [1.0, 2.0, 4.0, 3.0], [2.0, 2.0, 4.0, 5.0]
    for i, (a, b) in enumerate(zip(psf, sgd), start=1):
        s.update(i, True, a, b)
    v2 = slice_variance([1.0, 2.0], 2)            # 0: no change rate defined from it
    v3 = slice_variance([1.0, 2.0, 4.0], 2)
    v4 = slice_variance([1.0, 2.0, 4.0, 3.0], 2)
    assert v2 == 0.0
    c_var = [(v4 - v3) / v3]
    r = [a / b for a, b in zip(psf, sgd)]
    c_norm = [(r[k] - r[k - 1]) / r[k - 1] for k in range(1, 4)]
    expected = 2.0 * (1 + alpha * sum(c_var) / len(c_var) + alpha * sum(c_norm) / len(c_norm))
    assert s.s == pytest.approx(expected)
    assert s.rate == pytest.approx(expected / n)
    assert s.taken == 0


def test_sample_count_is_kept_within_one_and_max_rate_times_n():
    s = VariationSchedule(alpha=100.0, start_iter=0, window=4, slices=2, max_rate=0.75)
    for i, v in enumerate([1.0, 2.0, 3.0, 4.0], start=1):
        s.update(i, True, v, 1.0)
    assert s.s == 3.0
    t = VariationSchedule(alpha=100.0, start_iter=0, window=4, slices=4)  # v stays 0
    for i, v in enumerate([4.0, 3.0, 2.0, 1.0], start=1):
        t.update(i, True, v, 1.0)
    assert t.s == 1.0


def test_autoregressive_schedule_samples_evenly_without_randomness():
    s = AutoregressiveSchedule(alpha=0.0, start_iter=2, window=8, slices=2, init_rate=0.25)
    decisions = []
    for i in range(1, 15):
        decisions.append(s.decide(i, None))
        s.update(i, decisions[-1], 1.0, 1.0)
    assert decisions == [True, True] + [False, False, False, True] * 3


def test_autoregressive_change_rates_are_exponential_averages():
    n = 4
    s = AutoregressiveSchedule(alpha=0.1, start_iter=0, window=n, slices=4, init_rate=0.5)
    lam = 2 / n
    ratios = [1.0, 2.0, 3.0]
    for i, r in enumerate(ratios, start=1):
        s.update(i, True, r, 1.0)
    ema = 0.0
    for k in (1, 2):
        ema = (1 - lam) * ema + lam * (ratios[k] - ratios[k - 1]) / ratios[k - 1]
    assert s.ema_norm == pytest.approx(ema)
    assert s.ema_var == 0.0  # fewer than M=4 norms: v undefined
    s.update(4, False)
    assert s.s == pytest.approx(2.0 * (1 + 0.1 * ema))


@pytest.mark.parametrize("cls", [VariationSchedule, AutoregressiveSchedule])
def test_schedule_state_round_trip(cls):
    a = cls(start_iter=1, window=4, slices=2)
    for i, v in enumerate([1.0, 3.0, 2.0, 5.0, 4.0], start=1):
        a.update(i, i % 2 == 1, v, 2.0)
    b = cls(start_iter=1, window=4, slices=2)
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict()
    assert b.norms.maxlen == 4
