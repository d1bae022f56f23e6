"""Optimizers, clipping and schedules against torch.optim: same parameters, same gradients."""
import math

import numpy as np
import pytest

from fastseq import optim
from fastseq.checking import max_error
from fastseq.optim import clip_grad_norm_
from fastseq.parameter import Parameter

torch = pytest.importorskip("torch", reason="torch is needed to compare with torch.optim")

SHAPES = [(3, 4), (5,), (2, 1, 3)]

# (fastseq class, torch class, options): every option of every optimizer appears.
CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, weight_decay=0.1, maximize=True)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1, maximize=True)),
    ("AdamW", dict()),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.01, betas=(0.5, 0.9), eps=1e-4, maximize=True)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.01, maximize=True)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.5, eps=1e-6)),
    ("Adagrad", dict(lr=0.1, weight_decay=0.1, lr_decay=0.01, maximize=True)),
]


def _pair(seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]
    ours = [Parameter(v) for v in values]
    theirs = [torch.tensor(v, requires_grad=True) for v in values]
    return rng, ours, theirs


def _set_grads(rng, ours, theirs, scale=1.0):
    for p, t in zip(ours, theirs):
        g = scale * rng.standard_normal(p.shape).astype(p.dtype)
        p.grad[...] = g
        t.grad = torch.tensor(g)


def _max_rel(ours, theirs):
    return max(max_error(p.data, t.detach().numpy()) for p, t in zip(ours, theirs))


@pytest.mark.parametrize("name, options", CASES, ids=[f"{n}-{o}" for n, o in CASES])
def test_optimizer_matches_torch_20_steps(name, options):
    rng, ours, theirs = _pair(0)
    opt = getattr(optim, name)(ours, **options)
    topt = getattr(torch.optim, name)(theirs, **options)
    for step in range(20):
        _set_grads(rng, ours, theirs)
        opt.step()
        topt.step()
        err = _max_rel(ours, theirs)
        assert err <= 1e-12, f"{name}{options} step {step}: err {err:.3e}"


