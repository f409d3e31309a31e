"""Four families of generative models on one dataset, scored by one evaluation (chapter 11).

Modules, bottom to top:

- :mod:`dlkit.generative.evaluation`: Fréchet distance in a classifier's feature space,
  class match of conditional samples, nearest training neighbours (memorisation).
- :mod:`dlkit.generative.autoencoder`: a convolutional autoencoder (undercomplete or denoising)
  and :func:`encode_all` for linear probes on its codes.
- :mod:`dlkit.generative.vae`: the Gaussian KL, the reparameterisation trick and its
  score-function rival, :class:`ConvVAE` and its negative ELBO in nats.
- :mod:`dlkit.generative.gan`: a DCGAN-style :class:`GAN`, the minimax and non-saturating
  generator losses, and :class:`GANStep` (two optimizers in one :func:`dlkit.train.fit`).
- :mod:`dlkit.generative.unet` and :mod:`dlkit.generative.diffusion`: a small conditional
  U-Net, the DDPM forward process, :class:`DiffusionStep` and the ancestral :func:`sample`
  with respaced schedules and classifier-free guidance.

Every model trains through :func:`dlkit.train.fit` with a replaceable step.
"""

from dlkit.generative.autoencoder import (ConvAutoencoder, add_noise, encode_all,
                                          reconstruction_step, reconstruction_validate)
from dlkit.generative.diffusion import (DiffusionStep, NoiseSchedule, diffusion_validate, q_sample,
                                        sample, to_image_range, to_model_range)
from dlkit.generative.evaluation import (FeatureClassifier, class_match, frechet_distance,
                                         frechet_distance_of, gaussian_stats, nearest_neighbours)
from dlkit.generative.gan import (GAN, GENERATOR_LOSSES, Discriminator, GANStep, Generator,
                                  discriminator_loss, generator_loss, generator_loss_gradient)
from dlkit.generative.unet import TinyUNet, timestep_embedding
from dlkit.generative.vae import (ConvVAE, VAEStep, bits_per_dim, gaussian_kl,
                                  gaussian_kl_monte_carlo, negative_elbo, reparam_gradient,
                                  reparameterize, score_function_gradient, vae_validate)

__all__ = [
    "FeatureClassifier", "gaussian_stats", "frechet_distance", "frechet_distance_of", "class_match",
    "nearest_neighbours",
    "ConvAutoencoder", "reconstruction_step", "reconstruction_validate", "add_noise", "encode_all",
    "gaussian_kl", "gaussian_kl_monte_carlo", "reparameterize", "reparam_gradient",
    "score_function_gradient", "ConvVAE", "negative_elbo", "bits_per_dim", "VAEStep",
    "vae_validate",
    "Generator", "Discriminator", "GAN", "discriminator_loss", "generator_loss",
    "generator_loss_gradient", "GANStep", "GENERATOR_LOSSES",
    "TinyUNet", "timestep_embedding",
    "NoiseSchedule", "q_sample", "DiffusionStep", "diffusion_validate", "sample",
    "to_model_range", "to_image_range",
]
