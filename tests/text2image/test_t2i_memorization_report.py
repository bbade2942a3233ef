"""The memorization-on-prompts report: AUCs of constructed detector values, copy rates, the CSV columns, the
Markdown and the plots."""

import numpy as np
import pandas as pd
import pytest

from dualmd.text2image.memorization_report import (
    ROW_COLUMNS,
    copy_table,
    detector_table,
    load_rows,
    prompt_values,
    table5_markdown,
    write_prompt_memorization,
)

DETECTOR_COLUMNS = [
    "target",
    "detector",
    "auc",
    "auc_low",
    "auc_high",
    "num_memorized",
    "num_other",
    "memorized_median",
    "other_median",
]


def rows(
    noise,
    t_error,
    *,
    copies=None,
    generations=2,
    mitigation="none",
    sscd=None,
    clip=None,
    sscd_model="sscd_disc_large.torchscript.pt",
    clip_model="clip-vit-large-patch14 (224 px, projection 768-d)",
):
    """Score rows of 8 prompts (ids 0-3 memorized, 4-7 other): per prompt a noise magnitude (each generation
    at value -+ 0.5, so the mean is the value) and a t-error; `copies` marks generation 0 of those ids a copy of
    its own image. `sscd` (per prompt: own-image similarity; the max over members is 0.1 more) and `clip` (per
    prompt: CLIP cosine) are absent, with a reason, when None; else from the networks named `sscd_model` and
    `clip_model`."""
    out = []
    for k in range(generations):
        for i in range(8):
            is_copy = copies is not None and k == 0 and i in copies
            out.append(
                {
                    "image_id": i,
                    "group": "memorized" if i < 4 else "other",
                    "prompt": f"prompt {i}",
                    "generation": k,
                    "mitigation": mitigation,
                    "noise_magnitude": noise[i] + (0.5 if k % 2 else -0.5),
                    "t_error": t_error[i],
                    "copy_ratio": 0.0 if is_copy else 0.9,
                    "is_copy": is_copy,
                    "nearest_member": i if is_copy else 100 + i,
                    "nearest_distance": 0.0 if is_copy else 2.0,
                    "own_distance": 0.0 if is_copy else 4.0,
                    "sscd_own": np.nan if sscd is None else sscd[i],
                    "sscd_max": np.nan if sscd is None else sscd[i] + 0.1,
                    "sscd_nearest_member": -1 if sscd is None else 100 + i,
                    "clip_cosine": np.nan if clip is None else clip[i],
                    "sscd_model": None if sscd is None else sscd_model,
                    "clip_model": None if clip is None else clip_model,
                    "sscd_absent_reason": "no descriptor here" if sscd is None else None,
                    "clip_absent_reason": "no CLIP here" if clip is None else None,
                }
            )
    return pd.DataFrame(out, columns=list(ROW_COLUMNS))


NOISE = [5.0, 6.0, 7.0, 8.0, 1.0, 2.0, 3.0, 9.0]  # the other prompt 9.0 beats every memorized one
T_ERROR = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]  # memorized: the lower round-trip errors


def test_aucs_of_constructed_detectors():
    table = detector_table(
        {"baseline": rows(NOISE, T_ERROR), "dualmd": rows(NOISE, [np.nan] * 8)}, num_bootstrap=200, seed=0
    )
    assert list(table.columns) == DETECTOR_COLUMNS
    base = table[table["target"] == "baseline"].set_index("detector")
    # 16 (memorized, other) pairs; the other prompt at 9.0 outranks all 4 memorized ones: 12 / 16
    assert base.loc["noise_magnitude", "auc"] == pytest.approx(0.75)
    # every memorized t-error is below every other one: the negated t-error separates them perfectly
    assert base.loc["t_error", "auc"] == pytest.approx(1.0)
    assert base.loc["t_error", "auc_low"] == base.loc["t_error", "auc_high"] == pytest.approx(1.0)
    assert base.loc["noise_magnitude", "auc_low"] <= 0.75 <= base.loc["noise_magnitude", "auc_high"]
    assert base.loc["noise_magnitude", "auc_high"] - base.loc["noise_magnitude", "auc_low"] > 0.1
    assert base.loc["noise_magnitude", ["num_memorized", "num_other"]].tolist() == [4, 4]
    assert base.loc["noise_magnitude", "memorized_median"] == pytest.approx(6.5)
    assert base.loc["noise_magnitude", "other_median"] == pytest.approx(2.5)
    # DualMD has no t-error: only its noise-magnitude row
    assert table[table["target"] == "dualmd"]["detector"].tolist() == ["noise_magnitude"]


