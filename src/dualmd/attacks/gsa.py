"""GSA: gradient attacks on diffusion models (Pang et al., "White-box Membership Inference Attacks against
Diffusion Models", PoPETs 2025, arXiv 2308.06405).

A model's parameters move most on the images it was not fitted to, so the per-sample gradient of the denoising
loss is smaller, layer by layer, on members. For each image x_0 and timesteps t_1..t_K (K = 10 evenly spaced by
default, as GSA's sampling_frequency), with one noise eps_j per timestep (`per_sample_noise`, stream t_j: the
same noise as the loss attack's) and x_j = sqrt(alpha_bar_j) x_0 + sqrt(1 - alpha_bar_j) eps_j:

    L_j = mean_i (eps_theta(x_j, t_j) - eps_j)_i^2
    gsa1: f_l(x_0) = || grad_{theta_l} (1/K) sum_j L_j ||_2          (loss averaged, one gradient)
    gsa2: f_l(x_0) = (1/K) sum_j || grad_{theta_l} L_j ||_2          (per-timestep gradient norms, averaged)

with one feature per parameter tensor theta_l (`attack.gsa.variant` picks the variant; gsa1 is the default: one
gradient per image instead of K, the paper's cheaper variant). Per-sample gradients are batched with `torch.func`
(`vmap` over `grad` of a `functional_call`), in eval mode (no dropout).

A gradient-boosted tree classifier (scikit-learn's `GradientBoostingClassifier`; GSA used XGBoost with 200
trees) maps the features to membership; its log-odds of "member" is the score. Where its labels come from is
`protocol`:

- ``slice`` (the default): it is trained, as `secmi_nn` is, on the first `train_fraction` of the target's own
  members and non-members, and only the remaining samples are scored, so the result holds fewer samples than the
  input. The labels of that slice make this SecMI's "shadow environment" reading: an upper bound on what shadow
  models transfer.
- ``shadow`` (the paper's protocol): it is trained on the features of images on reference models whose training
  sets the attacker knows (`ShadowModel`: the images a model trained on, IN, and as many it did not, OUT, none of
  them a candidate), fitted once per set of reference models (`shadow_classifier`), and scores every candidate
  of the target. The target's labels are only carried into the result. Which reference models train the
  classifier for which target is the section's (`GSAConfig.reference_models`: LiRA's offline reference models, of
  the baseline's recipe or built like the target).

The attacks `gsa` and `gsa_shadow` are this one class, each configured by its own section (`attack.gsa`,
`attack.gsa_shadow`): the same keys with another default protocol, so that one run reports both side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.ensemble import GradientBoostingClassifier
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from dualmd.attacks.base import (
    Attack,
    AttackResult,
    batch_slices,
    check_inputs,
    check_labels,
    check_timesteps,
    model_device,
    own_section,
    per_sample_noise,
    register,
    train_test_split,
)
from dualmd.config.attacks import AttackConfig, GSAConfig
from dualmd.models.adapter import NoisePredictor, Schedule, eps_network


def layer_gradient_norms(
    network: nn.Module, schedule: Schedule, images: Tensor, noise: Tensor, timesteps: Tensor
) -> Tensor:
    """Per-sample norms of the gradient of the loss averaged over `timesteps`, one per parameter tensor.

    Args:
        network: (x_t, t) -> eps module, in eval mode.
        images: (B, C, H, W) clean images x_0 on the network's device.
        noise: (B, K, C, H, W) the noise of each image at each timestep.
        timesteps: (K,) long.
    Returns:
        (B, L) float32: ||grad_{theta_l} mean_j L_j||_2 for the L parameter tensors, in `named_parameters` order.
    """
    params = {name: p.detach() for name, p in network.named_parameters()}
    num_t = len(timesteps)

    def loss(
        p: dict[str, Tensor], x_0: Tensor, eps: Tensor
    ) -> Tensor:  # one image: x_0 (C, H, W), eps (K, ...)
        x_t = schedule.q_sample(x_0.expand(num_t, *x_0.shape), timesteps, eps)  # (K, C, H, W)
        return (functional_call(network, p, (x_t, timesteps)) - eps).square().mean()

    def norms(x_0: Tensor, eps: Tensor) -> Tensor:
        return torch.stack([g.norm() for g in grad(loss)(params, x_0, eps).values()])

    # The fused CPU attention kernel has no vmap batching rule (functorch would loop over the samples); the math
    # kernel is built from batched matmuls and softmax.
    with sdpa_kernel(SDPBackend.MATH):
        return vmap(norms)(images, noise)


def gradient_features(
    model: NoisePredictor,
    schedule: Schedule,
    images: Tensor,
    sample_ids: np.ndarray,
    cfg: GSAConfig,
    seed: int,
) -> Tensor:
    """GSA's features of every image, computed in vmap batches of `cfg.batch_size` images.

    Args:
        model: a predictor with weights (`eps_network`).
        images: (N, C, H, W) in [-1, 1].
        sample_ids: (N,) ids seeding each image's noise.
        cfg: variant, timesteps and batch size.
        seed: `attack.seed` of the per-sample noise.
    Returns:
        (N, L) float64 features, one per parameter tensor (see the module docstring).
    """
    check_timesteps(cfg.timesteps, schedule, "attack.gsa.timesteps")
    network = eps_network(model)
    device = model_device(model, images.device)
    steps = torch.tensor(cfg.timesteps, dtype=torch.long, device=device)
    was_training = network.training
    network.eval()  # dropout off: the features are deterministic given the noise
    try:
        parts = []
        for sl in batch_slices(len(images), cfg.batch_size):
            x_0 = images[sl].to(device)
            noise = torch.stack(
                [per_sample_noise(seed, sample_ids[sl], tuple(x_0.shape[1:]), t) for t in cfg.timesteps],
                dim=1,
            ).to(device)  # (b, K, C, H, W)
            if cfg.variant == "gsa1":
                feats = layer_gradient_norms(network, schedule, x_0, noise, steps)
            else:  # gsa2: one gradient per timestep, norms averaged
                feats = torch.stack(
                    [
                        layer_gradient_norms(network, schedule, x_0, noise[:, j : j + 1], steps[j : j + 1])
                        for j in range(len(steps))
                    ]
                ).mean(dim=0)
            parts.append(feats.double().cpu())
    finally:
        network.train(was_training)
    return torch.cat(parts)


def fit_classifier(
    features: np.ndarray, is_member: np.ndarray, cfg: GSAConfig, seed: int
) -> GradientBoostingClassifier:
    """A `GradientBoostingClassifier` fitted to (features (n, L), is_member (n,)); deterministic given `seed`."""
    clf = GradientBoostingClassifier(
        n_estimators=cfg.num_estimators,
        max_depth=cfg.max_depth,
        learning_rate=cfg.learning_rate,
        random_state=seed,
    )
    return clf.fit(features, is_member)


def gsa_section(cfg: AttackConfig, attack: str = "gsa") -> GSAConfig:
    """The section of GSA attack `attack` ("gsa", "gsa_shadow"): its catalog entry's own."""
    return own_section(cfg, attack, GSAConfig, "GSA")


