"""The report's tables, metrics.json, roc.csv and report.md, from small input files with known numbers.

The inputs have the formats the earlier stages write: an attack's metrics JSON (`stages.metrics.evaluate`), a
sampler's utility JSON (`stages.utility.utility`), copy detection and t-error JSONs (`stages.memorization`), a
model directory's metadata.json (`train.run_and_save`), ROC CSVs and the split's JSON sidecar. Values are
binary fractions where sums and means are checked, so equality is exact.
"""

import json
import math

import pandas as pd
import pytest

from dualmd.report import (
    UTILITY_COLUMNS,
    attack_table,
    combined_roc,
    flat_metrics,
    halves_table,
    memorization_table,
    pia_sweep_table,
    strength_sweep_table,
    strongest_attacks,
    strongest_lines,
    training_table,
    utility_table,
    with_intervals,
    write_report,
)


def _metric_row(target, auc, asr, tpr, num_members, num_nonmembers, sweep=None):
    """One row of an attack's metrics JSON, with one FPR bound (0.01); each metric is (value, low, high)."""
    row = {"target": target}
    for name, (value, low, high) in (("auc", auc), ("asr", asr), ("tpr_at_fpr_0.01", tpr)):
        row |= {name: value, f"{name}_low": low, f"{name}_high": high}
    return row | {"num_members": num_members, "num_nonmembers": num_nonmembers, "sweep": sweep or {}}


PIA_SWEEP = {
    "100": {"auc": 0.5, "tpr_at_fpr_0.01": 0.0},
    "20": {"auc": 0.75, "tpr_at_fpr_0.01": 0.125},
    "5": {"auc": 0.625, "tpr_at_fpr_0.01": 0.0625},
}
ATTACKS = {
    "pia": [
        _metric_row(
            "baseline", (0.8123, 0.7, 0.9), (0.75, 0.625, 0.875), (0.25, 0.125, 0.5), 40, 32, PIA_SWEEP
        )
    ],
    # Not in catalog order (teacher1 comes before dualmd there), and alphabetical order = this file's order.
    "loss": [
        _metric_row("dualmd", (0.5, 0.375, 0.625), (0.5, 0.5, 0.5625), (0.0, 0.0, 0.03125), 40, 32),
        _metric_row(
            "teacher1", (0.6875, 0.5625, 0.8125), (0.625, 0.5625, 0.6875), (0.125, 0.0625, 0.1875), 20, 32
        ),
    ],
}
# Input order student, dualmd, baseline; catalog order baseline, student, dualmd; alphabetical differs from both.
UTILITY = [
    {
        "sampler": "student",
        "fid": 12.5,
        "fid_low": 11.0,
        "fid_high": 14.0,
        "kid": 0.5,
        "kid_se": 0.125,
        "inception_score": 1.25,
        "inception_score_std": 0.125,
    },
    {
        "sampler": "dualmd",
        "fid": 10.0,
        "fid_low": 9.5,
        "fid_high": 10.5,
        "kid": 0.25,
        "kid_se": 0.0625,
        "inception_score": 1.5,
        "inception_score_std": 0.25,
    },
    {
        "sampler": "baseline",
        "fid": 3.0,
        "fid_low": 2.5,
        "fid_high": 3.75,
        "kid": 0.03125,
        "kid_se": 0.015625,
        "inception_score": None,
        "inception_score_std": None,
        "is_absent_reason": "pixels: no class probabilities",
    },
]
# Held-out loss of every model with weights; teacher1 has no sampler file, so its row holds only this.
HELDOUT = {
    "models": {
        "teacher1": {"mean": 0.75, "low": 0.5, "high": 1.0, "per_sample": [0.5, 1.0]},
        "student": {"mean": 0.375, "low": 0.25, "high": 0.5, "per_sample": [0.25, 0.5]},
        "baseline": {"mean": 0.25, "low": 0.125, "high": 0.375, "per_sample": [0.125, 0.375]},
    }
}
UTILITY_SETTINGS = {
    "scheduler": "ddim",
    "num_inference_steps": 10,
    "feature_net": "pixels",
    "num_images": 16,
    "num_reference": 40,  # written by the stage, not a column of the table
}
T_ERROR = {
    "models": [
        {"model": "teacher2", "auc": 0.5625, "member_median": 0.0123456, "nonmember_median": 2.5},
        {"model": "baseline", "auc": 0.625, "member_median": 0.25, "nonmember_median": 0.5},
    ]
}
COPIES = [
    {"sampler": "dualmd", "copy_rate": 0.25, "num_copies": 1, "num_generated": 4, "threshold": 1 / 3},
    {"sampler": "baseline", "copy_rate": 0.5, "num_copies": 2, "num_generated": 4, "threshold": 1 / 3},
]
# Input order teacher1, student, baseline; catalog order baseline, teacher1, student.
MODELS = {
    "teacher1": {
        "subset": "half1",
        "num_train_steps": 100,
        "loss_curve": [[50, 0.5], [100, 0.25]],
        "probe": {"member_loss": [0.25, 0.75], "nonmember_loss": [1.0, 2.0]},
        "wall_time_s": 12.5,
    },
    "student": {
        "subset": "members",
        "num_train_steps": 200,
        "loss_curve": [[100, 0.5], [200, 0.125]],
        "probe": {"member_loss": [0.5], "nonmember_loss": [0.5]},
        "wall_time_s": 30.0,
    },
    # No loss history, no probe and no wall time: those cells are empty.
    "baseline": {"subset": "members", "num_train_steps": 300, "loss_curve": []},
}
ROCS = {
    "pia": pd.DataFrame(
        {"attack": "pia", "target": "baseline", "fpr": [0.0, 0.0, 1.0], "tpr": [0.0, 0.5, 1.0]}
    ),
    "loss": pd.DataFrame(
        {
            "attack": "loss",
            "target": ["teacher1", "teacher1", "dualmd", "dualmd"],
            "fpr": [0.0, 1.0, 0.0, 1.0],
            "tpr": [0.0, 1.0, 0.25, 1.0],
        }
    ),
}
SPLIT_META = {"counts": {"members": 40, "nonmembers": 32, "half1": 20, "half2": 20}, "fingerprint": "abc"}

