"""One evaluation for every generative model: Fréchet distance, class match, nearest neighbours.

Used in chapter 11 (generative models), which scores the autoencoder, the VAE, the GAN and the
diffusion model the same way, on Fashion-MNIST images (1×28×28, pixels in [0, 1]):

* :func:`frechet_distance_of` fits a Gaussian (:func:`gaussian_stats`) to the features of real
  and of generated images and returns the Fréchet distance between the two Gaussians
  (:func:`frechet_distance`): lower means the two sets look more alike to the feature network;
* :func:`class_match` asks a classifier whether class-conditional samples show the class they
  were asked for;
* :func:`nearest_neighbours` finds, for each sample, the closest training images in pixel
  space: a sample that is a near copy of a training image was memorised, not generated.

The Fréchet distance computed here, in the feature space of the chapter's small Fashion-MNIST
classifier, is **not** the FID of the literature. FID (Heusel et al. 2017) uses the 2048
pool features of an Inception-v3 network trained on ImageNet; a different network gives
different features and a different scale, so these numbers compare models with each other
within the chapter only, never with a published FID.
"""

from __future__ import annotations

import torch
from torch import nn

from dlkit._util import eval_mode

__all__ = ["FeatureClassifier", "gaussian_stats", "frechet_distance", "frechet_distance_of",
           "class_match", "nearest_neighbours", "model_device"]


class FeatureClassifier(nn.Module):
    """The judge of every model: a small CNN for 1×28×28 images, whose penultimate layer
    gives the features the Fréchet distance is computed in. Chapter 11.

    Two conv-ReLU-pool stages (``width`` and ``2 * width`` channels, 28 → 14 → 7), a linear
    layer to ``feature_dim`` features with a ReLU (:meth:`encode`), and a linear head.
    Trained with :func:`dlkit.train.fit` on real images (pixels in [0, 1]).

    Args:
        num_classes: Classes of the head.
        width: Channels of the first convolution.
        feature_dim: Length of the feature vector.
    """

    def __init__(self, num_classes: int = 10, width: int = 16, feature_dim: int = 64) -> None:
        super().__init__()
        if min(num_classes, width, feature_dim) < 1:
            raise ValueError("num_classes, width and feature_dim must be >= 1, got "
                             f"{num_classes}, {width}, {feature_dim}")
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * 7 * 7, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, num_classes)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The features (N × feature_dim) of images (N×1×28×28)."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"expected images of shape (N, 1, 28, 28), got {tuple(x.shape)}")
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (N × num_classes)."""
        return self.head(self.encode(x))


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance of a set of feature vectors, in float64 on the CPU.

    Args:
        features: N × D features (N >= 2), one row per image.

    Returns:
        ``(mean, cov)``: the D mean and the D × D covariance (divided by N - 1).

    Raises:
        ValueError: If ``features`` is not 2-D or has fewer than 2 rows.
    """
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"expected features of shape (N, D) with N >= 2, got {tuple(features.shape)}")
    f = features.detach().to("cpu", torch.float64)
    mean = f.mean(0)
    centred = f - mean
    return mean, centred.T @ centred / (f.shape[0] - 1)


def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    # The square root of a symmetric positive semi-definite matrix, V diag(sqrt(w)) V^T.
    # Rounding can leave tiny negative eigenvalues: they are 0 in exact arithmetic.
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor,
                     sigma2: torch.Tensor) -> float:
    """The Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``d² = |mu1 - mu2|² + Tr(S1 + S2 - 2 (S1^½ S2 S1^½)^½)`` (Dowson and Landau 1982). The
    matrix ``S1^½ S2 S1^½`` is symmetric positive semi-definite, so both square roots come from
    symmetric eigendecompositions in float64 (``torch.linalg.eigh``), which is stable where a
    general matrix square root of ``S1 S2`` can turn complex through rounding. Like FID, the
    value returned is the squared distance ``d²``.

    Args:
        mu1, mu2: Means (D).
        sigma1, sigma2: Covariances (D × D), symmetric positive semi-definite.

    Returns:
        ``d²`` as a float (>= 0; rounding below 0 is returned as 0).

    Raises:
        ValueError: If the means are not vectors of one length D or the covariances not D × D.
    """
    mu1, mu2, sigma1, sigma2 = (torch.as_tensor(t).detach().to("cpu", torch.float64)
                                for t in (mu1, mu2, sigma1, sigma2))
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"expected two means of the same shape (D,), got {tuple(mu1.shape)} "
                         f"and {tuple(mu2.shape)}")
    d = mu1.shape[0]
    for name, s in (("sigma1", sigma1), ("sigma2", sigma2)):
        if s.shape != (d, d):
            raise ValueError(f"expected {name} of shape ({d}, {d}) to match the means, "
                             f"got {tuple(s.shape)}")
    root1 = _sqrtm_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    eig = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0)
    trace_term = sigma1.trace() + sigma2.trace() - 2 * eig.sqrt().sum()
    return max(float((mu1 - mu2).square().sum() + trace_term), 0.0)