@dataclass(frozen=True)
class ShadowModel:
    """A reference model and the images the attacker features on it, knowing which of them it trained on.

    Attributes:
        predictor, schedule: the model (its weights reachable by `eps_network`) and its noise schedule.
        images: (n, C, H, W) in [-1, 1].
        sample_ids: (n,) distinct non-negative ids seeding each image's noise, as on the target.
        is_in: (n,) bool, whether the model trained on the image; both values occur.
    """

    predictor: NoisePredictor
    schedule: Schedule
    images: Tensor
    sample_ids: np.ndarray
    is_in: np.ndarray


@dataclass(frozen=True, eq=False)
class ShadowClassifier:
    """The shadow protocol's classifier and the rows it was fitted on: features of images on reference models,
    labelled by whether that model trained on the image. No row comes from an attacked model.

    Attributes:
        features: (n, L) float64, one row per (reference model, image).
        is_in: (n,) bool labels.
        sample_ids: (n,) the image of each row.
        model_index: (n,) the reference model of each row (its position among `shadow_classifier`'s models).
        classifier: fitted on (features, is_in).
        settings: the feature and classifier settings and the noise seed it was built with (`_settings`).
    """

    features: np.ndarray
    is_in: np.ndarray
    sample_ids: np.ndarray
    model_index: np.ndarray
    classifier: GradientBoostingClassifier
    settings: tuple


