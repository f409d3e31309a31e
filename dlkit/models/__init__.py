"""Convolutional networks for CIFAR-sized images, and the arithmetic to reason about them.

Chapter 04 (CNN design) teaches with this module; chapters 07-09 reuse its models.

* Arithmetic: :func:`conv_output_shape` and :func:`layer_output_shape` (the size formula of
  convolution and pooling layers), :func:`receptive_field` of a stack of layers,
  :func:`count_params`, and :func:`count_flops`, which asks PyTorch's own
  :class:`~torch.utils.flop_counter.FlopCounterMode` rather than a hand-written counter.
* Models: :class:`ArticleCNN` (the source article's network with its bugs fixed),
  :class:`SmallCNN` (a fast batch-norm CNN for CPU training) and :class:`ResNetCIFAR` (a
  ResNet for 32×32 inputs; ResNet-18 with the default arguments), all taking normalised float
  ``N×3×32×32`` inputs and returning ``N×num_classes`` logits.
* Training on a budget: :func:`random_crop_flip` (batched augmentation as tensor ops, for
  ``fit(train_transform=...)``) and :func:`train_budgeted`, which trains any model with one
  recipe for a fixed number of images and measures what chapter 04 compares.
"""


from dlkit.models.arithmetic import (ReceptiveField, conv_output_shape, count_flops, count_params,
                                     feature_maps, layer_output_shape, receptive_field)
from dlkit.models.budget import RunResult, random_crop_flip, train_budgeted
from dlkit.models.networks import ArticleCNN, BasicBlock, ResNetCIFAR, SmallCNN

__all__ = [
    "ArticleCNN",
    "BasicBlock",
    "ReceptiveField",
    "ResNetCIFAR",
    "RunResult",
    "SmallCNN",
    "conv_output_shape",
    "count_flops",
    "count_params",
    "feature_maps",
    "layer_output_shape",
    "random_crop_flip",
    "receptive_field",
    "train_budgeted",
]

IntPair = int | tuple[int, int]
