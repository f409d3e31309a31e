"""dlkit.generative: the Fréchet distance, the VAE's KL and gradient estimators, the GAN losses,
and the training steps of the autoencoder, the VAE and the GAN through fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlkit.generative.autoencoder import (ConvAutoencoder, add_noise, encode_all,
                                          reconstruction_step, reconstruction_validate)
from dlkit.generative.evaluation import (class_match, frechet_distance, frechet_distance_of,
                                         gaussian_stats, nearest_neighbours)
from dlkit.generative.gan import (GAN, GANStep, discriminator_loss, generator_loss,
                                  generator_loss_gradient)
from dlkit.generative.vae import (ConvVAE, VAEStep, bits_per_dim, gaussian_kl,
                                  gaussian_kl_monte_carlo, negative_elbo, reparam_gradient,
                                  reparameterize, score_function_gradient, vae_validate)
from dlkit.train import Callback, fit

pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=_gen(seed))


def _prototype_images(n: int = 64, seed: int = 0) -> torch.Tensor:
    # Four random binary patterns plus a little noise: a set an autoencoder can learn.
    g = _gen(seed)
    protos = (torch.rand(4, 1, 28, 28, generator=g) > 0.5).float()
    pick = torch.randint(0, 4, (n,), generator=g)
    return (protos[pick] + 0.05 * torch.randn(n, 1, 28, 28, generator=g)).clamp(0, 1)


def _spd(d: int, seed: int) -> torch.Tensor:
    m = torch.randn(d, d, generator=_gen(seed), dtype=torch.float64)
    return m @ m.T + 0.1 * torch.eye(d, dtype=torch.float64)


def _params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _changed(before: list[torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, module.parameters()))


# --- Fréchet distance ----------------------------------------------------------------------- #
def test_frechet_distance_of_diagonal_gaussians_has_its_closed_form():
    g = _gen(1)
    mu1, mu2 = torch.randn(6, generator=g), torch.randn(6, generator=g)
    a, b = torch.rand(6, generator=g) + 0.1, torch.rand(6, generator=g) + 0.1
    expected = ((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum()
    got = frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b))
    assert got == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_frechet_distance_matches_scipy_sqrtm_on_random_spd_matrices(seed):
    d = 8
    s1, s2 = _spd(d, seed), _spd(d, seed + 100)
    mu1 = torch.randn(d, generator=_gen(seed + 200), dtype=torch.float64)
    mu2 = torch.randn(d, generator=_gen(seed + 300), dtype=torch.float64)
    a, b = s1.numpy(), s2.numpy()
    covmean = scipy.linalg.sqrtm(a @ b).real
    expected = float(((mu1 - mu2) ** 2).sum()) + np.trace(a) + np.trace(b) - 2 * np.trace(covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_sample_estimate_is_close_to_the_distance_between_the_true_gaussians():
    d, n = 4, 20_000
    mu1 = torch.tensor([0.0, 1.0, -1.0, 0.5], dtype=torch.float64)
    mu2 = torch.tensor([0.5, 0.0, -1.0, 1.5], dtype=torch.float64)
    s1, s2 = _spd(d, 7) / 4, _spd(d, 8) / 4
    true = frechet_distance(mu1, s1, mu2, s2)
    g = _gen(3)
    a = mu1 + torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(s1).T
    b = mu2 + torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(s2).T
    # Sampling error of the means (~ sqrt(tr S / n) ~ 0.01 each) and covariances: well under 5 %.
    assert frechet_distance_of(a, b) == pytest.approx(true, rel=0.05)
    assert true > 1.0


def test_frechet_distance_is_symmetric_and_zero_for_identical_sets():
    g = _gen(4)
    a = torch.randn(500, 16, generator=g)
    b = torch.randn(400, 16, generator=g) * 1.5 + 0.3
    assert frechet_distance_of(a, b) == pytest.approx(frechet_distance_of(b, a), rel=1e-9)
    assert abs(frechet_distance_of(a, a.clone())) < 1e-6
    assert frechet_distance_of(a, b) > 1.0


def test_gaussian_stats_are_the_mean_and_the_unbiased_covariance():
    x = torch.randn(50, 3, generator=_gen(5))
    mean, cov = gaussian_stats(x)
    assert mean.dtype == cov.dtype == torch.float64
    np.testing.assert_allclose(mean.numpy(), x.double().mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(cov.numpy(), np.cov(x.double().numpy(), rowvar=False), rtol=1e-10)
    assert gaussian_stats(x[:, :1])[1].shape == (1, 1)


def test_frechet_shape_errors_are_value_errors():
    eye = torch.eye(3)
    with pytest.raises(ValueError, match="means"):
        frechet_distance(torch.zeros(3), eye, torch.zeros(4), eye)
    with pytest.raises(ValueError, match="sigma2"):
        frechet_distance(torch.zeros(3), eye, torch.zeros(3), torch.eye(4))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        gaussian_stats(torch.zeros(10))
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_stats(torch.zeros(1, 3))
    with pytest.raises(ValueError):
        frechet_distance_of(torch.randn(10, 3), torch.randn(10, 4))


# --- VAE: KL, reparameterisation, gradient estimators --------------------------------------- #
def test_closed_form_kl_agrees_with_monte_carlo_within_three_standard_errors():
    g = _gen(6)
    mu = torch.randn(4, 5, generator=g, dtype=torch.float64)
    logvar = torch.empty(4, 5, dtype=torch.float64).uniform_(-1, 1, generator=g)
    n = 100_000
    mc = gaussian_kl_monte_carlo(mu, logvar, n, generator=g)
    exact = gaussian_kl(mu, logvar)
    # Per dim, log q - log p = const + mu s eps + (s² - 1) eps² / 2: variance mu² s² + (s² - 1)² / 2.
    s2 = logvar.exp()
    se = ((mu**2 * s2 + 0.5 * (s2 - 1) ** 2).sum(1) / n).sqrt()
    assert torch.all((mc - exact).abs() < 3 * se), (mc, exact, se)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, (0.5 * logvar).exp()), torch.distributions.Normal(0.0, 1.0))
    torch.testing.assert_close(exact, ref.sum(1))


def test_kl_is_zero_for_the_prior_itself():
    zeros = torch.zeros(3, 7)
    assert torch.equal(gaussian_kl(zeros, zeros), torch.zeros(3))
    with pytest.raises(ValueError):
        gaussian_kl(torch.zeros(3, 7), torch.zeros(3, 6))


def test_reparameterize_with_given_noise_and_its_gradient():
    mu = torch.tensor([[0.5, -1.0]], requires_grad=True)
    logvar = torch.tensor([[0.0, math.log(4.0)]], requires_grad=True)
    eps = torch.tensor([[1.0, -0.5]])
    z = reparameterize(mu, logvar, eps)
    torch.testing.assert_close(z, torch.tensor([[1.5, -2.0]]))
    z.sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones(1, 2))
    torch.testing.assert_close(logvar.grad, 0.5 * torch.tensor([[1.0, 2.0]]) * eps)
    z1 = reparameterize(mu, logvar, generator=_gen(9))
    assert torch.equal(z1, reparameterize(mu, logvar, generator=_gen(9)))
    with pytest.raises(ValueError):
        reparameterize(mu, logvar, torch.zeros(2))


def test_both_gradient_estimators_are_unbiased_and_score_function_has_larger_variance():
    mu, log_sigma, n, repeats = 0.7, -0.3, 2_000, 50
    sigma2 = math.exp(2 * log_sigma)
    true = np.array([2 * mu, 2 * sigma2])  # E[z²] = mu² + sigma²
    g = _gen(10)
    rep = np.array([reparam_gradient(lambda z: z**2, mu, log_sigma, n, g) for _ in range(repeats)])
    sf = np.array([score_function_gradient(lambda z: z**2, mu, log_sigma, n, g)
                   for _ in range(repeats)])
    for est in (rep, sf):
        se = est.std(0, ddof=1) / math.sqrt(repeats)
        assert np.all(np.abs(est.mean(0) - true) < 4 * se + 1e-12), (est.mean(0), true, se)
    # Per sample, Var of d/dmu: 4 sigma² ≈ 2.2 (reparameterised) vs about 15 (score function).
    assert np.all(sf.var(0) > 2 * rep.var(0)), (sf.var(0), rep.var(0))
    assert rep.mean(0) == pytest.approx(true, abs=0.02)


# --- VAE: loss, model, step ------------------------------------------------------------------ #
def test_negative_elbo_is_the_bernoulli_nll_of_binarised_images_plus_the_kl():
    g = _gen(11)
    x = torch.rand(5, 1, 28, 28, generator=g)
    logits = torch.randn(5, 1, 28, 28, generator=g)
    mu, logvar = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    terms = negative_elbo(logits, x, mu, logvar, beta=0.5)
    recon = F.binary_cross_entropy_with_logits(logits, (x > 0.5).float(), reduction="sum") / 5
    torch.testing.assert_close(terms["recon"], recon)
    torch.testing.assert_close(terms["kl"], gaussian_kl(mu, logvar).mean())
    torch.testing.assert_close(terms["loss"], recon + 0.5 * terms["kl"])
    with pytest.raises(ValueError):
        negative_elbo(logits[:, :, :27], x, mu, logvar)


def test_bits_per_dim():
    assert bits_per_dim(784 * math.log(2)) == pytest.approx(1.0)
    assert bits_per_dim(100.0) == pytest.approx(100.0 / (784 * math.log(2)))
    assert bits_per_dim(10.0, dims=10) == pytest.approx(1 / math.log(2))


def test_conv_vae_shapes_and_samples():
    torch.manual_seed(0)
    vae = ConvVAE(latent_dim=6, width=4)
    x = _images(3)
    logits, mu, logvar = vae(x)
    assert logits.shape == x.shape and mu.shape == logvar.shape == (3, 6)
    s = vae.sample(5, generator=_gen(12))
    assert s.shape == (5, 1, 28, 28) and s.min() >= 0 and s.max() <= 1
    assert torch.equal(s, vae.sample(5, generator=_gen(12)))
    assert vae.training
    with pytest.raises(ValueError):
        vae.encode(torch.zeros(2, 28, 28))


def test_vae_trains_and_validates_through_fit():
    torch.manual_seed(0)
    x = _images(64)
    vae = ConvVAE(latent_dim=4, width=4)
    train = DataLoader(TensorDataset(x, torch.zeros(64)), batch_size=32)
    val = DataLoader(TensorDataset(x[:32]), batch_size=16)
    h = fit(vae, train, val, epochs=1, step=VAEStep(beta=1.0), validate=vae_validate,
            device="cpu", progress=False, verbose=False)
    for name in ("train/recon", "train/kl", "val/recon", "val/kl"):
        assert math.isfinite(h.metrics[name][0]), name
    assert math.isfinite(h.train_loss[0]) and math.isfinite(h.val_loss[0])
    assert h.train_loss[0] == pytest.approx(h.metrics["train/recon"][0] + h.metrics["train/kl"][0])
    assert h.val_loss[0] == pytest.approx(h.metrics["val/recon"][0] + h.metrics["val/kl"][0])
    assert h.val_loss[0] > 0 and math.isnan(h.train_acc[0])


# --- GAN ------------------------------------------------------------------------------------- #
def test_gan_losses_against_hand_computed_values():
    def sig(v):
        return 1 / (1 + math.exp(-v))

    real, fake = torch.tensor([0.0, 2.0]), torch.tensor([-1.0, 1.0])
    expected = (-(math.log(sig(0)) + math.log(sig(2))) / 2
                - (math.log(1 - sig(-1)) + math.log(1 - sig(1))) / 2)
    assert discriminator_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)
    assert discriminator_loss(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(2 * math.log(2))
    minimax = (math.log(1 - sig(-1)) + math.log(1 - sig(1))) / 2
    non_sat = -(math.log(sig(-1)) + math.log(sig(1))) / 2
    assert generator_loss(fake, "minimax").item() == pytest.approx(minimax, rel=1e-6)
    assert generator_loss(fake, "non_saturating").item() == pytest.approx(non_sat, rel=1e-6)
    assert generator_loss(fake).item() == pytest.approx(non_sat, rel=1e-6)
    with pytest.raises(ValueError, match="kind"):
        generator_loss(fake, "wasserstein")


@pytest.mark.parametrize("kind", ["minimax", "non_saturating"])
def test_generator_loss_gradient_matches_autograd(kind):
    logits = torch.linspace(-10, 10, 41, dtype=torch.float64, requires_grad=True)
    (generator_loss(logits, kind) * len(logits)).backward()  # the loss is a mean
    torch.testing.assert_close(generator_loss_gradient(logits.detach(), kind), logits.grad)
    assert isinstance(generator_loss_gradient(0.0, kind), float)
    assert generator_loss_gradient(0.0, kind) == pytest.approx(-0.5)


def test_minimax_generator_loss_saturates_where_the_discriminator_rejects_fakes():
    assert abs(generator_loss_gradient(-6.0, "minimax")) < 0.01
    assert abs(generator_loss_gradient(-6.0, "non_saturating")) > 0.99


def _gan_run(d_lr: float, callbacks=(), epochs: int = 1):
    torch.manual_seed(0)
    gan = GAN(latent_dim=8, g_width=4, d_width=4)
    loader = DataLoader(TensorDataset(_images(64), torch.zeros(64)), batch_size=32)
    g_opt = torch.optim.Adam(gan.generator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(gan.discriminator.parameters(), lr=d_lr, betas=(0.5, 0.999))
    before_g, before_d = _params(gan.generator), _params(gan.discriminator)
    h = fit(gan, loader, epochs=epochs, optimizer=g_opt, step=GANStep(d_opt, latent_dim=8, seed=1),
            device="cpu", progress=False, verbose=False, callbacks=callbacks)
    return gan, h, before_g, before_d


def test_gan_step_trains_both_networks_and_records_its_terms():
    gan, h, before_g, before_d = _gan_run(d_lr=1e-3)
    for name in ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake"):
        assert math.isfinite(h.metrics[name][0]), name
    assert h.train_loss[0] == pytest.approx(h.metrics["train/g_loss"][0])
    assert 0 <= h.metrics["train/d_real"][0] <= 1 and 0 <= h.metrics["train/d_fake"][0] <= 1
    assert _changed(before_g, gan.generator) and _changed(before_d, gan.discriminator)
    s = gan.sample(6, generator=_gen(2))
    assert s.shape == (6, 1, 28, 28) and s.min() >= 0 and s.max() <= 1
    assert torch.equal(s, gan.sample(6, generator=_gen(2)))


def test_discriminator_changes_only_through_its_own_optimizer():
    gan, _, before_g, before_d = _gan_run(d_lr=0.0)
    assert not _changed(before_d, gan.discriminator)
    assert _changed(before_g, gan.generator)


class _GradientSpy(Callback):
    """Before every backward pass, whether D's and G's gradients are all cleared."""

    def __init__(self):
        self.seen: list[tuple[bool, bool]] = []

    def before_backward(self, loop):
        m = loop.model
        self.seen.append((all(p.grad is None for p in m.discriminator.parameters()),
                          all(p.grad is None for p in m.generator.parameters())))


def test_gradients_the_generator_step_leaves_on_d_are_cleared_before_ds_update():
    spy = _GradientSpy()
    _gan_run(d_lr=1e-3, callbacks=[spy])
    d_backwards, g_backwards = spy.seen[0::2], spy.seen[1::2]
    assert len(spy.seen) == 4  # 2 batches, a D and a G backward each
    assert all(d_clear for d_clear, _ in d_backwards)  # nothing left over from the G step
    assert all(g_clear for _, g_clear in g_backwards)
    assert not g_backwards[0][0]  # D's own gradients are still there at G's backward


def test_gan_step_refuses_an_optimizer_that_would_update_the_discriminator():
    gan = GAN(latent_dim=8, g_width=4, d_width=4)
    loader = DataLoader(TensorDataset(_images(8)), batch_size=8)
    d_opt = torch.optim.Adam(gan.discriminator.parameters())
    with pytest.raises(ValueError, match="generator.parameters"):
        fit(gan, loader, epochs=1, step=GANStep(d_opt, latent_dim=8), device="cpu",
            progress=False, verbose=False)  # fit's default optimizer holds every parameter


# --- autoencoder ----------------------------------------------------------------------------- #
def test_denoising_autoencoder_trains_through_fit_and_its_loss_decreases():
    torch.manual_seed(0)
    x = _prototype_images(64)
    ae = ConvAutoencoder(code_dim=4, width=8)
    loader = DataLoader(TensorDataset(x, x), batch_size=16, shuffle=True, generator=_gen(0))
    h = fit(ae, loader, DataLoader(TensorDataset(x, x), batch_size=64), epochs=8,
            optimizer=torch.optim.Adam(ae.parameters(), lr=1e-2), loss_fn=nn.MSELoss(),
            step=reconstruction_step, validate=reconstruction_validate,
            train_transform=add_noise(0.2), device="cpu", progress=False, verbose=False)
    assert h.train_loss[-1] < 0.7 * h.train_loss[0], h.train_loss
    assert h.val_loss[-1] < 0.7 * h.val_loss[0], h.val_loss
    out = ae(x[:3])
    assert out.shape == (3, 1, 28, 28) and out.min() >= 0 and out.max() <= 1


def test_add_noise_noises_the_input_only():
    x = _images(4)
    target = x.clone()
    noisy, y = add_noise(0.3, seed=1)(x, target)
    assert y is target and torch.equal(x, target)
    assert noisy.min() >= 0 and noisy.max() <= 1 and not torch.equal(noisy, x)
    assert torch.equal(noisy, add_noise(0.3, seed=1)(x, target)[0])
    noisy, y = add_noise(0.3)(x, None)
    assert y is x
    assert torch.equal(add_noise(0.0)(x, target)[0], x)
    with pytest.raises(ValueError):
        add_noise(-0.1)


def test_encode_all_for_an_autoencoder_and_a_vae():
    torch.manual_seed(0)
    x = _images(20)
    ae, vae = ConvAutoencoder(code_dim=5, width=4), ConvVAE(latent_dim=3, width=4)
    codes = encode_all(ae, x, batch_size=7)
    assert codes.shape == (20, 5)
    torch.testing.assert_close(codes, ae.encode(x).detach())
    mu = encode_all(vae, x, batch_size=512)
    assert mu.shape == (20, 3)
    torch.testing.assert_close(mu, vae.encode(x)[0].detach())
    assert ae.training and vae.training


# --- nearest neighbours and class match ---------------------------------------------------- #
def test_nearest_neighbours_agree_with_brute_force():
    g = _gen(13)
    samples, reference = torch.rand(13, 1, 5, 5, generator=g), torch.rand(40, 1, 5, 5, generator=g)
    samples[4] = reference[7]  # a memorised sample
    dist, idx = nearest_neighbours(samples, reference, k=3, batch_size=4)
    full = torch.cdist(samples.flatten(1).double(), reference.flatten(1).double())
    ref_dist, ref_idx = full.topk(3, dim=1, largest=False)
    assert torch.equal(idx, ref_idx)
    torch.testing.assert_close(dist.double(), ref_dist, atol=1e-6, rtol=1e-6)
    assert dist[4, 0] == 0 and idx[4, 0] == 7
    d1, i1 = nearest_neighbours(samples, reference)  # default batch size, k=1
    assert torch.equal(i1[:, 0], ref_idx[:, 0])
    torch.testing.assert_close(d1[:, 0].double(), ref_dist[:, 0], atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="k"):
        nearest_neighbours(samples, reference, k=41)
    with pytest.raises(ValueError, match="shape"):
        nearest_neighbours(samples, reference[:, :, :4])


class _FirstPixels(nn.Module):
    """Scores class j by pixel j: a classifier whose answer is known by construction."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(1, 1)  # a parameter, so the model has a device

    def forward(self, x):
        return x.flatten(1)[:, :3]


def test_class_match_is_the_fraction_the_classifier_assigns_to_the_intended_class():
    images = torch.zeros(10, 1, 28, 28)
    shown = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    images.flatten(1)[torch.arange(10), shown] = 1.0
    labels = shown.clone()
    labels[[1, 5, 8]] = torch.tensor([2, 0, 1])  # three samples show another class
    clf = _FirstPixels().train()
    assert class_match(clf, images, labels, batch_size=3) == pytest.approx(0.7)
    assert class_match(clf, images, labels) == pytest.approx(0.7)
    assert clf.training
    with pytest.raises(ValueError, match="labels"):
        class_match(clf, images, labels[:9])


def test_the_feature_classifier_gives_features_and_scores_of_28x28_images():
    from dlkit.generative import FeatureClassifier

    torch.manual_seed(0)
    judge = FeatureClassifier(num_classes=10, width=4, feature_dim=12)
    x = torch.rand(5, 1, 28, 28)
    assert judge.encode(x).shape == (5, 12) and judge(x).shape == (5, 10)
    torch.testing.assert_close(judge(x), judge.head(judge.encode(x)))
    assert encode_all(judge, x).shape == (5, 12)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        judge(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match=">= 1"):
        FeatureClassifier(width=0)
