"""Constants and helpers of the text-to-image tests: the dataset ids of the population and the private set, short
training runs, and a UNet whose text guidance is known by hand."""

from types import SimpleNamespace

import torch

from dualmd.config.sections import TrainConfig

NUM_IMAGES = 96
#: Dataset ids of the population (pretraining) and of the private set (members and non-members).
POPULATION, PRIVATE = range(0, 64), range(64, 96)


def short_run(steps: int, **overrides) -> TrainConfig:
    """A TrainConfig of `steps` steps with small batches and no checkpoints in between."""
    base = {"num_train_steps": steps, "batch_size": 16, "lr": 1e-3, "warmup_steps": 5, "log_every_steps": 10}
    return TrainConfig(**{**base, "checkpoint_every_steps": 10_000, **overrides})


class MeanUNet(torch.nn.Module):
    """eps(x_t, t, states) = (t + 1) * mean(states) at every latent entry: the text-conditional noise magnitude is
    (t + 1) * |mean(c) - mean("")| * sqrt(4 * 8 * 8), and its gradient moves every state entry alike."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(in_channels=4, sample_size=8)

    @property
    def device(self):
        return self.anchor.device

    @property
    def dtype(self):
        return self.anchor.dtype

    def forward(self, x, t, encoder_hidden_states):
        t = torch.as_tensor(t, dtype=torch.float32).reshape(-1, 1, 1, 1)
        level = encoder_hidden_states.float().mean(dim=(1, 2)).view(-1, 1, 1, 1) * (t + 1)
        return SimpleNamespace(sample=level.expand_as(x).clone())