#: metrics.json of these inputs, by hand: every number of every attack row, FID and IS when present (the
#: baseline's IS is None), and every memorization value.
EXPECTED_METRICS = {
    "attack/loss/teacher1/num_members": 20.0,
    "attack/loss/teacher1/num_nonmembers": 32.0,
    "attack/loss/teacher1/auc": 0.6875,
    "attack/loss/teacher1/auc_low": 0.5625,
    "attack/loss/teacher1/auc_high": 0.8125,
    "attack/loss/teacher1/asr": 0.625,
    "attack/loss/teacher1/asr_low": 0.5625,
    "attack/loss/teacher1/asr_high": 0.6875,
    "attack/loss/teacher1/tpr_at_fpr_0.01": 0.125,
    "attack/loss/teacher1/tpr_at_fpr_0.01_low": 0.0625,
    "attack/loss/teacher1/tpr_at_fpr_0.01_high": 0.1875,
    "attack/loss/dualmd/num_members": 40.0,
    "attack/loss/dualmd/num_nonmembers": 32.0,
    "attack/loss/dualmd/auc": 0.5,
    "attack/loss/dualmd/auc_low": 0.375,
    "attack/loss/dualmd/auc_high": 0.625,
    "attack/loss/dualmd/asr": 0.5,
    "attack/loss/dualmd/asr_low": 0.5,
    "attack/loss/dualmd/asr_high": 0.5625,
    "attack/loss/dualmd/tpr_at_fpr_0.01": 0.0,
    "attack/loss/dualmd/tpr_at_fpr_0.01_low": 0.0,
    "attack/loss/dualmd/tpr_at_fpr_0.01_high": 0.03125,
    "attack/pia/baseline/num_members": 40.0,
    "attack/pia/baseline/num_nonmembers": 32.0,
    "attack/pia/baseline/auc": 0.8123,
    "attack/pia/baseline/auc_low": 0.7,
    "attack/pia/baseline/auc_high": 0.9,
    "attack/pia/baseline/asr": 0.75,
    "attack/pia/baseline/asr_low": 0.625,
    "attack/pia/baseline/asr_high": 0.875,
    "attack/pia/baseline/tpr_at_fpr_0.01": 0.25,
    "attack/pia/baseline/tpr_at_fpr_0.01_low": 0.125,
    "attack/pia/baseline/tpr_at_fpr_0.01_high": 0.5,
    "utility/baseline/heldout_loss": 0.25,
    "utility/baseline/heldout_loss_low": 0.125,
    "utility/baseline/heldout_loss_high": 0.375,
    "utility/baseline/fid": 3.0,
    "utility/baseline/fid_low": 2.5,
    "utility/baseline/fid_high": 3.75,
    "utility/baseline/kid": 0.03125,
    "utility/baseline/kid_se": 0.015625,
    "utility/teacher1/heldout_loss": 0.75,
    "utility/teacher1/heldout_loss_low": 0.5,
    "utility/teacher1/heldout_loss_high": 1.0,
    "utility/student/heldout_loss": 0.375,
    "utility/student/heldout_loss_low": 0.25,
    "utility/student/heldout_loss_high": 0.5,
    "utility/student/fid": 12.5,
    "utility/student/fid_low": 11.0,
    "utility/student/fid_high": 14.0,
    "utility/student/kid": 0.5,
    "utility/student/kid_se": 0.125,
    "utility/student/inception_score": 1.25,
    "utility/dualmd/fid": 10.0,
    "utility/dualmd/fid_low": 9.5,
    "utility/dualmd/fid_high": 10.5,
    "utility/dualmd/kid": 0.25,
    "utility/dualmd/kid_se": 0.0625,
    "utility/dualmd/inception_score": 1.5,
    "memorization/copy_rate/baseline": 0.5,
    "memorization/copy_rate/dualmd": 0.25,
    "memorization/t_error/baseline": 0.625,
    "memorization/t_error/teacher2": 0.5625,
}


