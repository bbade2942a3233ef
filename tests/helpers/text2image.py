"""Constants and helpers of the text-to-image tests: the dataset ids of the population and the private set, and
short training runs."""

from dualmd.config.sections import TrainConfig

NUM_IMAGES = 96
#: Dataset ids of the population (pretraining) and of the private set (members and non-members).
POPULATION, PRIVATE = range(0, 64), range(64, 96)


def short_run(steps: int, **overrides) -> TrainConfig:
    """A TrainConfig of `steps` steps with small batches and no checkpoints in between."""
    base = {"num_train_steps": steps, "batch_size": 16, "lr": 1e-3, "warmup_steps": 5, "log_every_steps": 10}
    return TrainConfig(**{**base, "checkpoint_every_steps": 10_000, **overrides})
