"""A complete data-parallel training script, for ``torchrun`` or plain ``python``.

Used in chapter 08 (efficient training), which launches it as::

    torchrun --standalone --nproc-per-node 2 -m dlkit.ddp_example --batch-size 32 --out ddp.pt
    python -m dlkit.ddp_example --batch-size 64 --out single.pt   # one process, batch 2 x 32

Every rank builds the same data and the same initial weights from the seed, trains on its own
share of each batch (:func:`dlkit.distributed.shard_loader`) through
:func:`dlkit.train.fit`, and ``DistributedDataParallel`` averages the gradients across ranks in
every backward pass. Rank 0 alone prints and saves the final weights. The default network has
no BatchNorm: batch statistics are computed per rank, which would make the two runs differ
(``nn.SyncBatchNorm`` shares them, on GPUs).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch
from torch import nn

from dlkit import data as dlkit_data
from dlkit.distributed import all_reduce_mean, distributed, print0, save_on_main, shard_loader
from dlkit.env import seed_everything
from dlkit.models import SmallCNN
from dlkit.train import fit

__all__ = ["make_net", "make_data", "main"]


def make_net(num_classes: int, width: int = 16) -> nn.Module:
    """Chapter 04's :class:`~dlkit.models.SmallCNN` without BatchNorm, three stages.

    Without batch statistics, data parallelism is exactly a larger batch.

    Args:
        num_classes: Outputs.
        width: Channels of the first stage.

    Returns:
        The network, initialised from the current torch seed.
    """
    return SmallCNN(num_classes, width=width, batch_norm=False, stages=3)


def make_data(name: str, n: int, image_size: int = 32) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The same ``n`` normalised training images on every rank.

    Args:
        name: ``"shapes"`` (procedural, no files) or ``"cifar10"``.
        n: Number of images (a seeded random subset for CIFAR-10).
        image_size: Size of the procedural images (CIFAR-10 is always 32).

    Returns:
        ``(X, y, num_classes)``.
    """
    if name == "shapes":
        ds = dlkit_data.load("shapes", num_samples=n, image_size=image_size, seed=0)
    elif name == "cifar10":
        full = dlkit_data.load("cifar10", split="train")
        # The canonical order is sorted by class: draw the subset at random (seeded).
        pick = torch.randperm(len(full), generator=torch.Generator().manual_seed(0))[:n]
        ds = full.subset(pick)
    else:
        raise ValueError(f"data must be 'shapes' or 'cifar10', got {name!r}")
    X, y = dlkit_data.to_tensors(ds, *dlkit_data.channel_stats(ds))
    return X, y, len(ds.classes)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="shapes", choices=["shapes", "cifar10"])
    parser.add_argument("--train-size", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=16, help="for --data shapes")
    parser.add_argument("--batch-size", type=int, default=32, help="per rank")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu or cuda; default: a GPU per "
                        "process when there are enough, else the CPU")
    parser.add_argument("--out", default=None, help="file for the final weights (rank 0 writes)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Train, save the final weights from rank 0, and return them (on every rank).

    Args:
        argv: Command-line arguments; default ``sys.argv[1:]``.

    Returns:
        The trained network's ``state_dict`` (CPU tensors).
    """
    args = _parse(argv)
    with distributed(device=args.device) as ctx:
        seed_everything(args.seed)
        X, y, num_classes = make_data(args.data, args.train_size, args.image_size)
        net = make_net(num_classes)  # same seed: same weights everywhere
        model = ctx.wrap(net)
        loader = shard_loader((X, y), args.batch_size, seed=args.seed)
        optimizer = (torch.optim.SGD(model.parameters(), lr=args.lr) if args.optimizer == "sgd"
                     else torch.optim.Adam(model.parameters(), lr=args.lr))
        print0(f"world size {ctx.world_size} ({ctx.backend or 'no process group'}, "
               f"{ctx.device}), batch {args.batch_size} per rank = "
               f"{args.batch_size * ctx.world_size} per step, {len(loader)} steps per epoch")
        history = fit(model, loader, epochs=args.epochs, optimizer=optimizer,
                      device=ctx.device, progress=False, verbose=False)
        # Each rank measured the loss on its own share; the mean over ranks is the whole batch's.
        loss = all_reduce_mean(torch.tensor(history.train_loss[-1])).item()
        print0(f"last epoch: mean training loss over all ranks {loss:.4f}")
        state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        if args.out:
            save_on_main(state, args.out)
            print0(f"rank 0 saved the weights to {args.out}")
    return state


if __name__ == "__main__":
    main(sys.argv[1:])