def _write_json(path, obj):
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def inputs(tmp_path):
    """The keyword arguments of `write_report` (less out_dir), every file written under tmp_path/in."""
    root = tmp_path / "in"
    root.mkdir()
    model_dirs = []
    for model_id, meta in MODELS.items():
        (root / model_id).mkdir()
        _write_json(root / model_id / "metadata.json", {"model_id": model_id, **meta})
        model_dirs.append(root / model_id)
    for name, roc in ROCS.items():
        roc.to_csv(root / f"{name}_roc.csv", index=False)
    return {
        "attack_files": [
            _write_json(root / f"{a}.json", {"attack": a, "rows": r}) for a, r in ATTACKS.items()
        ],
        "roc_files": [root / f"{name}_roc.csv" for name in ROCS],
        "utility_files": [
            _write_json(root / f"utility_{u['sampler']}.json", {**UTILITY_SETTINGS, **u}) for u in UTILITY
        ],
        "heldout_file": _write_json(root / "heldout_loss.json", HELDOUT),
        "copy_files": [_write_json(root / f"copies_{c['sampler']}.json", c) for c in COPIES],
        "t_error_file": _write_json(root / "t_error.json", T_ERROR),
        "model_dirs": model_dirs,
        "split_meta": SPLIT_META,
    }


def test_attack_table_orders_rows_by_attack_then_catalog_target(inputs):
    table = attack_table(inputs["attack_files"])
    assert list(zip(table["attack"], table["target"], strict=True)) == [
        ("loss", "teacher1"),
        ("loss", "dualmd"),
        ("pia", "baseline"),
    ]
    assert table["auc"].tolist() == [0.6875, 0.5, 0.8123]
    assert table["num_members"].tolist() == [20, 40, 40]


def test_attack_table_columns_counts_then_metrics_each_followed_by_its_interval(tmp_path):
    # Keys in scrambled order and two FPR bounds: TPR at the larger bound (1%) comes before 0.1%.
    row = {
        "tpr_at_fpr_0.001_high": 0.1,
        "asr_high": 0.8,
        "num_nonmembers": 8,
        "tpr_at_fpr_0.01": 0.2,
        "auc_low": 0.6,
        "tpr_at_fpr_0.001": 0.05,
        "asr": 0.7,
        "target": "baseline",
        "tpr_at_fpr_0.01_low": 0.1,
        "auc": 0.75,
        "tpr_at_fpr_0.001_low": 0.0,
        "asr_low": 0.6,
        "sweep": {"10": {"auc": 0.5}},
        "auc_high": 0.9,
        "tpr_at_fpr_0.01_high": 0.3,
        "num_members": 8,
    }
    table = attack_table([_write_json(tmp_path / "m.json", {"attack": "pian", "rows": [row]})])
    assert table.columns.tolist() == [
        "attack",
        "target",
        "num_members",
        "num_nonmembers",
        "auc",
        "auc_low",
        "auc_high",
        "asr",
        "asr_low",
        "asr_high",
        "tpr_at_fpr_0.01",
        "tpr_at_fpr_0.01_low",
        "tpr_at_fpr_0.01_high",
        "tpr_at_fpr_0.001",
        "tpr_at_fpr_0.001_low",
        "tpr_at_fpr_0.001_high",
        "inverted",
    ]
    assert table.iloc[0]["tpr_at_fpr_0.001_high"] == 0.1


def test_attack_table_flags_an_auc_whose_whole_interval_lies_below_half_as_inverted(tmp_path):
    # Interval below 0.5: inverted. Point estimate below 0.5 but interval reaching 0.5: not (chance is possible).
    rows = [
        {
            "target": "baseline",
            "num_members": 8,
            "num_nonmembers": 8,
            "auc": 0.42,
            "auc_low": 0.36,
            "auc_high": 0.47,
        },
        {
            "target": "student",
            "num_members": 8,
            "num_nonmembers": 8,
            "auc": 0.45,
            "auc_low": 0.38,
            "auc_high": 0.5,
        },
        {
            "target": "teacher1",
            "num_members": 8,
            "num_nonmembers": 8,
            "auc": 0.9,
            "auc_low": 0.8,
            "auc_high": 0.95,
        },
    ]
    table = attack_table([_write_json(tmp_path / "m.json", {"attack": "pian", "rows": rows})])
    assert dict(zip(table["target"], table["inverted"], strict=True)) == {
        "baseline": True,
        "student": False,
        "teacher1": False,
    }


def test_with_intervals_writes_value_low_high_with_three_decimals(inputs):
    shown = with_intervals(attack_table(inputs["attack_files"]))
    assert shown.columns.tolist() == [
        "attack",
        "target",
        "num_members",
        "num_nonmembers",
        "auc",
        "asr",
        "tpr_at_fpr_0.01",
        "inverted",
    ]
    assert shown.iloc[2].to_dict() == {
        "attack": "pia",
        "target": "baseline",
        "num_members": 40,
        "num_nonmembers": 32,
        "auc": "0.812 [0.700, 0.900]",
        "asr": "0.750 [0.625, 0.875]",
        "tpr_at_fpr_0.01": "0.250 [0.125, 0.500]",
        "inverted": False,
    }
    assert shown["auc"].tolist() == ["0.688 [0.562, 0.812]", "0.500 [0.375, 0.625]", "0.812 [0.700, 0.900]"]
    assert shown.iloc[1]["tpr_at_fpr_0.01"] == "0.000 [0.000, 0.031]"


