"""Tests for dlkit.scratch.optim: each optimizer must retrace its torch.optim twin step by step."""

from __future__ import annotations

import copy
import inspect
import io
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlkit.scratch import optim as scratch

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"]
# torch.optim flags the scratch versions leave out on purpose.
TORCH_ONLY = {"maximize", "foreach", "fused", "capturable", "differentiable",
              "decoupled_weight_decay"}
STEPS = 300  # for the option grid; the tests around it train for fewer
SHORT, RESUME_AT = 150, 50
RTOL, ATOL = 1e-6, 1e-7


# --------------------------------------------------------------------------- #
# Option grids: the cartesian product of every option's "off" and "on" value
# --------------------------------------------------------------------------- #
def _grid(**options: tuple[Any, ...]) -> Iterator[dict[str, Any]]:
    for values in itertools.product(*options.values()):
        yield dict(zip(options, values))


def _sgd_cases() -> Iterator[dict[str, Any]]:
    for kw in _grid(momentum=(0, 0.9), dampening=(0, 0.1), nesterov=(False, True),
                    weight_decay=(0, 0.01)):
        if kw["nesterov"] and (kw["momentum"] == 0 or kw["dampening"] != 0):
            continue  # invalid combination (tested in the validation tests)
        yield {"lr": 0.05, **kw}


CASES: list[tuple[str, dict[str, Any]]] = [
    *(("SGD", kw) for kw in _sgd_cases()),
    *(("Adagrad", kw) for kw in _grid(lr=(0.05,), lr_decay=(0, 0.01), weight_decay=(0, 0.01),
                                        initial_accumulator_value=(0, 0.1))),
    *(("RMSprop", kw) for kw in _grid(lr=(1e-3,), momentum=(0, 0.9), centered=(False, True),
                                        weight_decay=(0, 0.01))),
    *(("Adam", kw) for kw in _grid(amsgrad=(False, True), weight_decay=(0, 0.01))),
    *(("AdamW", kw) for kw in _grid(amsgrad=(False, True), weight_decay=(0, 0.01))),
]

# One case per optimizer with every option switched on, for the tests that are not about options.
RICH: dict[str, dict[str, Any]] = {
    "SGD": {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    "Adagrad": {"lr": 0.05, "lr_decay": 0.01, "weight_decay": 0.01,
                "initial_accumulator_value": 0.1},
    "RMSprop": {"lr": 1e-3, "momentum": 0.9, "centered": True, "weight_decay": 0.01},
    "Adam": {"amsgrad": True, "weight_decay": 0.01},
    "AdamW": {"amsgrad": True, "weight_decay": 0.01},
}


def _case_id(case: tuple[str, dict[str, Any]]) -> str:
    name, kw = case
    return name + "-" + ",".join(f"{k}={v}" for k, v in kw.items())


# --------------------------------------------------------------------------- #
# Helpers: a small non-convex regression problem, trained by both implementations
# --------------------------------------------------------------------------- #
_g = torch.Generator().manual_seed(0)
X = torch.randn(32, 10, generator=_g)
Y = torch.randn(32, 1, generator=_g)


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 10), nn.Tanh(), nn.Linear(10, 1))


def _loss(model: nn.Module) -> torch.Tensor:
    return F.mse_loss(model(X), Y)


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    for _ in range(steps):
        optimizer.zero_grad()
        _loss(model).backward()
        optimizer.step()


def _torch_twin(name: str, params: Any, **kwargs: Any) -> torch.optim.Optimizer:
    # foreach=False pins torch to its single-tensor code path (already the CPU default).
    return getattr(torch.optim, name)(params, foreach=False, **kwargs)


def _assert_same_trajectory(ours: nn.Module, theirs: nn.Module) -> None:
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=RTOL, atol=ATOL)


def _assert_same_state(ours: torch.optim.Optimizer, theirs: torch.optim.Optimizer) -> None:
    """Same state names and values per parameter (steps compared as numbers)."""
    for group_a, group_b in zip(ours.param_groups, theirs.param_groups, strict=True):
        for p, q in zip(group_a["params"], group_b["params"], strict=True):
            state_a, state_b = ours.state[p], theirs.state[q]
            assert set(state_a) == set(state_b)
            for key in state_a:
                if key == "step":
                    assert float(state_a[key]) == float(state_b[key])
                else:
                    torch.testing.assert_close(state_a[key], state_b[key], rtol=RTOL, atol=ATOL)


def _reload(state_dict: dict[str, Any]) -> dict[str, Any]:
    """A torch.save / torch.load round trip, as when resuming from a checkpoint file."""
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer)


