"""ARSAM/vSAM, its schedules and LookSAM against hand-computed references.

Every reuse test runs a problem with several parameter tensors: w and b of a linear model and a
second weight v, L_i = (x_i·w + b - y_i)² + (z_i·v)².
"""
import warnings
import pytest
import torch
from torch import nn

import arsam
from arsam.reuse import build_schedule
from arsam.schedules import (FixedSchedule, MatchedSchedule, Sample, VSAMSchedule,
                             mean_change_rate, slice_variance)

TIGHT = dict(rtol=1e-12, atol=1e-12)


@pytest.fixture(autouse=True)
def float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


class Problem(nn.Module):
    """L_i = (x_i·w + b - y_i)² + (z_i·v)², its per-sample losses and its exact gradient."""

    def __init__(self, n=8, seed=4):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.x, self.y = torch.randn(n, 3, generator=g), torch.randn(n, generator=g)
        self.z = torch.randn(n, 2, generator=g)
        self.w = nn.Parameter(torch.randn(3, generator=g))
        self.b = nn.Parameter(torch.randn(1, generator=g))
        self.v = nn.Parameter(torch.randn(2, generator=g))

    def closure(self, indices=None):
        return (self.x @ self.w + self.b - self.y) ** 2 + (self.z @ self.v) ** 2

    def grad(self, at):
        """∇L at ``at`` = (w, b, v), as a tuple of tensors."""
        w, b, v = at
        r, s = self.x @ w + b - self.y, self.z @ v
        n = len(r)
        return 2 * self.x.T @ r / n, 2 * r.mean(0, keepdim=True), 2 * self.z.T @ s / n

    def at(self):
        return tuple(p.detach().clone() for p in (self.w, self.b, self.v))


def flat(ts):
    return torch.cat([t.reshape(-1) for t in ts])


def add(a, b, c=1.0):
    return tuple(x + c * y for x, y in zip(a, b))


def sam_grad(problem, at, rho):
    g = problem.grad(at)
    return problem.grad(add(at, g, rho / flat(g).norm()))


def assert_at(problem, expected):
    for p, e in zip((problem.w, problem.b, problem.v), expected):
        torch.testing.assert_close(p.detach(), e, **TIGHT)


def reuse_opt(problem, schedule="vsam", lr=0.1, rho=0.1, **kwargs):
    kwargs.setdefault("start_iter", 1)
    return arsam.ARSAM(problem.parameters(), torch.optim.SGD, rho=rho, lr=lr, model=problem,
                       schedule=schedule, **kwargs)


def never_sample(opt, monkeypatch):
    monkeypatch.setattr(opt.schedule, "decide", lambda generator: False)


def sampled_steps(opt, problem, n):
    """Take ``n`` steps; whether each was sampled."""
    sampled = []
    for _ in range(n):
        opt.step(problem.closure)
        sampled.append(opt.stats["sampled"])
    return sampled


# --------------------------------------------------------------------------- Eqs. 16-17
@pytest.mark.parametrize("reuse_steps, weights", [
    (2, [0.5, 0.25, 0.0, 0.0]),        # reused while k <= reuse_steps, then plain g_SGD
    (None, [0.5, 0.25, 0.125, 0.0625]),  # the paper's text: until the next sample
])
def test_psf_is_stored_and_reused_with_decay_and_cut_off(monkeypatch, reuse_steps, weights):
    """Sampled: update g_SAM, PSF = g_SAM - g_SGD (Eq. 16); else g_SGD + γ^k·PSF (Eq. 17)."""
    problem = Problem()
    opt = reuse_opt(problem, gamma=0.5, reuse_steps=reuse_steps)
    w0 = problem.at()
    opt.step(problem.closure)  # step 1: warm-up, sampled
    g_sgd, g_sam = problem.grad(w0), sam_grad(problem, w0, 0.1)
    psf = add(g_sam, g_sgd, -1.0)
    assert_at(problem, add(w0, g_sam, -0.1))
    for p, d in zip((problem.w, problem.b, problem.v), psf):
        torch.testing.assert_close(opt.state[p]["psf"], d, **TIGHT)
    assert opt.stats["sampled"] and opt.stats["sampling_rate"] == 1.0
    assert opt.stats["psf_norm"] == pytest.approx(flat(psf).norm().item(), rel=1e-12)
    assert opt.stats["sgd_norm"] == pytest.approx(flat(g_sgd).norm().item(), rel=1e-12)
    never_sample(opt, monkeypatch)
    for c in weights:
        wk = problem.at()
        opt.step(problem.closure)
        assert_at(problem, add(wk, add(problem.grad(wk), psf, c), -0.1))
        assert not opt.stats["sampled"]
        assert opt.stats["forward_samples"] == opt.stats["backward_samples"] == 8