def frechet_distance_of(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two sets of features (N_a × D, N_b × D).

    A sample estimate: even two sets drawn from one distribution give a small positive value,
    which shrinks as the sets grow, so compare models with equally many samples.

    Raises:
        ValueError: If either set is not N × D with N >= 2, or the two D differ.
    """
    mu1, sigma1 = gaussian_stats(features_a)
    mu2, sigma2 = gaussian_stats(features_b)
    return frechet_distance(mu1, sigma1, mu2, sigma2)


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter or buffer (the CPU for a model with neither)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def class_match(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                batch_size: int = 512, device: torch.device | str | None = None) -> float:
    """Fraction of ``images`` that ``classifier`` assigns to the class they were generated for.

    Runs in eval mode without gradients; the classifier's previous mode is restored.

    Args:
        classifier: Returns N × K class scores.
        images: N images (e.g. samples of a class-conditional model).
        labels: N intended classes.
        batch_size: Images classified at once.
        device: Where to compute (the classifier is moved there); default: where it is.

    Returns:
        The fraction in [0, 1].

    Raises:
        ValueError: If there are no images, ``labels`` does not have one entry per image, or
            ``batch_size`` < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(images) == 0 or labels.shape != (len(images),):
        raise ValueError(f"expected N >= 1 images and N labels, got {len(images)} images and "
                         f"labels of shape {tuple(labels.shape)}")
    device = model_device(classifier) if device is None else torch.device(device)
    classifier.to(device)
    correct = 0
    with eval_mode(classifier):
        for x, y in zip(images.split(batch_size), labels.split(batch_size)):
            correct += int((classifier(x.to(device)).argmax(1).cpu() == y.cpu()).sum())
    return correct / len(images)


@torch.no_grad()
def nearest_neighbours(samples: torch.Tensor, reference: torch.Tensor, *, k: int = 1,
                       batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` reference images closest to each sample, by Euclidean distance in pixel space.

    Images are flattened to vectors. Candidates are picked in batches of samples with
    ``|x - r|² = |x|² - 2 x·r + |r|²`` (one matrix product per batch), and the chosen pairs'
    distances are then computed directly, so a near copy shows a distance near 0 rather than
    the rounding error of that formula.

    Args:
        samples: N images (any shape per image).
        reference: M images of the same shape (e.g. the training set).
        k: Neighbours per sample (1 <= k <= M).
        batch_size: Samples compared at once; default: as many as keep the N × M distance
            block near 128 MB (2**25 numbers).

    Returns:
        ``(distances, indices)``, both N × k, nearest first; indices point into ``reference``.

    Raises:
        ValueError: If the images' shapes differ, either set is empty, or ``k`` is out of range.
    """
    if samples.shape[1:] != reference.shape[1:]:
        raise ValueError(f"samples and reference images must have one shape, got "
                         f"{tuple(samples.shape[1:])} and {tuple(reference.shape[1:])}")
    n, m = len(samples), len(reference)
    if n == 0 or m == 0:
        raise ValueError(f"expected non-empty sets, got {n} samples and {m} reference images")
    if not 1 <= k <= m:
        raise ValueError(f"k must be in [1, {m}], got {k}")
    if batch_size is None:
        batch_size = max(1, 2**25 // m)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    x = samples.flatten(1)
    x = x if x.is_floating_point() else x.float()
    r = reference.flatten(1).to(x.device, x.dtype)
    r_sq = r.square().sum(1)
    distances, indices = [], []
    for xb in x.split(batch_size):
        # Squared distances up to |x|², which does not change each row's ranking.
        block = (xb @ r.T).mul_(-2).add_(r_sq)
        idx = block.topk(k, dim=1, largest=False).indices
        dist = (xb[:, None, :] - r[idx]).norm(dim=2)
        dist, order = dist.sort(dim=1)
        distances.append(dist)
        indices.append(idx.gather(1, order))
    return torch.cat(distances), torch.cat(indices)