# --------------------------------------------------------------------------- #
# The main bar: same trajectory as torch.optim, for every option combination
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_trajectory_matches_torch(case):
    name, kwargs = case
    ours, theirs = _model(), _model()
    start = [p.detach().clone() for p in ours.parameters()]
    opt_ours = getattr(scratch, name)(ours.parameters(), **kwargs)
    opt_theirs = _torch_twin(name, theirs.parameters(), **kwargs)

    _train(ours, opt_ours, STEPS)
    _train(theirs, opt_theirs, STEPS)

    _assert_same_trajectory(ours, theirs)
    _assert_same_state(opt_ours, opt_theirs)
    moved = max((p - p0).abs().max().item() for p, p0 in zip(ours.parameters(), start))
    assert moved > 1e-2, "the parameters barely moved: the comparison would prove little"


def test_cases_cover_every_option():
    covered = {(name, key) for name, kw in CASES for key in kw}
    for name in NAMES:
        options = set(inspect.signature(getattr(scratch, name)).parameters) - {"params", "lr"}
        options -= {"eps", "alpha", "betas"}  # continuous constants, not switches
        assert {(name, o) for o in options} <= covered


@pytest.mark.parametrize("name", NAMES)
def test_param_groups_with_their_own_options(name):
    ours, theirs = _model(), _model()

    def groups(model: nn.Sequential) -> list[dict[str, Any]]:
        return [{"params": model[0].parameters()},
                {"params": model[2].parameters(), "lr": 0.5 * RICH[name].get("lr", 1e-3),
                 "weight_decay": 0.0}]

    opt_ours = getattr(scratch, name)(groups(ours), **RICH[name])
    opt_theirs = _torch_twin(name, groups(theirs), **RICH[name])
    _train(ours, opt_ours, SHORT)
    _train(theirs, opt_theirs, SHORT)
    _assert_same_trajectory(ours, theirs)


# --------------------------------------------------------------------------- #
# Same constructor, same defaults
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", NAMES)
def test_signature_matches_torch(name):
    ours = inspect.signature(getattr(scratch, name)).parameters
    theirs = inspect.signature(getattr(torch.optim, name)).parameters
    # Same names in the same positional order, then only torch's extra flags.
    assert list(theirs)[: len(ours)] == list(ours)
    assert set(list(theirs)[len(ours):]) <= TORCH_ONLY
    for arg in ours:
        assert ours[arg].default == theirs[arg].default, arg


@pytest.mark.parametrize("name", NAMES)
def test_defaults_match_torch(name):
    params = [nn.Parameter(torch.zeros(3))]
    ours = getattr(scratch, name)(params).defaults
    theirs = getattr(torch.optim, name)(params).defaults
    assert set(ours) <= set(theirs)
    assert {k: theirs[k] for k in ours} == ours


def test_torch_only_flags_are_rejected():
    with pytest.raises(TypeError, match="maximize"):
        scratch.Adam([nn.Parameter(torch.zeros(3))], maximize=True)


# --------------------------------------------------------------------------- #
# state_dict
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    model, reference = _model(), _model()
    optimizer = getattr(scratch, name)(model.parameters(), **RICH[name])
    _train(model, optimizer, RESUME_AT)
    checkpoint = _reload(optimizer.state_dict())

    resumed = copy.deepcopy(model)
    fresh = getattr(scratch, name)(resumed.parameters(), **RICH[name])
    fresh.load_state_dict(checkpoint)
    _train(resumed, fresh, SHORT - RESUME_AT)

    _train(reference, _torch_twin(name, reference.parameters(), **RICH[name]), SHORT)
    _assert_same_trajectory(resumed, reference)


@pytest.mark.parametrize("first, then", [("torch", "scratch"), ("scratch", "torch")])
@pytest.mark.parametrize("name", NAMES)
def test_state_dicts_interchange_with_torch(name, first, then):
    """Same state names, so a checkpoint of one loads into the other and training continues."""

    def make(impl: str, params: Any) -> torch.optim.Optimizer:
        if impl == "torch":
            return _torch_twin(name, params, **RICH[name])
        return getattr(scratch, name)(params, **RICH[name])

    model, reference = _model(), _model()
    optimizer = make(first, model.parameters())
    _train(model, optimizer, RESUME_AT)
    continued = make(then, model.parameters())
    continued.load_state_dict(_reload(optimizer.state_dict()))
    _train(model, continued, SHORT - RESUME_AT)

    _train(reference, make("torch", reference.parameters()), SHORT)
    _assert_same_trajectory(model, reference)