def test_param_groups_and_state_dict_round_trip():
    rng, ours, theirs = _pair(1)
    groups = [{"params": ours[:2]}, {"params": ours[2:], "lr": 0.5, "momentum": 0.5}]
    tgroups = [{"params": theirs[:2]}, {"params": theirs[2:], "lr": 0.5, "momentum": 0.5}]
    opt = optim.SGD(groups, lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(tgroups, lr=0.1, momentum=0.9)
    for _ in range(3):
        _set_grads(rng, ours, theirs)
        opt.step()
        topt.step()
    sd = opt.state_dict()
    assert sd["param_groups"][1]["params"] == [2]
    assert [g["lr"] for g in sd["param_groups"]] == [0.1, 0.5]
    # a fresh optimizer restored from the state dict continues identically
    opt2 = optim.SGD([{"params": ours[:2]}, {"params": ours[2:]}], lr=1.0)
    opt2.load_state_dict(sd)
    for _ in range(3):
        _set_grads(rng, ours, theirs)
        opt2.step()
        topt.step()
    assert _max_rel(ours, theirs) <= 1e-12


def test_adam_state_dict_resumes_and_is_a_copy():
    rng, ours, theirs = _pair(2)
    opt = optim.Adam(ours, lr=0.01, amsgrad=True)
    topt = torch.optim.Adam(theirs, lr=0.01, amsgrad=True)
    for _ in range(4):
        _set_grads(rng, ours, theirs)
        opt.step()
        topt.step()
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"][...] = 123.0  # a copy: the optimizer is untouched
    assert not np.any(opt.state[ours[0]]["exp_avg"] == 123.0)
    sd = opt.state_dict()
    opt = optim.Adam(ours, lr=0.01, amsgrad=True)
    opt.load_state_dict(sd)
    for _ in range(4):
        _set_grads(rng, ours, theirs)
        opt.step()
        topt.step()
    assert _max_rel(ours, theirs) <= 1e-12


def test_zero_grad_and_none_grads_are_skipped():
    _, ours, _ = _pair(3)
    opt = optim.Adam(ours, lr=0.1)
    for p in ours:
        p.grad[...] = 1.0
    opt.zero_grad()
    assert all(np.all(p.grad == 0) for p in ours)
    opt.zero_grad(set_to_none=True)
    before = [p.data.copy() for p in ours]
    opt.step()  # nothing has a gradient: nothing moves, no state is created
    assert all(np.array_equal(b, p.data) for b, p in zip(before, ours))
    assert opt.state == {}


def test_optimizer_float32_params_stay_float32():
    rng, ours, theirs = _pair(4, np.float32)
    opt = optim.Adam(ours, lr=0.01)
    topt = torch.optim.Adam(theirs, lr=0.01)
    for _ in range(5):
        _set_grads(rng, ours, theirs)
        opt.step()
        topt.step()
    assert all(p.data.dtype == np.float32 for p in ours)
    assert _max_rel(ours, theirs) <= 1e-6


@pytest.mark.parametrize("bad", [
    lambda ps: optim.SGD(ps, lr=-1.0),
    lambda ps: optim.SGD(ps, lr=0.1, nesterov=True),
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
    lambda ps: optim.Adam(ps, betas=(1.0, 0.9)),
    lambda ps: optim.Adam(ps, eps=-1.0),
    lambda ps: optim.RMSprop(ps, alpha=-0.1),
    lambda ps: optim.Adagrad(ps, lr_decay=-0.1),
    lambda ps: optim.SGD([], lr=0.1),
])
def test_bad_options_raise(bad):
    _, ours, _ = _pair(5)
    with pytest.raises(ValueError):
        bad(ours)


def test_bad_params_raise():
    with pytest.raises(TypeError, match="Parameters"):
        optim.SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError, match="single"):
        optim.SGD(Parameter(np.zeros(3)), lr=0.1)
    p = Parameter(np.zeros(3))
    with pytest.raises(ValueError, match="more than one"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    opt = optim.SGD([p], lr=0.1)
    with pytest.raises(ValueError, match="groups"):
        opt.load_state_dict({"state": {}, "param_groups": []})


# --- clipping ------------------------------------------------------------------------

@pytest.mark.parametrize("max_norm", [0.1, 1.0, 1e3])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
def test_clip_grad_norm_matches_torch(max_norm, norm_type):
    rng, ours, theirs = _pair(6)
    _set_grads(rng, ours, theirs)
    total = clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    assert abs(total - float(ttotal)) <= 1e-12 * max(1.0, float(ttotal))
    for p, t in zip(ours, theirs):
        assert max_error(p.grad, t.grad.numpy()) <= 1e-12


def test_clip_grad_norm_single_parameter_and_nonfinite():
    p = Parameter(np.zeros(4))
    p.grad[...] = [3.0, 4.0, 0.0, 0.0]
    assert clip_grad_norm_(p, 1.0) == pytest.approx(5.0)
    assert np.linalg.norm(p.grad) == pytest.approx(1.0, rel=1e-6)
    p.grad[0] = np.inf
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_([p], 1.0, error_if_nonfinite=True)


# --- schedules -----------------------------------------------------------------------

@pytest.mark.parametrize("name, options", [
    ("StepLR", dict(step_size=3)),
    ("StepLR", dict(step_size=2, gamma=0.5)),
    ("CosineAnnealingLR", dict(T_max=5)),
    ("CosineAnnealingLR", dict(T_max=4, eta_min=0.01)),
])
def test_schedulers_match_torch(name, options):
    _, ours, theirs = _pair(7)
    opt = optim.SGD([{"params": ours[:1]}, {"params": ours[1:], "lr": 0.3}], lr=0.1)
    topt = torch.optim.SGD([{"params": theirs[:1]}, {"params": theirs[1:], "lr": 0.3}], lr=0.1)
    sched = getattr(optim, name)(opt, **options)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **options)
    assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-15)
    for epoch in range(17):  # past T_max: torch's schedule keeps oscillating
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
        ours_lr = [g["lr"] for g in opt.param_groups]
        theirs_lr = [g["lr"] for g in topt.param_groups]
        assert ours_lr == pytest.approx(theirs_lr, rel=1e-12, abs=1e-15), epoch
        assert sched.get_last_lr() == ours_lr
    state = sched.state_dict()
    assert "optimizer" not in state and state["last_epoch"] == 17
