"""Models that are not plain classifiers train through ``fit`` by replacing the step.

A GAN (two optimizers), a VAE-style loss made of named terms, a character-level language
model (hidden state carried and detached between batches, gradient clipping) and DP-SGD
through Opacus. Each test fixes its seeds and asserts that training reached a stated margin.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from dlkit.train import GradientClipping, StepOutput, TrainStep, fit

pytestmark = pytest.mark.usefixtures("one_thread")


def _quiet(**kwargs):
    return dict(device="cpu", progress=False, verbose=False, **kwargs)


# --------------------------------------------------------------------------- #
# GAN: two networks, two optimizers, one loop
# --------------------------------------------------------------------------- #
class GANStep(TrainStep):
    """One discriminator step, then one generator step (non-saturating loss)."""

    def __init__(self, d_optimizer: torch.optim.Optimizer, z_dim: int = 4) -> None:
        self.d_optimizer, self.z_dim = d_optimizer, z_dim

    def __call__(self, loop, X, y):
        G, D = loop.model["G"], loop.model["D"]
        ones, zeros = torch.ones(len(X), 1), torch.zeros(len(X), 1)
        fake = G(torch.randn(len(X), self.z_dim))
        d_loss = (F.binary_cross_entropy_with_logits(D(X), ones)
                  + F.binary_cross_entropy_with_logits(D(fake.detach()), zeros))
        loop.zero_grad(self.d_optimizer)
        loop.backward(d_loss)
        loop.optimizer_step(self.d_optimizer)
        g_loss = F.binary_cross_entropy_with_logits(D(fake), ones)
        loop.zero_grad()  # the main optimizer: the generator's
        loop.backward(g_loss)
        loop.optimizer_step()
        return {"d_loss": d_loss, "g_loss": g_loss}


def test_a_gan_learns_a_shifted_gaussian_through_fit():
    torch.manual_seed(0)
    real = 3.0 + 0.5 * torch.randn(512, 1)
    G = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    D = nn.Sequential(nn.Linear(1, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    model = nn.ModuleDict({"G": G, "D": D})

    def sample_mean() -> float:
        with torch.no_grad():
            return G(torch.randn(2000, 4)).mean().item()

    before = sample_mean()
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.5, 0.999))
    loader = DataLoader(TensorDataset(real), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    h = fit(model, loader, epochs=40, optimizer=opt_g, step=GANStep(opt_d), **_quiet())
    after = sample_mean()
    assert abs(before - 3.0) > 2.0, before  # the untrained generator is far from the data
    assert abs(after - 3.0) < 0.4, f"generated mean {after:.3f}, data mean 3.0"
    assert len(h.metrics["train/d_loss"]) == len(h.metrics["train/g_loss"]) == 40
    assert all(math.isnan(a) for a in h.train_acc)  # no class scores: no accuracy


# --------------------------------------------------------------------------- #
# VAE: a loss that is a dict of named terms, each logged
# --------------------------------------------------------------------------- #
class TinyVAE(nn.Module):
    def __init__(self, d: int = 8, z: int = 2) -> None:
        super().__init__()
        self.enc = nn.Linear(d, 2 * z)
        self.dec = nn.Sequential(nn.Linear(z, 16), nn.ReLU(), nn.Linear(16, d))

    def forward(self, x):
        mu, logvar = self.enc(x).chunk(2, dim=1)
        zs = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.dec(zs), mu, logvar


def vae_step(loop, X, y):
    with loop.autocast():
        recon, mu, logvar = loop.forward(X)
        terms = {
            "reconstruction": F.mse_loss(recon, X, reduction="sum") / len(X),
            "kl": -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum() / len(X),
        }
    loop.zero_grad()
    loop.backward(terms["reconstruction"] + terms["kl"])
    loop.optimizer_step()
    return terms


def test_a_vae_style_loss_of_named_terms_falls_and_logs_each_term(tmp_path):
    torch.manual_seed(0)
    basis = torch.randn(2, 8)
    X = torch.randn(512, 2) @ basis + 0.05 * torch.randn(512, 8)  # 8-D data on a 2-D plane
    model = TinyVAE()
    loader = DataLoader(TensorDataset(X), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    h = fit(model, loader, epochs=30, lr=1e-2, step=vae_step, log_dir=tmp_path / "tb",
            **_quiet())
    recon, kl = h.metrics["train/reconstruction"], h.metrics["train/kl"]
    assert len(recon) == len(kl) == 30
    for i in range(30):  # the recorded loss is the sum of the terms
        assert h.train_loss[i] == pytest.approx(recon[i] + kl[i], rel=1e-6)
    assert h.train_loss[-1] < 0.5 * h.train_loss[0], (h.train_loss[0], h.train_loss[-1])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert {"train/reconstruction", "train/kl"} <= set(acc.Tags()["scalars"])
    assert [e.value for e in acc.Scalars("train/kl")] == pytest.approx(kl, rel=1e-6)


# --------------------------------------------------------------------------- #
# Character-level language model: hidden state carried, detached, clipped
# --------------------------------------------------------------------------- #
class CharRNN(nn.Module):
    def __init__(self, vocab: int, hidden: int = 48) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 16)
        self.rnn = nn.GRU(16, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, h=None):
        out, h = self.rnn(self.embed(x), h)
        return self.head(out), h


class CharStep(TrainStep):
    """Truncated backpropagation through time: the hidden state flows on, its graph does not."""

    def __init__(self) -> None:
        self.hidden = None
        self.carried = 0

    def before_epoch(self, loop) -> None:
        self.hidden = None  # each epoch reads the streams from their start

    def __call__(self, loop, X, Y):
        self.carried += self.hidden is not None
        logits, hidden = loop.forward(X, self.hidden)
        loss = F.cross_entropy(logits.flatten(0, 1), Y.flatten())
        self.hidden = hidden.detach()  # without this the next backward reaches this batch
        loop.zero_grad()
        loop.backward(loss)
        loop.optimizer_step()
        return StepOutput(loss)


def _char_batches(text: str, streams: int, length: int):
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text])
    per = (len(ids) - 1) // streams
    x = ids[: streams * per].view(streams, per)  # B parallel streams of the text
    y = ids[1: streams * per + 1].view(streams, per)
    batches = [(x[:, i:i + length], y[:, i:i + length]) for i in range(0, per - length + 1, length)]
    return batches, len(chars)


def test_a_character_model_learns_with_carried_hidden_state_and_clipping():
    torch.manual_seed(0)
    text = "the quick brown fox jumps over the lazy dog. " * 40
    batches, vocab = _char_batches(text, streams=8, length=20)
    model = CharRNN(vocab)
    clip = GradientClipping(max_norm=1.0)
    step = CharStep()
    h = fit(model, batches, epochs=8, lr=1e-2, step=step, callbacks=[clip], **_quiet())
    assert h.train_loss[0] > 0.7 * math.log(vocab)  # starts near chance
    assert h.train_loss[-1] < 0.3 * h.train_loss[0], h.train_loss
    assert step.carried == 8 * (len(batches) - 1)  # carried within an epoch, reset between
    assert len(h.metrics["grad_norm"]) == 8
    assert all(n.item() >= 0 for n in clip.norms)


# --------------------------------------------------------------------------- #
# DP-SGD: Opacus wraps model, optimizer and loader; fit trains what it is given
# --------------------------------------------------------------------------- #
def test_dp_sgd_through_opacus_trains_and_spends_privacy():
    opacus = pytest.importorskip("opacus")
    g = torch.Generator().manual_seed(0)
    X = torch.cat([torch.randn(256, 2, generator=g) + 2.5, torch.randn(256, 2, generator=g) - 2.5])
    y = torch.cat([torch.zeros(256), torch.ones(256)]).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus warns about secure_mode and sampling
        engine = opacus.PrivacyEngine(accountant="rdp")
        model, optimizer, loader = engine.make_private(
            module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=1.0,
            max_grad_norm=1.0, noise_generator=torch.Generator().manual_seed(0))
        h = fit(model, loader, epochs=4, optimizer=optimizer, **_quiet())
    steps = len(engine.accountant.history[0]) and engine.accountant.history[0][2]
    assert steps == 4 * len(loader)  # every batch was a private step the accountant counted
    epsilon = engine.get_epsilon(delta=1e-5)
    assert 0 < epsilon < 50
    assert h.train_acc[-1] > 0.9, h.train_acc  # separable blobs, learned despite the noise


# --------------------------------------------------------------------------- #
# Custom validation: models whose quality is not an argmax accuracy
# --------------------------------------------------------------------------- #
def _regression_loaders(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(512, 3, generator=g)
    y = X @ torch.tensor([1.5, -2.0, 0.5]) + 0.1 * torch.randn(512, generator=g)
    train = DataLoader(TensorDataset(X[:384], y[:384]), batch_size=32, shuffle=False)
    val = DataLoader(TensorDataset(X[384:], y[384:]), batch_size=50)
    return train, val


class Squeeze(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear, self.dropout = nn.Linear(3, 1), nn.Dropout(0.5)

    def forward(self, x):
        return self.linear(self.dropout(x)).squeeze(1)


def _rmse_validation(seen: list):
    def validate(model, loader, device):
        seen.append((model.training, model.dropout.training, torch.is_grad_enabled(), device))
        sq, n = 0.0, 0
        for X, y in loader:
            sq += ((model(X.to(device)) - y.to(device)) ** 2).sum().item()
            n += len(y)
        return {"loss": sq / n, "rmse": math.sqrt(sq / n)}
    return validate


def _mse_of(model, loader) -> float:
    model.eval()
    with torch.no_grad():
        return torch.cat([(model(X) - y) ** 2 for X, y in loader]).mean().item()


def test_validate_replaces_the_classifier_evaluation_and_logs_its_extra_entries():
    torch.manual_seed(0)
    train, val = _regression_loaders()
    model, seen = Squeeze(), []
    h = fit(model, train, val, epochs=4, lr=0.05, loss_fn=nn.MSELoss(),
            validate=_rmse_validation(seen), **_quiet())
    assert len(seen) == 4
    # Called in eval mode (dropout off), without gradients, on fit's device.
    assert all(s == (False, False, False, torch.device("cpu")) for s in seen), seen
    assert model.training  # ... and the training mode is back afterwards
    assert all(math.isnan(a) for a in h.val_acc)
    assert h.val_loss[-1] == pytest.approx(_mse_of(model, val), rel=1e-6)
    assert h.metrics["val/rmse"] == pytest.approx([math.sqrt(v) for v in h.val_loss], rel=1e-12)
    assert h.val_loss[-1] < 0.5 * h.val_loss[0], h.val_loss


def test_validate_restores_each_submodules_mode_afterwards():
    from dlkit.train import Callback

    class FreezeDropout(Callback):  # a partly frozen model: dropout off while training
        def __init__(self) -> None:
            self.after = []

        def before_epoch(self, loop):
            loop.model.train()
            loop.model.dropout.eval()

        def after_validation(self, loop):
            self.after.append((loop.model.training, loop.model.dropout.training))

    train, val = _regression_loaders()
    model, seen, freeze = Squeeze(), [], FreezeDropout()
    fit(model, train, val, epochs=2, loss_fn=nn.MSELoss(), validate=_rmse_validation(seen),
        callbacks=[freeze], **_quiet())
    assert seen[0][:2] == (False, False)  # everything in eval mode during validation
    assert freeze.after == [(True, False), (True, False)]  # the partial freeze is back


def test_early_stopping_watches_the_custom_validation_loss():
    torch.manual_seed(0)
    train, val = _regression_loaders()
    calls = []

    def worsening(model, loader, device):  # a validation loss that only rises
        calls.append(1)
        return {"loss": float(len(calls))}

    h = fit(Squeeze(), train, val, epochs=10, loss_fn=nn.MSELoss(), validate=worsening,
            early_stopping=2, **_quiet())
    assert len(h) == 3 and h.val_loss == [1.0, 2.0, 3.0]


def test_a_validation_without_a_loss_is_refused_with_the_contract():
    train, val = _regression_loaders()
    with pytest.raises(ValueError, match="'loss' entry"):
        fit(Squeeze(), train, val, epochs=1, loss_fn=nn.MSELoss(),
            validate=lambda m, loader, d: {"rmse": 1.0}, **_quiet())
    with pytest.raises(TypeError, match="validate must be a function"):
        fit(Squeeze(), train, val, epochs=1, loss_fn=nn.MSELoss(), validate="rmse", **_quiet())


def test_custom_validation_reaches_tensorboard_and_the_printed_summary(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(0)
    train, val = _regression_loaders()
    fit(Squeeze(), train, val, epochs=2, loss_fn=nn.MSELoss(), validate=_rmse_validation([]),
        device="cpu", progress=False, verbose=True, log_dir=tmp_path)
    out = capsys.readouterr().out
    assert "val loss" in out and "nan" not in out, out
    events = EventAccumulator(str(tmp_path)).Reload()
    tags = events.Tags()["scalars"]
    assert "loss/val" in tags and "val/rmse" in tags and "accuracy/val" not in tags, tags
    assert len(events.Scalars("val/rmse")) == 2