# --------------------------------------------------------------------------- #
# Argument validation
# --------------------------------------------------------------------------- #
INVALID = [
    ("SGD", {"lr": -0.1}, "Invalid learning rate: -0.1 (expected lr >= 0)"),
    ("SGD", {"momentum": -0.5}, "expected momentum >= 0"),
    ("SGD", {"weight_decay": -1e-4}, "expected weight_decay >= 0"),
    ("SGD", {"nesterov": True}, "Nesterov momentum requires a momentum and zero dampening"),
    ("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "dampening == 0"),
    ("Adagrad", {"lr": -1.0}, "expected lr >= 0"),
    ("Adagrad", {"lr_decay": -0.1}, "expected lr_decay >= 0"),
    ("Adagrad", {"weight_decay": -0.1}, "expected weight_decay >= 0"),
    ("Adagrad", {"initial_accumulator_value": -0.1}, "expected initial_accumulator_value >= 0"),
    ("Adagrad", {"eps": -1e-10}, "expected eps >= 0"),
    ("RMSprop", {"lr": -1.0}, "expected lr >= 0"),
    ("RMSprop", {"alpha": -0.5}, "expected alpha >= 0"),
    ("RMSprop", {"eps": -1e-8}, "expected eps >= 0"),
    ("RMSprop", {"momentum": -0.9}, "expected momentum >= 0"),
    ("RMSprop", {"weight_decay": -0.1}, "expected weight_decay >= 0"),
    ("Adam", {"lr": float("nan")}, "Invalid learning rate: nan"),
    ("Adam", {"betas": (1.0, 0.999)}, "beta parameter at index 0: 1.0 (expected 0 <= beta1 < 1)"),
    ("Adam", {"betas": (-0.1, 0.999)}, "index 0"),
    ("Adam", {"betas": (0.9, 1.0)}, "beta parameter at index 1: 1.0 (expected 0 <= beta2 < 1)"),
    ("Adam", {"eps": -1e-8}, "expected eps >= 0"),
    ("Adam", {"weight_decay": -0.1}, "expected weight_decay >= 0"),
    ("AdamW", {"lr": -1e-3}, "expected lr >= 0"),
    ("AdamW", {"betas": (0.9, 1.5)}, "index 1"),
    ("AdamW", {"weight_decay": -0.01}, "expected weight_decay >= 0"),
]


@pytest.mark.parametrize("name, kwargs, fragment", INVALID,
                         ids=[f"{n}-{k}" for n, k, _ in INVALID])
def test_invalid_arguments(name, kwargs, fragment):
    params = [nn.Parameter(torch.zeros(3))]
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        getattr(scratch, name)(params, **kwargs)
    with pytest.raises(ValueError):  # ... and torch rejects the same arguments
        getattr(torch.optim, name)(params, **kwargs)


# --------------------------------------------------------------------------- #
# Parameters without gradients, closures, sparse gradients
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", NAMES)
def test_params_without_grad_are_skipped(name):
    model = _model()
    unused = nn.Parameter(torch.ones(4))  # never in the loss: its .grad stays None
    optimizer = getattr(scratch, name)([*model.parameters(), unused], **RICH[name])
    _train(model, optimizer, 5)
    assert unused.grad is None
    assert torch.equal(unused, torch.ones(4))
    assert unused not in optimizer.state


@pytest.mark.parametrize("name", NAMES)
def test_step_with_closure_returns_the_loss(name):
    ours, theirs = _model(), _model()
    opt_ours = getattr(scratch, name)(ours.parameters(), **RICH[name])
    opt_theirs = _torch_twin(name, theirs.parameters(), **RICH[name])

    def closure_for(model: nn.Module, optimizer: torch.optim.Optimizer):
        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = _loss(model)
            loss.backward()  # needs autograd on, although step() runs under no_grad
            return loss
        return closure

    for _ in range(20):
        before = _loss(ours).item()
        loss_ours = opt_ours.step(closure_for(ours, opt_ours))
        loss_theirs = opt_theirs.step(closure_for(theirs, opt_theirs))
        assert isinstance(loss_ours, torch.Tensor)
        assert loss_ours.item() == pytest.approx(before)
        torch.testing.assert_close(loss_ours, loss_theirs, rtol=RTOL, atol=ATOL)
    _assert_same_trajectory(ours, theirs)
    assert opt_ours.step() is None  # no closure, no loss


@pytest.mark.parametrize("name", NAMES)
def test_sparse_gradients_raise(name):
    embedding = nn.Embedding(5, 3, sparse=True)
    optimizer = getattr(scratch, name)(embedding.parameters())
    embedding(torch.tensor([0, 2])).sum().backward()
    with pytest.raises(RuntimeError, match=f"scratch {name} does not support sparse gradients"):
        optimizer.step()


def test_complex_parameters_raise():
    z = nn.Parameter(torch.zeros(3, dtype=torch.complex64))
    z.grad = torch.ones_like(z)
    with pytest.raises(RuntimeError, match="complex"):
        scratch.Adam([z]).step()


def test_works_with_an_lr_scheduler():
    ours, theirs = _model(), _model()
    opt_ours = scratch.SGD(ours.parameters(), lr=0.1, momentum=0.9)
    opt_theirs = _torch_twin("SGD", theirs.parameters(), lr=0.1, momentum=0.9)
    sched_ours = torch.optim.lr_scheduler.StepLR(opt_ours, step_size=10, gamma=0.5)
    sched_theirs = torch.optim.lr_scheduler.StepLR(opt_theirs, step_size=10, gamma=0.5)
    for _ in range(30):
        _train(ours, opt_ours, 1)
        _train(theirs, opt_theirs, 1)
        sched_ours.step()
        sched_theirs.step()
    assert opt_ours.param_groups[0]["lr"] == pytest.approx(0.0125)
    _assert_same_trajectory(ours, theirs)
