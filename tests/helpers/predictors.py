"""Hand-written noise predictors whose every output a test can recompute in numpy.

- `affine_eps`: eps_theta(x, t) = c(t) x + d(t), pixel-wise, with slope and offset that change with t, so the
  attack's arithmetic (which point x_t is queried, at which t, with which noise) shows in its score;
- `CheckingPredictor`: `affine_eps` that also records its queries and refuses timesteps that are not a long
  tensor on the images' device (as a UNet on a GPU would).
"""

import numpy as np
import torch


def slope(t):
    """c(t) = 0.3 + t / 400 (t a number or an array)."""
    return 0.3 + np.asarray(t, dtype=np.float64) / 400


def offset(t):
    """d(t) = 0.1 - t / 2000."""
    return 0.1 - np.asarray(t, dtype=np.float64) / 2000


def affine_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """eps_theta(x, t) = c(t) x + d(t) per image, in x's dtype."""
    tt = t.to(torch.float64).view(-1, *([1] * (x.dim() - 1)))
    return ((0.3 + tt / 400) * x.double() + (0.1 - tt / 2000)).to(x.dtype)


def affine_eps_np(x: np.ndarray, t) -> np.ndarray:
    """`affine_eps` in numpy for one timestep t (a number) and x (B, ...)."""
    return slope(t) * x + offset(t)


class CheckingPredictor:
    """`affine_eps` that records (x, t) of every call and asserts t is a long (B,) tensor on x's device."""

    def __init__(self):
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert t.dtype == torch.long, t.dtype
        assert t.shape == (len(x),), t.shape
        assert t.device == x.device, (t.device, x.device)
        self.calls.append((x.clone(), t.clone()))
        return affine_eps(x, t)