def test_an_unresolvable_tpr_says_how_many_nonmembers_it_needs(tmp_path):
    """300 non-members resolve 1 % FPR but not 0.1 %: that cell is NaN, reads "n/a (needs ≥ 1000 non-members)" in
    the Markdown, is empty in the CSV and absent from metrics.json."""
    path = tmp_path / "gsa.json"
    path.write_text(
        json.dumps(
            {
                "attack": "gsa",
                "rows": [
                    {
                        "target": "baseline",
                        "num_members": 100,
                        "num_nonmembers": 300,
                        "auc": 0.75,
                        "tpr_at_fpr_0.01": 0.125,
                        "tpr_at_fpr_0.001": math.nan,
                        "sweep": {"20": {"auc": 0.5, "tpr_at_fpr_0.01": math.nan}},
                    }
                ],
            }
        )
    )
    table = attack_table([path])
    assert math.isnan(table.loc[0, "tpr_at_fpr_0.001"])
    shown = with_intervals(table).iloc[0]
    assert shown["tpr_at_fpr_0.001"] == "n/a (needs ≥ 1000 non-members)"
    assert shown["tpr_at_fpr_0.01"] == "0.125"
    assert (
        with_intervals(pia_sweep_table([path])).loc[0, "tpr_at_fpr_0.01"] == "n/a (needs ≥ 100 non-members)"
    )
    flat = flat_metrics(table, pd.DataFrame(columns=["target"]), pd.DataFrame(columns=["kind", "target"]))
    assert flat["attack/gsa/baseline/tpr_at_fpr_0.01"] == 0.125
    assert "attack/gsa/baseline/tpr_at_fpr_0.001" not in flat


def test_pia_sweep_table_lists_timesteps_in_numeric_order(inputs):
    expected = pd.DataFrame(
        {
            "attack": "pia",
            "target": "baseline",
            "timestep": [5, 20, 100],
            "auc": [0.625, 0.75, 0.5],
            "tpr_at_fpr_0.01": [0.0625, 0.125, 0.0],
        }
    )
    pd.testing.assert_frame_equal(pia_sweep_table(inputs["attack_files"]), expected, check_dtype=False)


def test_pia_sweep_table_is_empty_when_no_attack_sweeps(inputs):
    assert pia_sweep_table([f for f in inputs["attack_files"] if f.stem == "loss"]).empty


def test_utility_table_rows_in_catalog_order_with_fixed_columns(inputs):
    table = utility_table(inputs["utility_files"], inputs["heldout_file"])
    assert table.columns.tolist() == [
        "target",
        "heldout_loss",
        "heldout_loss_low",
        "heldout_loss_high",
        "fid",
        "fid_low",
        "fid_high",
        "kid",
        "kid_se",
        "inception_score",
        "inception_score_std",
        "num_images",
        "num_reference",
        "scheduler",
        "num_inference_steps",
        "feature_net",
        "note",
    ]
    assert table["target"].tolist() == ["baseline", "teacher1", "student", "dualmd"]
    assert table["heldout_loss"].tolist()[:3] == [0.25, 0.75, 0.375] and math.isnan(table["heldout_loss"][3])
    assert table["heldout_loss_high"].tolist()[:3] == [0.375, 1.0, 0.5]
    assert (
        table["fid"].tolist()[2:] == [12.5, 10.0] and table["fid"][0] == 3.0 and math.isnan(table["fid"][1])
    )
    assert table["fid_low"].tolist()[2:] == [11.0, 9.5] and table["kid_se"].tolist()[2:] == [0.125, 0.0625]
    assert math.isnan(table["inception_score"][0]) and table["inception_score"][2:].tolist() == [1.25, 1.5]
    notes = table["note"].tolist()
    assert notes[0] == "pixels: no class probabilities" and table["note"][1:3].isna().all()
    assert (
        notes[3] == "held-out loss not defined: dualmd samples with teacher1 and teacher2, it has no weights"
    )
    assert table["num_reference"][0] == 40 and table["num_inference_steps"][2:].tolist() == [10, 10]


def test_utility_table_without_heldout_file_has_only_the_samplers(inputs):
    table = utility_table(inputs["utility_files"])
    assert table["target"].tolist() == ["baseline", "student", "dualmd"]
    assert table["heldout_loss"].isna().all() and pd.isna(table["note"][2])


def test_memorization_table_rows_values_and_details(inputs):
    table = memorization_table(inputs["copy_files"], inputs["t_error_file"])
    assert table.to_dict("records") == [
        {"kind": "copy_rate", "target": "baseline", "value": 0.5, "detail": "2/4 under ratio 0.333"},
        {"kind": "copy_rate", "target": "dualmd", "value": 0.25, "detail": "1/4 under ratio 0.333"},
        {
            "kind": "t_error",
            "target": "baseline",
            "value": 0.625,
            "detail": "median t-error members 0.25 / non-members 0.5",
        },
        {
            "kind": "t_error",
            "target": "teacher2",
            "value": 0.5625,
            "detail": "median t-error members 0.01235 / non-members 2.5",
        },
    ]


def test_training_table_final_loss_probe_means_and_gap(inputs):
    nan = float("nan")
    expected = pd.DataFrame(
        {
            "model": ["baseline", "teacher1", "student"],
            "subset": ["members", "half1", "members"],
            "steps": [300, 100, 200],
            "final_loss": [nan, 0.25, 0.125],  # last point of the loss curve
            "probe_member_loss": [nan, 0.5, 0.5],  # mean over the probe timesteps
            "probe_nonmember_loss": [nan, 1.5, 0.5],
            "probe_gap": [nan, 1.0, 0.0],  # non-members minus members
            "wall_time_s": [nan, 12.5, 30.0],
        }
    )
    pd.testing.assert_frame_equal(training_table(inputs["model_dirs"]), expected, check_dtype=False)


