"""Tests of dlkit.generative's diffusion model: forward process, respacing, training step, sampler."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dlkit.generative import (DiffusionStep, NoiseSchedule, TinyUNet, diffusion_validate,
                              q_sample, sample, timestep_embedding, to_image_range,
                              to_model_range)
from dlkit.train import fit

# --- the forward process ------------------------------------------------------------------ #


def test_alpha_bar_is_the_running_product_of_one_minus_beta():
    s = NoiseSchedule.linear(100, 1e-3, 0.05)
    assert s.T == 100 and s.betas[0].item() == pytest.approx(1e-3)
    assert s.betas[-1].item() == pytest.approx(0.05)
    manual, prod = [], 1.0
    for b in s.betas.tolist():
        prod *= 1 - b
        manual.append(prod)
    torch.testing.assert_close(s.alpha_bars, torch.tensor(manual, dtype=torch.float64))
    signal, sigma = s.coefficients(torch.tensor([0, 50, 99]))
    torch.testing.assert_close(signal ** 2 + sigma ** 2, torch.ones(3, dtype=torch.float64))


def test_the_closed_form_matches_simulating_the_chain_step_by_step():
    # x_t = sqrt(1 - β_t) x_{t-1} + sqrt(β_t) ε_t, t steps, against one draw from
    # N(sqrt(ᾱ_t) x_0, 1 - ᾱ_t): the two means and variances agree within sampling error.
    s, n, x0 = NoiseSchedule.linear(200, 1e-3, 0.04), 200_000, 1.5
    g = torch.Generator().manual_seed(0)
    x = torch.full((n,), x0, dtype=torch.float64)
    for t in range(s.T):
        x = (1 - s.betas[t]).sqrt() * x + s.betas[t].sqrt() * torch.randn(n, generator=g,
                                                                            dtype=torch.float64)
        if t in (9, 99, 199):
            a = s.alpha_bars[t].item()
            mean, var = math.sqrt(a) * x0, 1 - a
            assert abs(x.mean().item() - mean) < 4 * math.sqrt(var / n), t
            assert abs(x.var().item() - var) < 4 * var * math.sqrt(2 / n), t
            one = q_sample(torch.full((n, 1), x0, dtype=torch.float64),
                           torch.full((n,), t), s, torch.randn(n, 1, generator=g,
                                                               dtype=torch.float64))
            assert abs(one.mean().item() - x.mean().item()) < 6 * math.sqrt(var / n)
            assert abs(one.var().item() - x.var().item()) < 6 * var * math.sqrt(2 / n)


def test_q_sample_applies_each_images_own_step_and_checks_shapes():
    s = NoiseSchedule.linear(10)
    x0, noise = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    out = q_sample(x0, torch.tensor([0, 9]), s, noise)
    assert out[0].unique().item() == pytest.approx(s.alpha_bars[0].sqrt().item())
    assert out[1].unique().item() == pytest.approx(s.alpha_bars[9].sqrt().item())
    with pytest.raises(ValueError, match="expected noise of shape"):
        q_sample(x0, torch.tensor([0]), s, noise)


def test_the_cosine_schedule_decreases_and_caps_beta():
    s = NoiseSchedule.cosine(1000)
    assert bool((s.alpha_bars[1:] < s.alpha_bars[:-1]).all())
    assert s.betas.max().item() <= 0.999 and s.alpha_bars[-1].item() < 1e-4


def test_a_schedule_refuses_betas_outside_zero_one():
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        NoiseSchedule(torch.tensor([0.1, 1.0], dtype=torch.float64), torch.arange(2))
    with pytest.raises(ValueError, match="at least 1"):
        NoiseSchedule.linear(0)


def test_respacing_keeps_alpha_bar_at_the_kept_steps():
    s = NoiseSchedule.linear(1000)
    r = s.respace(50)
    assert r.T == 50 and r.timesteps[0].item() == 0 and r.timesteps[-1].item() == 999
    torch.testing.assert_close(r.alpha_bars, s.alpha_bars[r.timesteps])
    full = s.respace(1000)
    torch.testing.assert_close(full.betas, s.betas)
    assert torch.equal(full.timesteps, s.timesteps)
    with pytest.raises(ValueError, match="between 1 and T"):
        s.respace(1001)


def test_image_and_model_ranges_are_inverse():
    x = torch.rand(3, 1, 4, 4)
    torch.testing.assert_close(to_image_range(to_model_range(x)), x)
    assert to_model_range(torch.zeros(1)).item() == -1 and to_model_range(torch.ones(1)).item() == 1


# --- the training step --------------------------------------------------------------------- #


def test_labels_are_dropped_to_the_null_class_at_the_stated_rate():
    s = NoiseSchedule.linear(100)
    x0, y = torch.zeros(20_000, 1, 4, 4), torch.randint(0, 10, (20_000,))
    _, t, labels, _ = DiffusionStep(s, num_classes=10, p_uncond=0.2, seed=1).targets(x0, y)
    dropped = (labels == 10).float().mean().item()
    assert abs(dropped - 0.2) < 4 * math.sqrt(0.2 * 0.8 / 20_000)
    assert torch.equal(labels[labels != 10], y[labels != 10])
    assert t.min().item() == 0 and t.max().item() == 99
    _, _, kept, _ = DiffusionStep(s, num_classes=10, p_uncond=0.0).targets(x0, y)
    assert torch.equal(kept, y)
    _, _, none, _ = DiffusionStep(s, num_classes=None).targets(x0, y)
    assert none is None
    with pytest.raises(ValueError, match="needs \\(images, labels\\)"):
        DiffusionStep(s, num_classes=10).targets(x0, None)
    with pytest.raises(ValueError, match="p_uncond"):
        DiffusionStep(s, p_uncond=1.5)


def test_the_diffusion_step_trains_through_fit_and_validates_on_fixed_draws():
    torch.manual_seed(0)
    s = NoiseSchedule.linear(50)
    X, y = torch.rand(64, 1, 8, 8), torch.randint(0, 3, (64,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=16)
    model = TinyUNet(width=8, num_classes=3, emb_dim=16)
    validate = diffusion_validate(s, num_classes=3, seed=5)
    before = validate(model, loader, torch.device("cpu"))["loss"]
    assert before == validate(model, loader, torch.device("cpu"))["loss"]  # same draws
    assert before == pytest.approx(1.0, abs=0.05)  # ε ~ N(0, 1) against a zero prediction
    h = fit(model, loader, loader, epochs=3, lr=3e-3, device="cpu", progress=False,
            verbose=False, step=DiffusionStep(s, num_classes=3), validate=validate)
    assert all(math.isfinite(v) for v in h.train_loss)
    assert h.val_loss[-1] < before


# --- the network --------------------------------------------------------------------------- #


def test_timestep_embedding_is_cos_then_sin():
    e = timestep_embedding(torch.tensor([0, 3]), 8)
    assert e.shape == (2, 8)
    torch.testing.assert_close(e[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    torch.testing.assert_close(e[1, 0], torch.cos(torch.tensor(3.0)))
    with pytest.raises(ValueError, match="even"):
        timestep_embedding(torch.tensor([1]), 7)


def test_the_unet_keeps_the_image_shape_and_uses_the_label():
    torch.manual_seed(0)
    net = TinyUNet(width=8, num_classes=4, emb_dim=16)
    nn.init.normal_(net.out[-1].weight)  # the zero-initialised head would hide the label
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([3, 500])
    out = net(x, t, torch.tensor([0, 1]))
    assert out.shape == x.shape
    assert not torch.allclose(out, net(x, t, torch.tensor([2, 3])))
    torch.testing.assert_close(net(x, t), net(x, t, torch.tensor([4, 4])))  # None: null class
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 1, 30, 30), t[:1])


def test_a_fresh_unet_predicts_zero_noise():
    out = TinyUNet(width=8, emb_dim=16)(torch.randn(2, 1, 8, 8), torch.tensor([1, 2]))
    assert out.abs().max().item() == 0


# --- the sampler --------------------------------------------------------------------------- #


class _Oracle(nn.Module):
    """The exact ε of a data distribution that is a single image ``x0`` (in the model range)."""

    def __init__(self, schedule: NoiseSchedule, x0: torch.Tensor) -> None:
        super().__init__()
        self.a = schedule.alpha_bars.float()
        self.x0 = x0
        self.seen: list[int] = []
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x, t, y=None):
        self.seen.append(int(t[0]))
        a = self.a[t].view(-1, 1, 1, 1)
        return (x - a.sqrt() * self.x0) / (1 - a).sqrt()


@pytest.mark.parametrize("steps", [1000, 50, 7])
def test_sampling_with_the_exact_noise_returns_the_data_and_passes_original_timesteps(steps):
    s = NoiseSchedule.linear(1000)
    x0 = torch.linspace(-0.8, 0.8, 16).view(1, 1, 4, 4)
    oracle = _Oracle(s, x0)
    r = s.respace(steps)
    images = sample(oracle, r, (3, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(images, to_image_range(x0).expand(3, 1, 4, 4), atol=1e-4, rtol=0)
    assert oracle.seen == r.timesteps.flip(0).tolist()  # from T-1 down to 0


class _Linear(nn.Module):
    """ε = k·x plus a per-class constant (the null class has its own), for exact comparisons."""

    def __init__(self, per_class: torch.Tensor, k: float = 0.3) -> None:
        super().__init__()
        self.per_class, self.k = per_class, k
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x, t, y=None):
        return self.k * x + self.per_class[y].view(-1, 1, 1, 1)


def test_the_sampler_without_clipping_follows_the_papers_update():
    s = NoiseSchedule.linear(3, 0.1, 0.3)
    model = _Linear(torch.zeros(1))
    y = torch.zeros(2, dtype=torch.long)
    got = sample(model, s, (2, 1, 2, 2), labels=y, clip=False,
                 generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 1, 2, 2, generator=g)
    a = s.alpha_bars
    for t in (2, 1, 0):
        b, eps = s.betas[t].item(), model(x, None, y)
        x = (x - b / math.sqrt(1 - a[t].item()) * eps) / math.sqrt(1 - b)  # eq. 11, Ho et al.
        if t > 0:
            var = (1 - a[t - 1].item()) / (1 - a[t].item()) * b
            x = x + math.sqrt(var) * torch.randn(2, 1, 2, 2, generator=g)
    torch.testing.assert_close(got, to_image_range(x), atol=1e-5, rtol=0)


def test_guidance_combines_the_conditional_and_unconditional_predictions():
    s = NoiseSchedule.linear(20).respace(5)
    per_class = torch.tensor([0.4, -0.2, 0.1])  # classes 0, 1 and the null class 2
    y = torch.tensor([0, 1, 1])
    for scale in (0.0, 1.0, 3.0):
        guided = sample(_Linear(per_class), s, (3, 1, 2, 2), labels=y, guidance=scale,
                        num_classes=2, generator=torch.Generator().manual_seed(1), clip=False)
        # The same model with its class constants already mixed: ε_∅ + s (ε_y - ε_∅).
        mixed = per_class[2] + scale * (per_class - per_class[2])
        mixed[2] = per_class[2]
        plain = sample(_Linear(mixed), s, (3, 1, 2, 2), labels=y,
                       generator=torch.Generator().manual_seed(1), clip=False)
        torch.testing.assert_close(guided, plain, atol=1e-5, rtol=0)


def test_samples_are_reproducible_and_in_range():
    torch.manual_seed(0)
    net = TinyUNet(width=8, num_classes=2, emb_dim=16)
    nn.init.normal_(net.out[-1].weight, std=0.1)
    s = NoiseSchedule.linear(100).respace(10)
    y = torch.tensor([0, 1])

    def draw(seed):
        return sample(net, s, (2, 1, 8, 8), labels=y, guidance=2.0, num_classes=2,
                      generator=torch.Generator().manual_seed(seed))

    a, b, c = draw(0), draw(0), draw(1)
    assert a.shape == (2, 1, 8, 8) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    images, kept = sample(net, s, (2, 1, 8, 8), labels=y, return_steps=(9, 0),
                          generator=torch.Generator().manual_seed(0))
    assert [t for t, _ in kept] == [99, 0] and torch.equal(kept[-1][1], images)


def test_the_sampler_says_what_guidance_needs():
    net = TinyUNet(width=8, num_classes=2, emb_dim=16)
    s = NoiseSchedule.linear(10)
    with pytest.raises(ValueError, match="needs labels and num_classes"):
        sample(net, s, (2, 1, 8, 8), guidance=2.0)
    with pytest.raises(ValueError, match="expected 2 labels"):
        sample(net, s, (2, 1, 8, 8), labels=torch.tensor([0]))


def test_the_guidance_explorer_draws_and_redraws():
    from dlkit.widgets.generative import guidance_explorer, plot_guidance

    torch.manual_seed(0)
    net = TinyUNet(width=8, num_classes=3, emb_dim=16)
    nn.init.normal_(net.out[-1].weight, std=0.1)
    s = NoiseSchedule.linear(50)
    fig = plot_guidance(net, s, ["a", "b", "c"], 1, (0.0, 2.0), steps=3, n=4)
    assert len(fig.axes) == 8
    explorer = guidance_explorer(net, s, ["a", "b", "c"], steps=5)
    first = explorer.png
    assert first and explorer._repr_mimebundle_()["text/plain"].startswith("Guidance explorer")
    explorer.controls["scale"].value = 6.0
    assert explorer.png != first