def test_gamma_zero_is_vsam_a(monkeypatch):
    problem = Problem()
    opt = reuse_opt(problem, gamma=0.0)
    opt.step(problem.closure)
    never_sample(opt, monkeypatch)
    w1 = problem.at()
    opt.step(problem.closure)
    assert_at(problem, add(w1, problem.grad(w1), -0.1))


def test_the_official_reuse_weights_are_gamma_to_the_k_for_six_steps():
    s = VSAMSchedule()
    assert (s.gamma, s.reuse_steps) == (0.7, 6)
    assert [s.weight(k) for k in range(1, 9)] == [0.7 ** k for k in range(1, 7)] + [0.0, 0.0]


# --------------------------------------------------------------------------- warm-up
def test_warm_up_in_epochs_is_plain_sam_for_that_many_steps(monkeypatch):
    problem = Problem()
    opt = arsam.ARSAM(problem.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, model=problem,
                      warmup_epochs=1.5, steps_per_epoch=2)
    assert opt.warmup_steps() == 3
    never_sample(opt, monkeypatch)
    sampled = sampled_steps(opt, problem, 5)
    assert sampled == [True, True, True, False, False]


def test_start_iter_overrides_warmup_epochs():
    opt = arsam.ARSAM(Problem().parameters(), torch.optim.SGD, lr=0.1, warmup_epochs=3,
                      steps_per_epoch=10, start_iter=4)
    assert opt.warmup_steps() == 4


def test_the_default_warm_up_is_three_epochs():
    opt = arsam.ARSAM(Problem().parameters(), torch.optim.SGD, lr=0.1, steps_per_epoch=7)
    assert (opt.warmup_epochs, opt.start_iter, opt.warmup_steps()) == (None, None, 21)
    opt.total_steps = 210  # 21 steps are 10 % of the run: not cut
    assert opt.warmup_steps() == 21


def test_the_default_warm_up_is_cut_to_a_tenth_of_a_shorter_run_with_one_warning():
    """Once, at the first step; the warning names the line that called step()."""
    problem = Problem()
    opt = arsam.ARSAM(problem.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, model=problem,
                      steps_per_epoch=4, total_steps=12)
    with pytest.warns(UserWarning, match=r"ARSAM: the default warm-up of 3 epochs \(12 steps of "
                      r"4\) is more than 10% of the run \(total_steps=12\): cut to 1 steps") as w:
        opt.step(problem.closure)
    assert w[0].filename == __file__  # names the caller's step(), not arsam's code
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            opt.step(problem.closure)
    assert opt.warmup_steps() == 1 and opt.iteration == 4


def test_without_the_run_length_the_default_has_no_warm_up_and_samples_the_first_step(
        monkeypatch):
    """Plain PyTorch, davda54-style: no steps_per_epoch, no error; the first step is SAM (Eq. 17
    needs a stored PSF), then the schedule decides."""
    problem = Problem()
    opt = arsam.ARSAM(problem.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, model=problem)
    assert opt.warmup_steps() == 0
    never_sample(opt, monkeypatch)
    sampled = sampled_steps(opt, problem, 3)
    assert sampled == [True, False, False]


@pytest.mark.parametrize("kwargs, message", [
    (dict(warmup_epochs=3), r"warmup_epochs=3 needs steps_per_epoch \(an argument of the "
                            r"optimizer; the mmengine wrappers take it from the train loop\), or "
                            r"give the warm-up in steps with start_iter"),
    (dict(warmup_epochs=3, steps_per_epoch=4, total_steps=12),
     r"warmup_epochs=3 \(12 steps of 4\) covers the whole run of total_steps=12: ARSAM would be "
     r"plain SAM; give a shorter warm-up, or leave warmup_epochs unset"),
])
def test_a_warm_up_in_epochs_that_cannot_be_resolved_fails_before_any_work(kwargs, message):
    problem = Problem()
    opt = arsam.ARSAM(problem.parameters(), torch.optim.SGD, lr=0.1, model=problem, **kwargs)
    w0 = problem.at()
    with pytest.raises(ValueError, match=message):
        opt.step(problem.closure)
    assert_at(problem, w0)
    assert opt.iteration == 0 and all(p.grad is None for p in problem.parameters())