def test_flat_metrics_has_every_number_under_section_name_target_keys(inputs):
    flat = flat_metrics(
        attack_table(inputs["attack_files"]),
        utility_table(inputs["utility_files"], inputs["heldout_file"]),
        memorization_table(inputs["copy_files"], inputs["t_error_file"]),
    )
    assert flat == EXPECTED_METRICS
    assert all(type(v) is float for v in flat.values())


def test_flat_metrics_drops_nan_and_none():
    attacks = pd.DataFrame(
        {"attack": ["loss"], "target": ["baseline"], "auc": [0.5], "auc_low": [float("nan")]}
    )
    utility = pd.DataFrame(
        {"target": ["dualmd", "student"], "fid": [None, 2.0], "inception_score": [None, None]}
    ).reindex(columns=["target", *UTILITY_COLUMNS[1:]])
    memorization = pd.DataFrame({"kind": ["t_error"], "target": ["baseline"], "value": [float("nan")]})
    assert flat_metrics(attacks, utility, memorization) == {
        "attack/loss/baseline/auc": 0.5,
        "utility/student/fid": 2.0,
    }


def test_combined_roc_stacks_files_in_order(inputs):
    expected = pd.DataFrame(
        {
            "attack": ["pia"] * 3 + ["loss"] * 4,
            "target": ["baseline"] * 3 + ["teacher1", "teacher1", "dualmd", "dualmd"],
            "fpr": [0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0],
            "tpr": [0.0, 0.5, 1.0, 0.0, 1.0, 0.25, 1.0],
        }
    )
    pd.testing.assert_frame_equal(combined_roc(inputs["roc_files"]), expected, check_dtype=False)


def test_combined_roc_of_no_files_is_an_empty_long_table():
    roc = combined_roc([])
    assert roc.empty and roc.columns.tolist() == ["attack", "target", "fpr", "tpr"]


def _sections(report_md: str) -> dict[str, str]:
    """report.md split at its "## " headings: first word of the heading -> the section's text."""
    return {part.split()[0]: part for part in report_md.split("\n## ")[1:]}


def test_write_report_files_metrics_json_and_markdown(inputs, tmp_path):
    out = tmp_path / "report"
    metrics = write_report(**inputs, out_dir=out)

    assert metrics == EXPECTED_METRICS
    text = (out / "metrics.json").read_text()
    assert json.loads(text) == EXPECTED_METRICS
    assert list(json.loads(text)) == sorted(EXPECTED_METRICS)  # stable order for diffs of dvc metrics

    roc = pd.read_csv(out / "roc.csv")
    assert roc.columns.tolist() == ["attack", "target", "fpr", "tpr"]
    assert roc["target"].tolist() == ["baseline"] * 3 + ["teacher1", "teacher1", "dualmd", "dualmd"]
    assert roc["tpr"].tolist() == [0.0, 0.5, 1.0, 0.0, 1.0, 0.25, 1.0]

    attacks = pd.read_csv(out / "attacks.csv")
    assert attacks["target"].tolist() == ["teacher1", "dualmd", "baseline"]
    assert attacks["auc_high"].tolist() == [0.8125, 0.625, 0.9]
    assert pd.read_csv(out / "utility.csv")["target"].tolist() == [
        "baseline",
        "teacher1",
        "student",
        "dualmd",
    ]
    assert pd.read_csv(out / "training.csv")["probe_gap"].tolist()[1:] == [1.0, 0.0]
    assert pd.read_csv(out / "pia_sweep.csv")["timestep"].tolist() == [5, 20, 100]
    assert "0.812 [0.700, 0.900]" in (out / "attacks.md").read_text()
    assert "0.01235" in (out / "memorization.md").read_text()

    report_md = (out / "report.md").read_text()
    assert report_md.startswith("# dualmd report\n")
    assert "Split: {'members': 40, 'nonmembers': 32, 'half1': 20, 'half2': 20}" in report_md
    sections = _sections(report_md)
    assert list(sections) == ["Membership", "Strongest", "Utility", "Memorization", "Training", "Timestep"]
    # the strongest attack against each target, in catalog order, also as the landing page's lines
    strongest = pd.read_csv(out / "strongest_attacks.csv")
    assert strongest[["target", "attack"]].values.tolist() == [
        ["baseline", "pia"],
        ["teacher1", "loss"],
        ["dualmd", "loss"],
    ]
    assert "- **baseline**: pia (TPR at 1% FPR 0.250, AUC 0.812; strongest of 1)" in sections["Strongest"]
    assert "- ``dualmd``: ``loss`` (TPR at 1% FPR 0.000" in (out / "strongest.rst").read_text()
    for cell in ("0.812 [0.700, 0.900]", "0.688 [0.562, 0.812]", "0.000 [0.000, 0.031]", "teacher1"):
        assert cell in sections["Membership"]
    for cell in (
        "0.250 [0.125, 0.375]",  # held-out loss of the baseline
        "12.500 [11.000, 14.000]",
        "10.000 [9.500, 10.500]",
        "3.000 [2.500, 3.750]",
        "0.0625",  # KID standard error of dualmd
        "1.25",
        "pixels: no class probabilities",
        "held-out loss not defined: dualmd",
        "ddim",
    ):
        assert cell in sections["Utility"]
    for cell in (
        "0.500",
        "0.250",
        "0.625",
        "0.562",
        "2/4 under ratio 0.333",
        "members 0.01235 / non-members 2.5",
    ):
        assert cell in sections["Memorization"]
    for cell in ("0.125", "12.5", "300", "half1"):
        assert cell in sections["Training"]
    for cell in ("0.625", "0.062", "100"):
        assert cell in sections["Timestep"]