def test_swapping_the_groups_flips_the_auc():
    flipped = detector_table({"baseline": rows(NOISE[4:] + NOISE[:4], T_ERROR)}, num_bootstrap=0, seed=0)
    assert flipped.set_index("detector").loc["noise_magnitude", "auc"] == pytest.approx(0.25)
    assert np.isnan(flipped["auc_low"]).all()  # no resamples, no interval


def test_prompt_values_average_the_generations():
    values = prompt_values(rows(NOISE, T_ERROR, generations=4))
    np.testing.assert_allclose(values["noise_magnitude"], NOISE)
    assert values["group"].tolist() == ["memorized"] * 4 + ["other"] * 4


def test_copy_rates_per_group():
    table = copy_table({"baseline": rows(NOISE, T_ERROR, copies={0, 1, 4})})
    memorized, other = (table[table["group"] == g].iloc[0] for g in ("memorized", "other"))
    # 8 generations per group; generation 0 of prompts 0 and 1 copies, of prompt 4 too
    assert (memorized["copies"], memorized["num_generations"], memorized["num_prompts"]) == (2, 8, 4)
    assert memorized["copy_rate"] == pytest.approx(0.25) and other["copy_rate"] == pytest.approx(0.125)
    assert memorized["nearest_is_own_rate"] == pytest.approx(0.25)
    assert memorized["mean_own_distance"] == pytest.approx(4.0 * 6 / 8)


SSCD = [0.9, 0.8, 0.7, 0.6, 0.2, 0.1, 0.3, 0.4]
CLIP = [0.30, 0.20, 0.25, 0.25, 0.10, 0.30, 0.20, 0.20]


def test_table5_scores_per_group_and_mitigation():
    """Means over the generations of each group and of all prompts; the mitigated rows of a target are rows of
    their own, and the detectors ignore them (the mitigation lowers the noise magnitude on purpose)."""
    plain = rows(NOISE, T_ERROR, sscd=SSCD, clip=CLIP)
    mitigated = rows([0.0] * 8, [np.nan] * 8, mitigation="wen", sscd=[s / 2 for s in SSCD], clip=CLIP)
    both = pd.concat([plain, mitigated], ignore_index=True)
    table = copy_table({"baseline": both}).set_index(["mitigation", "group"])
    assert table.index.tolist() == [(m, g) for m in ("none", "wen") for g in ("memorized", "other", "all")]
    assert table.loc[("none", "memorized"), "sscd_own_mean"] == pytest.approx(0.75)  # (0.9+0.8+0.7+0.6)/4
    assert table.loc[("none", "other"), "sscd_own_mean"] == pytest.approx(0.25)
    assert table.loc[("none", "all"), "sscd_own_mean"] == pytest.approx(0.5)
    assert table.loc[("none", "all"), "sscd_max_mean"] == pytest.approx(0.6)
    assert table.loc[("wen", "memorized"), "sscd_own_mean"] == pytest.approx(0.375)
    # CLIP score: 100 x the mean cosine, memorized (0.30+0.20+0.25+0.25)/4 = 0.25, all prompts 1.8/8 = 0.225
    assert table.loc[("none", "memorized"), "clip_score"] == pytest.approx(25.0)
    assert table.loc[("none", "all"), "clip_score"] == pytest.approx(22.5)
    assert table["sscd_absent_reason"].isna().all() and table["clip_absent_reason"].isna().all()
    assert table.loc[("none", "all"), "num_generations"] == 16
    detectors = detector_table({"baseline": both}, num_bootstrap=0, seed=0).set_index("detector")
    assert detectors.loc["noise_magnitude", "auc"] == pytest.approx(0.75)  # the unmitigated rows only
    assert detectors.loc["noise_magnitude", "memorized_median"] == pytest.approx(6.5)
    absent = copy_table({"baseline": plain.assign(sscd_own=np.nan, sscd_absent_reason="no descriptor")})
    assert absent["sscd_own_mean"].isna().all() and set(absent["sscd_absent_reason"]) == {"no descriptor"}


