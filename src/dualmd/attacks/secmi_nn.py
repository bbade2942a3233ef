"""SecMI_NN: a ResNet-18 classifier on SecMI's round-trip error maps (Duan et al., ICML 2023, Sec. 4.3).

Features: |x^_t - x~_t| (C, H, W) per image (see `secmi.round_trip`). The classifier is trained, as in SecMI's
`nns_attack`, on the first `train_fraction` of the members and the first `train_fraction` of the non-members (in
the order given), as an MSE regression to member = 1 / non-member = 0, with SGD (momentum 0.9, weight decay
5e-4) for `num_epochs` epochs; the last epoch's weights are used (SecMI's "best test accuracy" selection never
fires, and would select on the test set). Only the remaining samples are scored, so the result holds fewer
samples than the input. The labels of the training slice make this a "shadow environment" attack (SecMI #4).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from dualmd.attacks.base import (
    Attack,
    AttackResult,
    batch_slices,
    check_inputs,
    check_labels,
    model_device,
    register,
    train_test_split,
)
from dualmd.attacks.secmi import round_trip
from dualmd.config.attacks import SecMINNConfig
from dualmd.models.adapter import NoisePredictor, Schedule

MOMENTUM = 0.9  # SecMI's nns_attack optimizer settings
WEIGHT_DECAY = 5e-4
CIFAR_STEM_MAX_SIZE = 64  # images up to this side get the CIFAR-style 3x3 stride-1 stem without max-pool
MIN_INPUT_SIZE = 32  # smaller maps are upsampled to SecMI's CIFAR geometry (see make_classifier)


def make_classifier(channels: int, image_size: int) -> nn.Module:
    """torchvision ResNet-18 with one output, its first conv adapted to `channels`.

    Small images (side <= 64, SecMI's CIFAR case) get the CIFAR stem: 3x3 stride-1 conv and no max-pool.
    Maps smaller than 32 px are first upsampled (nearest, integer factor) to >= 32 px. Why: the network reduces
    its input 8-fold, so an 8x8 map would reach the last stage as 1x1, where BatchNorm normalises over the
    batch alone; train- and eval-mode outputs then disagree, and on 8x8 test data the ranking of members
    flipped from seed to seed. At 32 px the last stage is 4x4, exactly as in SecMI on CIFAR-10.
    """
    import torchvision

    net = torchvision.models.resnet18(weights=None, num_classes=1)
    if image_size <= CIFAR_STEM_MAX_SIZE:
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    else:
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    factor = -(-MIN_INPUT_SIZE // image_size)  # ceil
    return net if factor == 1 else nn.Sequential(nn.Upsample(scale_factor=factor, mode="nearest"), net)


def error_maps(model: NoisePredictor, schedule: Schedule, images: Tensor, cfg, batch_size: int) -> Tensor:
    """|x^_t - x~_t| (N, C, H, W) float32 on the model's device, computed in batches."""
    device = model_device(model, images.device)
    parts = []
    with torch.no_grad():
        for sl in batch_slices(len(images), batch_size):
            x_tilde, x_hat = round_trip(model, schedule, images[sl].to(device), cfg)
            parts.append((x_hat - x_tilde).abs().float())
    return torch.cat(parts)


def train_classifier(features: Tensor, targets: Tensor, cfg: SecMINNConfig, seed: int) -> nn.Module:
    """Fit `make_classifier` by MSE regression of its output to `targets` (N,) in {0, 1}; returns it in eval mode.

    Initialisation and shuffling are seeded by `seed` without touching the global RNG state.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # channels-last: the same convolutions, ~10 % faster with oneDNN on a CPU, and the layout GPUs prefer
        net = make_classifier(features.shape[1], features.shape[-1]).to(
            features.device, memory_format=torch.channels_last
        )
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    net.train()
    for _ in range(cfg.num_epochs):
        order = torch.randperm(len(features), generator=gen).to(features.device)
        for sl in batch_slices(len(order), cfg.batch_size):
            batch = order[sl]
            if len(batch) < 2:  # BatchNorm cannot train on a single sample
                continue
            loss = nn.functional.mse_loss(net(features[batch]).squeeze(1), targets[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


@register("secmi_nn")
class SecMINN(Attack):
    """SecMI_NN; `run` returns scores for the held-out (1 - train_fraction) of members and non-members."""

    requires = "model"

    def run(
        self,
        model: NoisePredictor,
        schedule: Schedule,
        images: Tensor,
        sample_ids: np.ndarray,
        is_member: np.ndarray,
    ) -> AttackResult:
        """Fit on the leading slice, score the rest (higher = member: the regression target of members is 1)."""
        ids = check_inputs(images, sample_ids)
        is_member = check_labels(is_member, len(images))
        train_test_split(
            is_member, self.cfg.secmi_nn.train_fraction, self.name
        )  # refuse before the model runs
        maps = error_maps(model, schedule, images, self.cfg.secmi, self.cfg.batch_size)
        return self.classify(maps, ids, is_member)

    def classify(self, maps: Tensor, sample_ids: np.ndarray, is_member: np.ndarray) -> AttackResult:
        """Fit the classifier on the leading slice of the error maps (N, C, H, W), score the rest.

        The maps may come from any predictor (`run`'s, or the text-to-image attack's latents, each batch with its
        captions); sample_ids (N,) and is_member (N,) follow their order.
        """
        ids = np.asarray(sample_ids, dtype=np.int64)
        train, test = train_test_split(is_member, self.cfg.secmi_nn.train_fraction, self.name)
        t_err = maps[test].double().square().flatten(1).sum(dim=1)  # SecMI_stat's statistic, as a diagnostic
        # Deviation from SecMI: all maps are divided by one constant, their RMS on the training slice. Round-trip
        # errors of a good model are ~1e-3, so BatchNorm's eps (1e-5) would otherwise swamp the first layer's
        # variance, and its running statistics converge slowly from 1. One constant adds no per-sample information.
        maps = maps / maps[train].square().mean().sqrt().clamp_min(torch.finfo(maps.dtype).tiny)
        targets = torch.as_tensor(is_member, dtype=torch.float32, device=maps.device)
        net = train_classifier(maps[train], targets[train], self.cfg.secmi_nn, self.cfg.seed)
        with torch.no_grad():
            test_maps = maps[test]
            scores = [net(test_maps[sl]).squeeze(1) for sl in batch_slices(len(test), self.cfg.batch_size)]
        return AttackResult(
            ids[test],
            is_member[test],
            torch.cat(scores).double().cpu().numpy(),
            {"t_error": t_err.cpu().numpy()},
            attack=self.name,
        )