def test_strongest_attack_ranks_by_tpr_at_the_bound_then_auc_then_name():
    nan = float("nan")
    rows = [  # (attack, target, TPR at 1% FPR, AUC)
        ("loss", "baseline", 0.25, 0.75),
        ("pia", "baseline", 0.5, 0.625),
        ("recon", "baseline", 0.5, 0.6875),  # ties pia's TPR, higher AUC: strongest
        ("loss", "student", nan, 0.875),
        ("pia", "student", 0.0, 0.5625),  # a measured TPR beats a missing one, whatever the AUCs
        ("nn_distance", "dualmd", nan, 0.5),
        ("recon", "dualmd", nan, 0.625),  # no TPR resolvable: the AUC decides
        ("pia", "teacher1", 0.125, 0.625),
        ("loss", "teacher1", 0.125, 0.625),  # a full tie: the first name
    ]
    table = pd.DataFrame(rows, columns=["attack", "target", "tpr_at_fpr_0.01", "auc"])
    best = strongest_attacks(table, max_fpr=0.01)
    assert best[["target", "attack"]].values.tolist() == [
        ["baseline", "recon"],
        ["teacher1", "loss"],
        ["student", "pia"],
        ["dualmd", "recon"],
    ]
    assert best["num_attacks"].tolist() == [3, 2, 2, 2]
    assert best["tpr_at_fpr_0.01"].tolist()[:3] == [0.5, 0.125, 0.0] and math.isnan(
        best["tpr_at_fpr_0.01"][3]
    )
    lines = strongest_lines(best, rst=False).splitlines()
    assert lines[0] == "- **baseline**: recon (TPR at 1% FPR 0.500, AUC 0.688; strongest of 3)"
    assert lines[3] == "- **dualmd**: recon (TPR at 1% FPR n/a, AUC 0.625; strongest of 2)"
    # ranked at another bound when asked: a table without that column ranks by AUC alone
    assert strongest_attacks(table, max_fpr=0.001)["attack"].tolist() == ["loss", "loss", "loss", "recon"]
    assert strongest_attacks(table.iloc[:0]).empty


def test_write_report_shows_the_set_and_dataset_inference_lines_after_the_strongest_attacks(inputs, tmp_path):
    lines = {
        "dataset": "- ``baseline`` (``loss+pia`` combined; held-out AUC 0.900): smallest set ... n = 8\n",
        "set": "- ``baseline`` (``pia``, strongest): smallest set with median p < 0.01: n = 16\n",
    }
    write_report(**inputs, out_dir=tmp_path / "report", inference_lines=lines)
    sections = _sections((tmp_path / "report" / "report.md").read_text())
    assert list(sections)[:5] == ["Membership", "Strongest", "Set-level", "Dataset-level", "Utility"]
    assert lines["set"] in sections["Set-level"] and lines["dataset"] in sections["Dataset-level"]


def test_write_report_leaves_out_the_sweep_section_without_sweeps(inputs, tmp_path):
    inputs["attack_files"] = [f for f in inputs["attack_files"] if f.stem == "loss"]
    write_report(**inputs, out_dir=tmp_path / "report")
    assert list(_sections((tmp_path / "report" / "report.md").read_text())) == [
        "Membership",
        "Strongest",
        "Utility",
        "Memorization",
        "Training",
    ]