def test_the_first_window_after_warm_up_takes_its_whole_quota():
    """Warm-up samples never count against a window: the windows start after the warm-up."""
    problem = Problem()
    opt = reuse_opt(problem, start_iter=None, warmup_epochs=3, steps_per_epoch=1, window=4,
                    slices=1, init_samples=2, alpha=0.0)
    sampled = sampled_steps(opt, problem, 3 + 8)
    assert sampled[:3] == [True] * 3
    assert sum(sampled[3:7]) == 2 and sum(sampled[7:11]) == 2


# --------------------------------------------------------------------------- norms (Sec. 3.2)
class Observed(VSAMSchedule):
    """VSAMSchedule that records what it observes."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = []

    def observe(self, sample):
        self.seen.append(sample)
        super().observe(sample)


def observed_norms(problem, groups, **kwargs):
    schedule = Observed()
    opt = arsam.ARSAM(groups, torch.optim.SGD, rho=0.1, lr=0.1, start_iter=2,
                      schedule=schedule, **kwargs)
    at = problem.at()
    opt.step(problem.closure)
    return schedule.seen[0], problem.grad(at), add(sam_grad(problem, at, 0.1), problem.grad(at),
                                                    -1.0)


@pytest.mark.parametrize("norm_params, chosen", [(1, [2]), (2, [1, 2]), (None, [0, 1, 2])])
def test_norms_are_measured_on_the_last_tensors_in_the_model_order(norm_params, chosen):
    """The step sizes of LSQ sit in a last group with ρ = 0: the model's order decides, and only
    perturbed tensors count (with model=; otherwise the groups' order)."""
    problem = Problem()
    groups = [dict(params=[problem.w, problem.v]), dict(params=[problem.b])]
    sample, g_sgd, psf = observed_norms(problem, groups, model=problem, norm_params=norm_params)
    assert sample.sgd_norm == pytest.approx(flat([g_sgd[k] for k in chosen]).norm().item(),
                                            rel=1e-12)
    assert sample.psf_norm == pytest.approx(flat([psf[k] for k in chosen]).norm().item(),
                                            rel=1e-12)


def test_norms_skip_tensors_the_ascent_does_not_perturb_and_follow_the_groups_without_model():
    problem = Problem()
    groups = [dict(params=[problem.w, problem.v]), dict(params=[problem.b], rho=0.0)]
    sample, g_sgd, _ = observed_norms(problem, groups, norm_params=1)
    assert sample.sgd_norm == pytest.approx(g_sgd[2].norm().item(), rel=1e-12)  # v, not b


def test_norms_on_named_tensors():
    problem = Problem()
    sample, g_sgd, psf = observed_norms(problem, problem.parameters(), model=problem,
                                        norm_params=("w", "b"))
    assert sample.sgd_norm == pytest.approx(flat(g_sgd[:2]).norm().item(), rel=1e-12)
    assert sample.psf_norm == pytest.approx(flat(psf[:2]).norm().item(), rel=1e-12)


def test_named_norm_tensors_need_the_model_before_any_work():
    problem = Problem()
    opt = arsam.ARSAM(problem.parameters(), torch.optim.SGD, lr=0.1, start_iter=1,
                      norm_params=("w",))
    w0 = problem.at()
    with pytest.raises(ValueError, match=r"norm_params given as parameter-name prefixes needs "
                                         r"the model \(model=; the mmengine wrappers set it\)"):
        opt.step(problem.closure)
    assert_at(problem, w0)
    assert opt.iteration == 0 and opt.last_sampled is None


def test_the_schedule_sees_the_stored_psf_and_the_gap():
    problem = Problem()
    schedule = Observed(window=2, slices=1, init_samples=1)
    opt = arsam.ARSAM(problem.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, start_iter=2,
                      schedule=schedule, model=problem)
    psfs = []
    for _ in range(2):
        at = problem.at()
        opt.step(problem.closure)
        psfs.append(flat(add(sam_grad(problem, at, 0.1), problem.grad(at), -1.0)))
    first, second = schedule.seen
    assert (first.gap, first.dot, first.stored_sq) == (None, 0.0, 0.0)
    assert second.gap == 1
    assert second.dot == pytest.approx((psfs[1] @ psfs[0]).item(), rel=1e-12)
    assert second.stored_sq == pytest.approx((psfs[0] @ psfs[0]).item(), rel=1e-12)


# --------------------------------------------------------------------------- VSAMSchedule
def test_slice_variance_is_the_mean_of_the_slices_sample_variances():
    # sorted: [1, 2, 3, 4 | 10, 20, 30, 40]; sample variances 5/3 and 500/3
    assert slice_variance([40, 1, 30, 2, 20, 3, 10, 4], 2) == pytest.approx((5 / 3 + 500 / 3) / 2)
    assert slice_variance([5.0, 7.0, 9.0], 3) == 0.0  # one value a slice


def test_mean_change_rate_averages_the_n_minus_1_rates_of_n_values():
    assert mean_change_rate([1.0, 2.0, 3.0, 6.0]) == pytest.approx((1 + 0.5 + 1) / 3)
    assert mean_change_rate([0.0, 2.0, 3.0]) == pytest.approx(0.5)  # zero predecessor: left out
    assert mean_change_rate([2.0]) == 0.0


def feed(schedule, psf_norms, sgd_norms):
    for a, b in zip(psf_norms, sgd_norms):
        schedule.observe(Sample(a, b))


@pytest.mark.parametrize("clamp, c_var", [(None, 1.0), (0.5, 0.5)])
def test_the_sample_count_follows_eq_14_after_each_window(clamp, c_var):
    s = VSAMSchedule(alpha=0.1, window=4, slices=2, init_samples=2, clamp=clamp)
    feed(s, [1.0, 2.0, 4.0, 3.0], [2.0, 2.0, 4.0, 5.0])
    # v: [1, 2] -> 0 (one value a slice); [1, 2 | 4] -> 0.25; [1, 2 | 3, 4] -> 0.5: ĉ_var = 1
    assert list(s.variances) == [0.0, 0.25, 0.5]
    # r = [0.5, 1, 1, 0.6]: rates 1, 0, -0.4: ĉ_norm = 0.2
    for sampled in (True, False, False):
        s.advance(sampled)
    assert (s.s, s.taken, s.position) == (2.0, 1, 3)
    s.advance(False)
    assert s.s == pytest.approx(2.0 * (1 + 0.1 * c_var + 0.1 * 0.2), rel=1e-12)
    assert s.rate == pytest.approx(s.s / 4, rel=1e-12)
    assert (s.taken, s.position) == (0, 0)


def test_eq_14_uses_the_last_n_values_and_clamps_each_mean():
    s = VSAMSchedule(alpha=0.1, window=4, slices=4, init_samples=2)  # v needs 4 norms
    feed(s, [10.0, 1.0, 2.0, 4.0, 8.0], [1.0] * 5)
    assert list(s.ratios) == [1.0, 2.0, 4.0, 8.0]  # N = 4 kept: 3 rates of 1, none of -0.9
    for _ in range(4):
        s.advance(False)
    # ĉ_norm = 1; v: [1, 2, 4, 10] -> 0 then [1, 2, 4, 8] -> 0 (one value a slice): ĉ_var = 0
    assert s.s == pytest.approx(2.0 * (1 + 0.1 * 1.0), rel=1e-12)
    t = VSAMSchedule(alpha=0.1, window=4, slices=4, init_samples=2)
    feed(t, [1.0, 10.0, 100.0], [1.0] * 3)  # rates 9, 9: clamped to 1
    for _ in range(4):
        t.advance(False)
    assert t.s == pytest.approx(2.0 * 1.1, rel=1e-12)


def test_the_sample_count_stays_within_one_and_the_cap():
    s = VSAMSchedule(alpha=10.0, window=4, slices=1, init_samples=2, max_rate=0.8)
    feed(s, [1.0, 2.0], [1.0, 1.0])
    for _ in range(4):
        s.advance(False)
    assert s.s == 3.0  # ⌊0.8·4⌋
    t = VSAMSchedule(alpha=10.0, window=4, slices=1, init_samples=2)
    feed(t, [2.0, 1.0], [1.0, 1.0])
    for _ in range(4):
        t.advance(False)
    assert t.s == 1.0


def decisions(schedule, steps, seed=3):
    g, out = None if seed is None else torch.Generator().manual_seed(seed), []
    for _ in range(steps):
        out.append(schedule.decide(g))
        schedule.advance(out[-1])
    return out


def test_s1_is_one_sample_a_window():
    assert VSAMSchedule().rate == 1 / 50


def test_the_quota_takes_exactly_floor_s_samples_a_window_filling_at_the_end():
    # draws of seed 3: .034 .287 .773 .175 .755 .608 .199 .433 .405 .779; p = 2/5
    s = VSAMSchedule(alpha=0.0, window=5, slices=1, init_samples=2)
    assert decisions(s, 15) == [True, True, False, False, False,    # quota met by draws
                                False, True, False, False, True,    # the last step fills it
                                True, False, False, False, True]


def test_the_papers_text_draws_bernoulli_p_until_the_cap():
    s = VSAMSchedule(alpha=0.0, window=5, slices=1, init_samples=2, quota=False)
    assert decisions(s, 10) == [True, True, False, True, False,
                                False, True, False, False, False]
    full = VSAMSchedule(alpha=0.0, window=5, slices=1, init_samples=4, quota=False)  # p = 0.8
    assert decisions(full, 10) == [True, True, True, True, False,  # cap ⌊0.8·5⌋ = 4 reached
                                   True, True, True, True, False]


def test_fixed_schedule_samples_evenly_without_randomness():
    s = FixedSchedule(rate=0.25)
    assert decisions(s, 12, seed=None) == [False, False, False, True] * 3
    assert (s.gamma, s.reuse_steps) == (1.0, None) and s.rate == 0.25


@pytest.mark.parametrize("make", [
    lambda: VSAMSchedule(window=4, slices=2, init_samples=2),
    lambda: FixedSchedule(rate=0.3),
    lambda: MatchedSchedule(smooth=0.3),
])
def test_schedule_state_round_trip(make):
    a = make()
    feed(a, [1.0, 3.0, 2.0, 5.0, 4.0], [2.0] * 5)
    decisions(a, 6)
    b = make()
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict()
    assert decisions(b, 9) == decisions(a, 9)


# --------------------------------------------------------------------------- MatchedSchedule
def test_matched_rate_follows_the_scripted_psfs():
    """p = D̄/(2κ²σ̄²), D = ‖PSF‖² + ‖stored‖² - 2<PSF, stored>, σ² = ‖g_SGD‖², averaged with
    weight 0.5, clipped to [min_rate, max_rate]."""
    s = MatchedSchedule(kappa=1.0, min_rate=0.1, max_rate=0.5, smooth=0.5)
    assert s.decide(None)  # nothing observed yet: sample
    s.observe(Sample(1.0, 2.0))  # no PSF stored: D = 2·1, σ² = 4
    assert (s.d_mean, s.sgd_sq_mean, s.rate) == (2.0, 4.0, 0.25)
    s.observe(Sample(1.0, 2.0, dot=0.5, stored_sq=1.0))  # D = 1 + 1 - 1 = 1
    assert (s.d_mean, s.sgd_sq_mean, s.rate) == (1.5, 4.0, 1.5 / 8)
    s.observe(Sample(2.0, 1.0, dot=0.0, stored_sq=1.0))  # D = 5, σ² = 1
    assert (s.d_mean, s.sgd_sq_mean) == (3.25, 2.5) and s.rate == 0.5  # 0.65, clipped
    s.observe(Sample(0.1, 10.0, dot=0.01, stored_sq=0.01))  # D = 0, σ² = 100
    assert s.d_mean == 1.625 and s.sgd_sq_mean == 51.25 and s.rate == 0.1  # 0.0159, clipped


def test_matched_samples_evenly_at_its_rate_and_reuses_the_psf_whole():
    s = MatchedSchedule(kappa=1.0, smooth=1.0)
    s.observe(Sample(1.0, 2.0))  # p = 2/8
    assert decisions(s, 8, seed=None) == [False, False, False, True] * 2
    assert [s.weight(k) for k in (1, 5, 50)] == [1.0, 1.0, 1.0]


def test_matched_measures_how_far_the_stored_psf_was_from_the_fresh_one():
    """Two warm-up samples, then the rate from those two PSFs and the second ‖g_SGD‖."""
    problem = Problem()
    opt = reuse_opt(problem, schedule="matched", start_iter=2, kappa=0.1, smooth=1.0,
                    min_rate=0.001, max_rate=1.0)
    psfs = []
    for _ in range(2):
        at = problem.at()
        opt.step(problem.closure)
        g = problem.grad(at)
        psfs.append(flat(add(sam_grad(problem, at, 0.1), g, -1.0)))
    d = ((psfs[1] - psfs[0]) ** 2).sum().item()
    expected = d / (2 * 0.1 ** 2 * (flat(g) ** 2).sum().item())
    assert 0.001 < expected < 1.0
    assert opt.schedule.rate == pytest.approx(expected, rel=1e-9)


def test_matched_reuse_adds_the_stored_psf_whole(monkeypatch):
    problem = Problem()
    opt = reuse_opt(problem, schedule="matched")
    w0 = problem.at()
    opt.step(problem.closure)
    psf = add(sam_grad(problem, w0, 0.1), problem.grad(w0), -1.0)
    never_sample(opt, monkeypatch)
    for _ in range(8):  # no decay, no cut-off
        wk = problem.at()
        opt.step(problem.closure)
        assert_at(problem, add(wk, add(problem.grad(wk), psf), -0.1))


@pytest.mark.parametrize("average", [0.5, 0.25, 1.0])
def test_matched_stores_an_average_of_the_sampled_psfs(monkeypatch, average):
    """At a sample the stored PSF becomes stored + average·(fresh - stored) (1: replaced, as
    Eq. 17), after D was measured against the stored one; reuse steps add it whole. A fixed
    weight: reuse_ratio=None."""
    problem = Problem()
    opt = reuse_opt(problem, schedule="matched", start_iter=2, average=average, kappa=0.1,
                    smooth=1.0, min_rate=0.001, max_rate=1.0, reuse_ratio=None)
    psfs = []
    for _ in range(2):
        at = problem.at()
        opt.step(problem.closure)
        g = problem.grad(at)
        psfs.append(add(sam_grad(problem, at, 0.1), g, -1.0))
    stored = add(psfs[0], add(psfs[1], psfs[0], -1.0), average)
    for p, e in zip((problem.w, problem.b, problem.v), stored):
        torch.testing.assert_close(opt.state[p]["psf"], e, **TIGHT)
    d = ((flat(psfs[1]) - flat(psfs[0])) ** 2).sum().item()  # against psf 1, not the average
    assert opt.schedule.rate == pytest.approx(d / (2 * 0.1 ** 2 * (flat(g) ** 2).sum().item()),
                                              rel=1e-9)
    never_sample(opt, monkeypatch)
    for _ in range(3):
        wk = problem.at()
        opt.step(problem.closure)
        assert_at(problem, add(wk, add(problem.grad(wk), stored), -0.1))


def test_matched_defaults_and_the_other_schedules_replace_the_psf():
    s = MatchedSchedule()
    assert (s.kappa, s.min_rate, s.max_rate, s.smooth, s.average, s.reuse_ratio) == (
        1.5, 0.05, 0.5, 0.2, 0.1, 0.1)
    s.observe(Sample(0.1, 10.0, dot=0.01, stored_sq=0.01))  # D = 0: the floor
    assert s.rate == 0.05
    assert decisions(s, 40, seed=None) == ([False] * 19 + [True]) * 2  # a PSF is <= 20 steps old
    assert VSAMSchedule().average == FixedSchedule().average == 1.0


def test_matched_average_follows_the_reuse_ratio():
    """a = 2q/(1+q), q = (c²σ̄² - M)/(P - M), clipped to [average, 1]; M, P, σ̄² averaged with
    weight 0.5 (smooth) from the first sample with a stored PSF; c = 0.5."""
    s = MatchedSchedule(smooth=0.5, average=0.1, reuse_ratio=0.5)
    s.observe(Sample(1.0, 2.0))  # nothing stored: not measured, σ̄² = 4
    assert (s.average, s.dot_mean, s.psf_sq_mean) == (0.1, None, None)
    s.observe(Sample(2.0, 4.0, dot=1.0, stored_sq=1.0))  # σ̄² = 10, M = 1, P = 4
    assert (s.dot_mean, s.psf_sq_mean) == (1.0, 4.0)
    assert s.average == pytest.approx(2 / 3, rel=1e-12)  # q = (2.5 - 1)/(4 - 1) = 0.5
    s.observe(Sample(1.0, 4.0, dot=-1.0, stored_sq=1.0))  # σ̄² = 13, M = 0, P = 2.5
    assert (s.dot_mean, s.psf_sq_mean, s.average) == (0.0, 2.5, 1.0)  # q = 1.3: a = 1.13, clipped
    s.observe(Sample(3.0, 0.0, dot=5.0, stored_sq=1.0))  # σ̄² = 6.5, M = 2.5, P = 5.75
    assert s.average == 0.1  # c²σ̄² = 1.625 < M: q = 0, the least weight
    s.observe(Sample(1.0, 0.0, dot=6.0, stored_sq=1.0))  # M = 4.25 >= P = 3.375: no batch part
    assert s.average == 1.0
    fixed = MatchedSchedule(average=0.3, reuse_ratio=None)
    fixed.observe(Sample(1.0, 2.0))
    fixed.observe(Sample(2.0, 4.0, dot=1.0, stored_sq=1.0))
    assert (fixed.average, fixed.dot_mean) == (0.3, None)


def test_matched_stores_the_average_of_the_weight_it_measured():
    """Three warm-up samples on three batches: the second and third PSF are blended with the
    weight the reuse ratio gives from that sample's <PSF, S>, ‖PSF‖² and ‖g_SGD‖² (smooth = 1:
    the last ones)."""
    problem = Problem()
    c, floor = 0.07, 0.05
    opt = reuse_opt(problem, schedule="matched", start_iter=3, smooth=1.0, average=floor,
                    reuse_ratio=c)
    stored, weights, data = None, [], (problem.x, problem.y, problem.z)
    for batch in ([0, 1, 2], [3, 4, 5], [5, 6, 7]):
        problem.x, problem.y, problem.z = (t[batch] for t in data)
        at = problem.at()
        opt.step(problem.closure)
        g = problem.grad(at)
        psf = add(sam_grad(problem, at, 0.1), g, -1.0)
        if stored is None:
            stored = psf
            continue
        m = max((flat(psf) @ flat(stored)).item(), 0.0)
        q = max((c ** 2 * (flat(g) ** 2).sum().item() - m) / ((flat(psf) ** 2).sum().item() - m),
                0.0)
        weights.append(min(max(2 * q / (1 + q), floor), 1.0))
        stored = add(stored, add(psf, stored, -1.0), weights[-1])
        assert opt.schedule.average == pytest.approx(weights[-1], rel=1e-9)
        assert opt.stats["psf_average"] == opt.schedule.average  # logged by the wrappers
    assert all(floor < a < 1 for a in weights)  # the formula, not a bound, set both
    for p, e in zip((problem.w, problem.b, problem.v), stored):
        torch.testing.assert_close(opt.state[p]["psf"], e, **TIGHT)


def test_matched_state_keeps_the_weight_and_loads_a_state_saved_before_it():
    s = MatchedSchedule(smooth=0.5, reuse_ratio=0.5)
    s.observe(Sample(1.0, 2.0))
    s.observe(Sample(2.0, 4.0, dot=1.0, stored_sq=1.0))
    restored = MatchedSchedule(smooth=0.5, reuse_ratio=0.5)
    restored.load_state_dict(s.state_dict())
    assert restored.state_dict() == s.state_dict() and restored.average == s.average != 0.1
    old = {k: v for k, v in s.state_dict().items()
           if k not in ("average", "dot_mean", "psf_sq_mean")}
    before = MatchedSchedule(smooth=0.5, reuse_ratio=0.5)
    before.load_state_dict(old)
    assert (before.average, before.dot_mean, before.psf_sq_mean) == (0.1, None, None)
    assert before.d_mean == s.d_mean


# --------------------------------------------------------------------------- schedule=
def test_schedules_by_name_take_their_arguments_and_leave_the_rest():
    kwargs = dict(alpha=0.2, window=10, lr=0.1)
    s = build_schedule("vsam", kwargs)
    assert isinstance(s, VSAMSchedule) and (s.alpha, s.window) == (0.2, 10)
    assert kwargs == dict(lr=0.1)


@pytest.mark.parametrize("schedule, kwargs, error, message", [
    ("linear", {}, ValueError, r"schedule must be one of \['fixed', 'matched', 'vsam'\] or a "
                               r"schedule object, got 'linear'"),
    ("fixed", dict(alpha=0.1), TypeError, r"alpha is an argument of schedule 'vsam', not of "
                                          r"'fixed' \(its arguments: rate, gamma, reuse_steps\)"),
    (FixedSchedule(), dict(gamma=0.5), TypeError, r"schedule arguments \['gamma'\] given with "
                                                  r"a schedule object"),
    ("vsam", dict(init_samples=41), ValueError, r"init_samples must be in \[1, "
                                                r"floor\(max_rate·window\)=40\], got 41"),
    ("vsam", dict(reuse_steps=-1), ValueError, r"reuse_steps must be None or an int >= 0"),
    ("fixed", dict(rate=0.0), ValueError, r"rate must be in \(0, 1\], got 0.0"),
])
def test_bad_schedules_fail_at_construction(schedule, kwargs, error, message):
    with pytest.raises(error, match=message):
        arsam.ARSAM(Problem().parameters(), torch.optim.SGD, lr=0.1, schedule=schedule,
                    **kwargs)


def test_vsam_is_arsam():
    assert arsam.VSAM is arsam.ARSAM and arsam.OPTIMIZERS["VSAM"] is arsam.ARSAM


# --------------------------------------------------------------------------- LookSAM
def test_looksam_reuses_the_orthogonal_part_of_the_last_sam_gradient():
    problem = Problem()
    opt = arsam.LookSAM(problem.parameters(), torch.optim.SGD, rho=0.1, k=3, alpha=0.7, lr=0.1)
    w0 = problem.at()
    opt.step(problem.closure)  # step 0: SAM
    g, g_s = flat(problem.grad(w0)), flat(sam_grad(problem, w0, 0.1))
    g_v = g_s - (g_s @ g) / (g @ g) * g
    assert_at(problem, add(w0, sam_grad(problem, w0, 0.1), -0.1))
    assert abs((g_v @ g).item()) < 1e-12
    assert float(opt.stats["gv_ratio"]) == pytest.approx((g_v.norm() / g.norm()).item(),
                                                         rel=1e-12)
    for _ in range(2):  # steps 1, 2: g + α·‖g‖/‖g_v‖·g_v
        wk = problem.at()
        opt.step(problem.closure)
        gk = flat(problem.grad(wk))
        update = gk + 0.7 * gk.norm() / g_v.norm() * g_v
        torch.testing.assert_close(flat(problem.at()), flat(wk) - 0.1 * update, **TIGHT)
        assert not opt.stats["sampled"] and opt.stats["backward_samples"] == 8
        assert opt.stats["gv_ratio"] is None
    opt.step(problem.closure)  # step 3: SAM again
    assert opt.stats["sampled"] and opt.stats["backward_samples"] == 16


def test_looksam_reused_correction_is_set_by_alpha_not_by_rho():
    """Why LookSAM with α = 0.7 ends below SGD in our benchmark (docs/fidelity.md): on a reuse
    step the correction added to g has norm α·‖g‖ exactly, whatever ρ, while SAM's own
    orthogonal part g_v shrinks with ρ (here, a quadratic loss, exactly like ρ): LookSAM does not
    tend to SGD as ρ -> 0, and where α exceeds SAM's ratio r = ‖g_v‖/‖g‖ it applies more of the
    correction than SAM itself, in a direction measured up to k - 1 steps earlier."""
    ratios = []
    for rho in (0.1, 1e-4):
        problem = Problem()
        opt = arsam.LookSAM(problem.parameters(), torch.optim.SGD, rho=rho, k=2, alpha=0.7,
                            lr=0.1)
        w0 = problem.at()
        opt.step(problem.closure)  # SAM step: stores g_v
        g, g_s = flat(problem.grad(w0)), flat(sam_grad(problem, w0, rho))
        ratios.append(((g_s - (g_s @ g) / (g @ g) * g).norm() / g.norm()).item())  # SAM's r
        assert float(opt.stats["gv_ratio"]) == pytest.approx(ratios[-1], rel=1e-12)
        w1 = problem.at()
        opt.step(problem.closure)  # reuse step
        g1 = flat(problem.grad(w1))
        correction = (flat(w1) - flat(problem.at())) / 0.1 - g1
        torch.testing.assert_close(correction.norm(), 0.7 * g1.norm(), **TIGHT)
    assert ratios[0] > 0.01
    assert ratios[1] / ratios[0] == pytest.approx(1e-3, rel=1e-6)  # r ∝ ρ, the correction not


@pytest.mark.parametrize("kwargs, message", [
    (dict(k=0), r"k must be an int >= 1, got 0"),
    (dict(alpha=-0.5), r"alpha must be a number >= 0, got -0.5"),
])
def test_looksam_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        arsam.LookSAM(Problem().parameters(), torch.optim.SGD, lr=0.1, **kwargs)