@pytest.mark.parametrize("standin", [False, True], ids=["paper-networks", "standins"])
def test_table5_names_its_networks_and_heads_a_standins_columns_as_one(standin):
    from dualmd.config.evaluation import STANDIN_CLIP_LABEL, STANDIN_DESCRIPTOR_LABEL

    names = {"sscd_model": STANDIN_DESCRIPTOR_LABEL, "clip_model": STANDIN_CLIP_LABEL} if standin else {}
    text = "\n".join(
        table5_markdown(copy_table({"baseline": rows(NOISE, T_ERROR, sscd=SSCD, clip=CLIP, **names)}))
    )
    assert "| No defense | 0.750 | 0.250 | 0.500 | 0.600 | 22.50 |" in text
    header = next(line for line in text.splitlines() if line.startswith("| target"))
    if standin:
        assert header.startswith("| target | stand-in copy score (not SSCD) to own image, memorized |")
        assert header.endswith("| stand-in CLIP score (not OpenAI's CLIP), all |")
        assert (
            f"Copy descriptor: {STANDIN_DESCRIPTOR_LABEL}." in text
            and f"CLIP model: {STANDIN_CLIP_LABEL}." in text
        )
        assert "not comparable with the paper's SSCD and CLIP ViT-L/14 numbers" in text
    else:
        assert header.startswith("| target | SSCD to own image, memorized |") and header.endswith(
            "| CLIP score, all |"
        )
        assert "Copy descriptor: sscd_disc_large.torchscript.pt." in text and "stand-in" not in text.lower()


def test_report_files(tmp_path):
    scores = tmp_path / "scores"
    scores.mkdir()
    # written in the wrong order on purpose: the report orders the targets
    rows(NOISE, [np.nan] * 8, copies={0}).to_csv(scores / "dualmd_pd.csv", index=False)
    pd.concat(
        [
            rows(NOISE, T_ERROR, copies={0, 1}),
            rows(NOISE, [np.nan] * 8, copies={0}, mitigation="wen", clip=CLIP),
        ]
    ).to_csv(scores / "baseline.csv", index=False)
    rows(NOISE, T_ERROR).to_csv(scores / "teacher2.csv", index=False)
    files = sorted(scores.glob("*.csv"))
    assert list(load_rows(files)) == ["baseline", "teacher2", "dualmd_pd"]
    out = {name: tmp_path / name for name in ("t.csv", "c.csv", "r.md", "te.png", "nm.png")}
    write_prompt_memorization(
        files,
        num_bootstrap=50,
        seed=0,
        table=out["t.csv"],
        copies=out["c.csv"],
        markdown=out["r.md"],
        plots={"t_error": out["te.png"], "noise_magnitude": out["nm.png"]},
    )
    table = pd.read_csv(out["t.csv"])
    assert list(table.columns) == DETECTOR_COLUMNS and len(table) == 2 + 2 + 1
    copies = pd.read_csv(out["c.csv"])
    assert copies["target"].tolist() == ["baseline"] * 6 + ["teacher2"] * 3 + ["dualmd_pd"] * 3
    assert copies["mitigation"].tolist()[:6] == ["none"] * 3 + ["wen"] * 3
    text = out["r.md"].read_text()
    assert "| No defense | 1.00 [1.00, 1.00] | 0.75 [" in text
    assert "| DualMD, PD | n/a | 0.75 [" in text and "| DualMD teacher 2 |" in text
    assert "| No defense | 0.25 (2/8) | 0.00 (0/8) | 0.25 | 0.00 |" in text
    assert "| No defense, Wen et al. | 0.12 (1/8) | 0.00 (0/8) | 0.12 | 0.00 |" in text
    # Table 5: the copy score absent everywhere (with the reason), the mitigated CLIP score 100 x 0.225
    assert "| No defense, Wen et al. | absent | absent | absent | absent | 22.50 |" in text
    assert "| No defense | absent | absent | absent | absent | absent |" in text
    assert "SSCD absent: no descriptor here." in text and "CLIP score absent: no CLIP here." in text
    assert out["te.png"].stat().st_size > 1000 and out["nm.png"].stat().st_size > 1000


def test_a_file_without_the_score_columns_is_refused(tmp_path):
    pd.DataFrame({"image_id": [1]}).to_csv(tmp_path / "baseline.csv", index=False)
    with pytest.raises(ValueError, match="not a prompt-memorization score file"):
        load_rows([tmp_path / "baseline.csv"])