@pytest.mark.parametrize(
    ("key", "damage", "error"),
    [
        ("attack_files", "delete", FileNotFoundError),
        ("attack_files", "corrupt", ValueError),
        ("utility_files", "corrupt", ValueError),
        ("copy_files", "delete", FileNotFoundError),
        ("t_error_file", "corrupt", ValueError),
        ("model_dirs", "delete", FileNotFoundError),
        ("model_dirs", "corrupt", ValueError),
        ("roc_files", "delete", FileNotFoundError),
    ],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_write_report_error_names_the_bad_input_file(inputs, tmp_path, key, damage, error):
    value = inputs[key]
    path = value if key == "t_error_file" else value[0]
    if key == "model_dirs":
        path = path / "metadata.json"
    if damage == "delete":
        path.unlink()
    else:
        path.write_text('{"attack": "loss", "rows": [')  # truncated mid-write
    with pytest.raises(error, match=str(path.name)) as info:
        write_report(**inputs, out_dir=tmp_path / "report")
    assert str(path) in str(info.value)


def test_verdicts_rst_renders_every_comparison_as_a_list_item():
    from docutils.core import publish_parts

    from dualmd.report import verdicts_rst

    matched = pd.DataFrame(
        [
            {
                "defense": "student_ov50",
                "attack": "secmi_stat",
                "metric": "auc",
                "defense_value": 0.61,
                "curve_value": 0.7,
                "difference": -0.09,
                "difference_low": -0.15,
                "difference_high": -0.02,
                "bracket": "baseline@120-baseline@300",
                "verdict": "leaks less than the baseline at equal utility",
            },
            {"defense": "dpsgd_eps10", "attack": "pia", "metric": "auc", "verdict": "not bracketed"},
        ]
    )
    text = verdicts_rst(matched)
    assert text.splitlines() == [
        "- ``student_ov50``, ``secmi_stat`` auc: 0.610 vs 0.700 on the baseline curve (baseline@120-baseline@300), "
        "difference -0.090 [-0.150, -0.020]: **leaks less than the baseline at equal utility**",
        "- ``dpsgd_eps10``, ``pia`` auc: **not bracketed**",
    ]
    html = publish_parts(text, writer="html", settings_overrides={"report_level": 1, "halt_level": 2})
    assert html["body"].count("<li>") == 2 and "system-message" not in html["body"]
    assert "No distilled model" in verdicts_rst(None) and "No distilled model" in verdicts_rst(
        matched.iloc[:0]
    )


def _scored(attack, member_scores, nonmember_scores):
    """Scores of 10 members (ids 0-9) and 10 non-members (ids 10-19), in the split's order."""
    import numpy as np

    from dualmd.scores import AttackResult

    return AttackResult(
        attack=attack,
        scores=np.asarray([*member_scores, *nonmember_scores], dtype=float),
        sample_ids=np.arange(20),
        is_member=np.arange(20) < 10,
        extra={},
    )


def test_summary_selects_on_the_slice_and_reports_on_the_rest():
    """With selection_fraction 0.2 the slice is members 0, 1 and non-members 10, 11. `loss` is perfect there and
    random on the rest (both groups share the same eight scores: AUC exactly 0.5), `pia` is 0.75 there and
    perfect on the rest: the summary picks `loss` and reports its 0.5, not the slice's 1.0. `sima` is reversed on
    the slice of `dualmd`: chosen negated, flagged inverted, and measured negated on the rest."""
    from dualmd.config.evaluation import MetricsConfig
    from dualmd.report import summary_table

    rest = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    scores = {
        ("student", "loss"): _scored("loss", [1.0, 1.0, *rest], [0.0, 0.0, *rest]),
        ("student", "pia"): _scored("pia", [0.6, 0.4, *[r + 1 for r in rest]], [0.5, 0.3, *rest]),
        ("baseline@10", "loss"): _scored("loss", [1.0] * 10, [0.0] * 10),  # a checkpoint: no row
        ("dualmd", "sima"): _scored("sima", [0.0, 0.1, *rest[:6], 0.0, 0.0], [0.9, 0.8, *rest[2:], 0.9, 0.9]),
    }
    utility = pd.DataFrame(
        [
            {"target": "student", "heldout_loss": 0.2, "heldout_loss_low": 0.19, "heldout_loss_high": 0.21}
            | {"fid": 30.0, "fid_low": 28.0, "fid_high": 33.0},
            {"target": "dualmd", "fid": 40.0, "fid_low": 38.0, "fid_high": 41.0},
        ]
    )
    matched = pd.DataFrame(
        [
            {"defense": "student", "attack": "loss", "metric": "auc", "axis": "heldout", "difference": -0.1}
            | {"difference_low": -0.2, "difference_high": -0.05, "verdict": "leaks less than the baseline"},
            {
                "defense": "student",
                "attack": "loss",
                "metric": "auc",
                "axis": "fid",
                "difference": float("nan"),
            }
            | {"verdict": "worse utility than every undefended point; leakage -0.100 against baseline@10"},
            {"defense": "student", "attack": "pia", "metric": "auc", "axis": "heldout", "difference": 0.3}
            | {"difference_low": 0.1, "difference_high": 0.5, "verdict": "leaks more than the baseline"},
        ]
    )
    cfg = MetricsConfig(tpr_at_fpr=(0.1,), num_bootstrap=50, seed=0, selection_fraction=0.2)
    table = summary_table(scores, utility, matched, cfg).set_index("target")
    assert table.index.tolist() == ["student", "dualmd"]  # report order, the checkpoint left out
    student = table.loc["student"]
    assert (student["attack"], student["selection_auc"], student["inverted"]) == ("loss", 1.0, False)
    assert student["auc"] == pytest.approx(0.5)  # random on the 16 samples outside the slice
    assert student["auc_low"] <= 0.5 <= student["auc_high"]
    assert (student["heldout_loss"], student["fid_high"]) == (0.2, 33.0)
    assert student["verdict_heldout"] == "leaks less than the baseline (-0.100 [-0.200, -0.050])"
    assert (
        student["verdict_fid"]
        == "worse utility than every undefended point; leakage -0.100 against baseline@10"
    )
    dualmd = table.loc["dualmd"]
    assert (dualmd["attack"], dualmd["inverted"], dualmd["selection_auc"]) == ("sima", True, 1.0)
    # negated on the rest: members -0.1..-0.6, 0, 0 against non-members -0.3..-0.8, -0.9, -0.9
    members, nonmembers = [-r for r in rest[:6]] + [0.0, 0.0], [-r for r in rest[2:]] + [-0.9, -0.9]
    wins = sum((m > n) + 0.5 * (m == n) for m in members for n in nonmembers)
    assert dualmd["auc"] == pytest.approx(wins / 64)
    assert math.isnan(dualmd["heldout_loss"]) and dualmd["fid"] == 40.0
    assert dualmd["verdict_heldout"] == "" and dualmd["verdict_fid"] == ""  # no matched row for sima


def test_summary_display_and_rst_name_the_choice_and_inline_the_frontier(tmp_path):
    from dualmd.report import SUMMARY_COLUMNS, summary_display, summary_rst

    row = dict.fromkeys(SUMMARY_COLUMNS, float("nan")) | {
        "target": "dpsgd_eps10",
        "attack": "secmi_stat",
        "selection_auc": 0.8125,
        "inverted": True,
        "auc": 0.7,
        "auc_low": 0.6,
        "auc_high": 0.8,
        "verdict_heldout": "leaks less",
        "verdict_fid": "",
    }
    summary = pd.DataFrame([row], columns=SUMMARY_COLUMNS)
    shown = summary_display(summary, 0.01)
    assert shown.loc[0, "strongest attack (chosen on the slice)"] == "secmi_stat (slice AUC 0.812, inverted)"
    assert shown.loc[0, "AUC (rest)"].startswith("0.7") and "TPR @ 0.01 FPR (rest)" in shown.columns
    png = tmp_path / "frontier.png"
    png.write_bytes(b"\x89PNG fake")
    rst = summary_rst(summary, 0.01, frontier_png=png)
    assert rst.startswith(".. list-table::\n   :header-rows: 1\n\n   * - target\n")
    assert "   * - ``dpsgd_eps10``\n" in rst and "     - ``secmi_stat`` (slice AUC 0.812, inverted)\n" in rst
    assert ".. image::\n   data:image/png;base64,iVBORyBmYWtl\n   :width: 100%\n" in rst
    assert ".. image::" not in summary_rst(summary, 0.01, frontier_png=tmp_path / "missing.png")
    # docutils renders it: the table, and the image from the URI split over lines of at most 79 characters
    docutils = pytest.importorskip("docutils.core")  # Snakemake's report renders with it

    png.write_bytes(bytes(range(256)) * 200)  # 51,200 bytes: a URI far over docutils' 10,000-character lines
    long_rst = summary_rst(summary, 0.01, frontier_png=png)
    html = docutils.publish_string(long_rst, writer_name="html", settings_overrides={"report_level": 2})
    html = html.decode()
    assert "System Message" not in html and "<table" in html and "dpsgd_eps10" in html
    assert 'src="data:image/png;base64,AAECAwQF' in html and max(map(len, long_rst.splitlines())) <= 79


def _recon_deployed_file(root):
    """A recon metrics file as the evaluate stage writes it for the deployed interface: dualmd with both halves and a
    strength sweep, teacher2 with its own half, the baseline with neither (listed in reverse catalog order)."""
    half = lambda a, n: {"auc": a, "auc_low": a - 0.125, "auc_high": a + 0.125, "num_members": n,  # noqa: E731
                         "num_nonmembers": 32}  # fmt: skip
    sweep = [
        {"strength": 0.05, "num_queries": 1, "auc": 0.5, "tpr_at_fpr_0.01": 0.0},
        {"strength": 0.1, "num_queries": 2, "auc": 0.625, "tpr_at_fpr_0.01": 0.0625},
    ]
    rows = [
        _metric_row("dualmd", (0.75, 0.625, 0.875), (0.75, 0.625, 0.875), (0.25, 0.125, 0.5), 40, 32)
        | {"halves": {"half1": half(0.625, 20), "half2": half(0.875, 20)}, "strength_sweep": sweep},
        _metric_row("teacher2", (0.875, 0.75, 1.0), (0.75, 0.625, 0.875), (0.25, 0.125, 0.5), 20, 32)
        | {"halves": {"half2": half(0.875, 20)}},
        _metric_row("baseline", (0.5, 0.375, 0.625), (0.5, 0.5, 0.5), (0.0, 0.0, 0.0), 40, 32),
    ]
    return _write_json(root / "recon.json", {"attack": "recon", "rows": rows})


def test_halves_and_strength_sweep_tables_and_their_report_sections(inputs, tmp_path):
    recon = _recon_deployed_file(tmp_path)
    halves = halves_table([recon])
    assert list(zip(halves["target"], halves["half"], strict=True)) == [
        ("teacher2", "half2"), ("dualmd", "half1"), ("dualmd", "half2"),
    ]  # fmt: skip
    assert list(halves.columns[:5]) == ["attack", "target", "half", "num_members", "num_nonmembers"]
    assert halves["auc"].tolist() == [0.875, 0.625, 0.875]
    assert with_intervals(halves).loc[1, "auc"] == "0.625 [0.500, 0.750]"
    sweep = strength_sweep_table([recon])
    assert sweep[["target", "strength", "num_queries", "auc"]].values.tolist() == [
        ["dualmd", 0.05, 1, 0.5], ["dualmd", 0.1, 2, 0.625],
    ]  # fmt: skip
    assert halves_table(inputs["attack_files"]).empty and strength_sweep_table(inputs["attack_files"]).empty
    inputs["attack_files"] = [*inputs["attack_files"], recon]
    write_report(**inputs, out_dir=tmp_path / "report")
    sections = _sections((tmp_path / "report" / "report.md").read_text())
    assert "0.625 [0.500, 0.750]" in sections["Per"] and "half2" in sections["Per"]
    assert "| recon    | dualmd   |      0.100 |             2 | 0.625 |" in sections["Strength"]
    assert pd.read_csv(tmp_path / "report" / "halves.csv")["half"].tolist() == ["half2", "half1", "half2"]