def _settings(section: GSAConfig, seed: int) -> tuple:
    """What the features and the classifier depend on (the batch size does not)."""
    return (
        section.variant,
        section.timesteps,
        section.num_estimators,
        section.max_depth,
        section.learning_rate,
        seed,
    )


def shadow_classifier(section: GSAConfig, models: Sequence[ShadowModel], seed: int) -> ShadowClassifier:
    """GSA's features of each reference model's images, and the classifier fitted on all of them.

    Args:
        section: the attack's GSA section (features and classifier settings).
        models: the reference models with their IN and OUT images.
        seed: `attack.seed` (the per-sample noise and the classifier's randomness).
    Raises:
        ValueError: no model, or a model without IN or without OUT images.
    """
    if not models:
        raise ValueError("gsa: the shadow protocol needs at least one reference model")
    rows = []
    for k, model in enumerate(models):
        ids = check_inputs(model.images, model.sample_ids)
        is_in = np.asarray(model.is_in, dtype=bool)
        if is_in.shape != ids.shape or is_in.all() or not is_in.any():
            raise ValueError(
                f"gsa: reference model {k} needs IN and OUT images, got {int(is_in.sum())} IN of {is_in.size} "
                f"labels for {ids.size} images"
            )
        features = gradient_features(
            model.predictor, model.schedule, model.images, ids, section, seed
        ).numpy()
        rows.append((features, is_in, ids, np.full(ids.size, k)))
    features, is_in, ids, index = (np.concatenate(parts) for parts in zip(*rows, strict=True))
    classifier = fit_classifier(features, is_in, section, seed)
    return ShadowClassifier(features, is_in, ids, index, classifier, _settings(section, seed))


@register("gsa")
class GSA(Attack):
    """GSA1 / GSA2. Under the slice protocol `run` returns scores for the held-out (1 - train_fraction) of members
    and non-members; under the shadow protocol, for every candidate, after `with_references`."""

    requires = "model"
    shadow: ShadowClassifier | None = None

    @property
    def section(self) -> GSAConfig:
        """This attack's own section (`attack.gsa`, `attack.gsa_shadow`)."""
        return gsa_section(self.cfg, self.name)

    def with_references(self, shadow: ShadowClassifier) -> GSA:
        """This attack with the shadow protocol's classifier (built with this attack's settings)."""
        section = self.section
        if section.protocol != "shadow":
            raise ValueError(
                f"{self.name}: the slice protocol trains on the target; it takes no reference models"
            )
        if shadow.settings != _settings(section, self.cfg.seed):
            raise ValueError(
                f"{self.name}: the shadow classifier was built with settings {shadow.settings}, "
                f"not {section.SECTION}'s {_settings(section, self.cfg.seed)}"
            )
        calibrated = type(self)(cfg=self.cfg)
        calibrated.shadow = shadow
        return calibrated

    def run(
        self,
        model: NoisePredictor,
        schedule: Schedule,
        images: Tensor,
        sample_ids: np.ndarray,
        is_member: np.ndarray,
    ) -> AttackResult:
        """Score with the classifier's log-odds of "member" (higher = member): the slice protocol fits on the
        leading slice and scores the rest, the shadow protocol scores every image."""
        cfg = self.section
        ids = check_inputs(images, sample_ids)
        is_member = check_labels(is_member, len(images))
        train = None
        if cfg.protocol == "slice":
            train, test = train_test_split(is_member, cfg.train_fraction, self.name)
        elif self.shadow is None:
            raise ValueError(
                f"{self.name} needs its shadow classifier (dualmd.attacks.gsa.shadow_classifier)"
            )
        else:  # every candidate is scored; the target's labels play no part
            test = np.arange(len(ids))
        features = gradient_features(model, schedule, images, ids, cfg, self.cfg.seed).numpy()
        if train is None:
            clf = self.shadow.classifier  # type: ignore[union-attr]
        else:
            clf = fit_classifier(features[train], is_member[train], cfg, self.cfg.seed)
        scores = clf.decision_function(features[test])
        # The whole gradient's norm, a threshold-free diagnostic (members: smaller).
        grad_norm = np.sqrt(np.square(features[test]).sum(axis=1))
        return AttackResult(
            ids[test], is_member[test], scores.astype(np.float64), {"grad_norm": grad_norm}, attack=self.name
        )


@register("gsa_shadow")
class GSAShadow(GSA):
    """`gsa` configured by `attack.gsa_shadow` (the shadow protocol by default)."""
