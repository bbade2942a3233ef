"""The copy score in SSCD's form with a tiny TorchScript descriptor saved in the test (per-channel means): cosines of
hand-set colours, the input transform of Wen et al., Table 5's columns of a generation (with CLIP), and the errors."""

import math

import numpy as np
import pytest
import torch
from helpers.clip import WIDTH, constant_towers, tiny_clip

from dualmd.text2image.copy_score import (
    CROP,
    NO_DESCRIPTOR_REASON,
    copy_similarities,
    descriptor_inputs,
    descriptors,
    load_descriptor,
)
from dualmd.text2image.prompt_memorization import ImageScorers


class ChannelMeans(torch.nn.Module):
    """Descriptor = the mean of each channel: a constant-colour image's descriptor is its colour."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class PerPixel(torch.nn.Module):
    """Not a descriptor: returns the image itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.fixture
def descriptor_file(tmp_path):
    path = tmp_path / "means.torchscript.pt"
    torch.jit.script(ChannelMeans()).save(str(path))
    return path


def colours(*rgb, size=32):
    """Constant-colour images (N, 3, size, size), one per RGB triple in [-1, 1]."""
    return torch.tensor(rgb, dtype=torch.float32).view(-1, 3, 1, 1).expand(-1, -1, size, size).clone()


GENERATED = colours((1.0, 0.0, 0.0), (0.0, -1.0, 0.0))
OWN = colours((1.0, 1.0, 0.0), (0.0, 1.0, 0.0))
MEMBERS = colours((0.0, 0.0, 1.0), (1.0, 1.0, 0.0), (0.5, 0.0, 0.0), (0.0, -0.5, 0.5))
R = 1 / math.sqrt(2)


def test_copy_scores_are_descriptor_cosines(descriptor_file):
    """red vs yellow 1/sqrt(2); red's best member is the darker red (1.0, at row 2); minus-green vs its own green
    image -1, its best member (0, -0.5, 0.5) at 1/sqrt(2) (row 3)."""
    model = load_descriptor(descriptor_file)
    scores = copy_similarities(
        descriptors(model, GENERATED, batch_size=1),
        descriptors(model, OWN),
        descriptors(model, MEMBERS, batch_size=3),
    )
    np.testing.assert_allclose(scores["own"], [R, -1.0], atol=1e-6)
    np.testing.assert_allclose(scores["max"], [1.0, R], atol=1e-6)
    assert scores["nearest"].tolist() == [2, 3]


def test_descriptor_inputs_follow_wen_et_al():
    """Shorter side to 256, centre crop 224, values kept in [-1, 1], grey repeated to RGB."""
    wide = torch.cat(
        [torch.full((1, 1, 32, 32), -1.0), torch.full((1, 1, 32, 32), 1.0)], dim=3
    )  # (1, 1, 32, 64)
    x = descriptor_inputs(wide)
    assert x.shape == (1, 3, CROP, CROP) and x.min() >= -1 and x.max() <= 1
    # 256 x 512 after resizing; the central 224 columns straddle the edge at column 256 symmetrically
    assert torch.equal(x[0, 0], x[0, 2]) and abs(float(x.mean())) < 1e-6
    assert float(x[0, 0, :, 0].mean()) == pytest.approx(-1.0) and float(
        x[0, 0, :, -1].mean()
    ) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="expected images"):
        descriptor_inputs(torch.zeros(1, 2, 8, 8))


def test_bad_descriptors_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="copy_descriptor"):
        load_descriptor(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not an archive")
    with pytest.raises(ValueError, match="not a TorchScript file"):
        load_descriptor(tmp_path / "text.pt")
    path = tmp_path / "pixels.pt"
    torch.jit.script(PerPixel()).save(str(path))
    with pytest.raises(ValueError, match=r"returned \(2, 3, 224, 224\) for 2 images"):
        descriptors(load_descriptor(path), GENERATED)


def test_image_scorers_give_table5_columns(descriptor_file, tmp_path):
    """With both networks: the descriptor cosines above and CLIP cosines of hand-set embeddings (every image embeds
    to e1, every prompt to (e1 + e2) / sqrt(2)); without them: NaN and the reasons."""
    e1, e2 = np.eye(WIDTH)[0], np.eye(WIDTH)[1]
    model, processor = tiny_clip(tmp_path)
    clip = (constant_towers(model, e1, (e1 + e2) / math.sqrt(2)), processor)
    scorers = ImageScorers(
        descriptor=load_descriptor(descriptor_file),
        descriptor_name="means.torchscript.pt",
        clip=clip,
        clip_name="clip (16 px)",
        batch_size=2,
    )
    columns = scorers.columns(GENERATED, ["a red digit", "a green digit"], OWN, MEMBERS)
    np.testing.assert_allclose(columns["sscd_own"], [R, -1.0], atol=1e-6)
    np.testing.assert_allclose(columns["sscd_max"], [1.0, R], atol=1e-6)
    assert columns["sscd_nearest"].tolist() == [2, 3]
    np.testing.assert_allclose(columns["clip_cosine"], [R, R], atol=1e-5)
    assert columns["sscd_absent_reason"] is None and columns["clip_absent_reason"] is None
    assert (columns["sscd_model"], columns["clip_model"]) == ("means.torchscript.pt", "clip (16 px)")
    absent = ImageScorers().columns(GENERATED, ["a", "b"], OWN, MEMBERS)
    assert np.isnan(absent["sscd_own"]).all() and np.isnan(absent["clip_cosine"]).all()
    assert (
        absent["sscd_nearest"].tolist() == [-1, -1] and absent["sscd_model"] is absent["clip_model"] is None
    )
    assert absent["sscd_absent_reason"] == NO_DESCRIPTOR_REASON
    assert "memorization.clip_path" in absent["clip_absent_reason"]
