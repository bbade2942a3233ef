"""The run's report: attack, utility and memorization tables (CSV + Markdown), a flat metrics.json and roc.csv.

Every input is a small JSON written by an earlier stage and describes itself (attack, target, sampler, model),
so the report never parses paths.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dualmd import catalog
from dualmd.metrics import min_nonmembers, tpr_bound, tpr_key
from dualmd.verdicts import is_inverted, reported_part, select_strongest, selection_slice

if TYPE_CHECKING:
    from dualmd.config.evaluation import MetricsConfig
    from dualmd.scores import AttackResult

#: Rows of the attack table come in this order: undefended first, then the defenses.
TARGET_ORDER = list(catalog.TARGETS)


def _read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"report input missing: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"report input is not valid JSON: {path}: {err}") from err


def _order(df: pd.DataFrame, column: str) -> pd.DataFrame:
    return (
        df.assign(_rank=df[column].map(catalog.report_rank))
        .sort_values([c for c in ("attack",) if c in df] + ["_rank"])
        .drop(columns="_rank")
        .reset_index(drop=True)
    )


def attack_table(metric_files: Sequence[str | Path]) -> pd.DataFrame:
    """One row per (attack, target) with AUC, ASR, TPR@FPR and their 95% intervals, and `inverted`: the AUC's whole
    interval lies below 0.5, members rank below non-members (leakage in the other direction, not protection)."""
    rows = []
    for path in metric_files:
        m = _read_json(path)
        for row in m["rows"]:
            rows.append(
                {"attack": m["attack"], **{k: v for k, v in row.items() if not isinstance(v, dict | list)}}
            )
    df = _order(pd.DataFrame(rows), "target")
    first = ["attack", "target", "num_members", "num_nonmembers"]
    df = df[first + sorted((c for c in df.columns if c not in first), key=_metric_rank)]
    return df.assign(inverted=[is_inverted(high) for high in df.get("auc_high", pd.Series(np.nan, df.index))])


def _metric_rank(column: str) -> tuple:
    """auc, asr, then TPR at the largest FPR bound first; each followed by its interval."""
    name = column.removesuffix("_low").removesuffix("_high")
    group = {"auc": (0, 0.0), "asr": (1, 0.0)}.get(name) or (2, -float(name.rsplit("_", 1)[-1]))
    return (*group, column.endswith("_high"), column.endswith("_low"))


def with_intervals(df: pd.DataFrame) -> pd.DataFrame:
    """Metric columns as "value [low, high]" strings: the readable form of the attack table.

    A missing TPR (its FPR bound is below 1 / number of non-members, `dualmd.metrics.is_resolvable`) reads
    "n/a (needs ≥ N non-members)"; TPR columns without an interval are rendered the same way.
    """
    out = df[[c for c in df.columns if not c.endswith(("_low", "_high"))]].copy()
    for col in list(out.columns):
        if f"{col}_low" in df and f"{col}_high" in df:
            triples = zip(df[col], df[f"{col}_low"], df[f"{col}_high"], strict=True)
            out[col] = [_with_interval(v, lo, hi, _missing(col)) for v, lo, hi in triples]
        elif tpr_bound(col) is not None:
            out[col] = [_with_interval(v, None, None, _missing(col)) for v in df[col]]
    return out


def _missing(column: str) -> str:
    """What a cell says when its value is absent: for a TPR, how many non-members its FPR bound needs."""
    bound = tpr_bound(column)
    return "n/a" if bound is None else f"n/a (needs ≥ {min_nonmembers(bound)} non-members)"


def _with_interval(value, low, high, missing: str = "n/a") -> str:
    if pd.isna(value):
        return missing
    if pd.isna(low) or pd.isna(high):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def strongest_attacks(attacks: pd.DataFrame, max_fpr: float = 0.01) -> pd.DataFrame:
    """The strongest attack against each target: the highest TPR at `max_fpr`, ties (and targets whose TPR is
    missing, too few non-members) broken by AUC, then by attack name. A missing TPR ranks below every number.

    Args:
        attacks: `attack_table` rows (attack, target, auc, tpr_at_fpr_<max_fpr>, ...).
        max_fpr: the FPR bound of the ranking (the first of `metrics.tpr_at_fpr`).
    Returns:
        One row per target, in report order: target, attack, its TPR and AUC, and num_attacks (how many attacks
        reached the target).
    """
    tpr = tpr_key(max_fpr)
    columns = ["target", "attack", tpr, "auc", "num_attacks"]
    if attacks.empty:
        return pd.DataFrame(columns=columns)
    if tpr not in attacks:  # a bound the metrics were not computed at: every TPR is missing
        attacks = attacks.assign(**{tpr: np.nan})
    ranked = attacks.assign(
        _tpr=attacks[tpr].fillna(-np.inf),
        num_attacks=attacks.groupby("target")["attack"].transform("size"),
    ).sort_values(["_tpr", "auc", "attack"], ascending=[False, False, True], kind="stable")
    best = ranked.drop_duplicates("target")
    return (
        best.assign(_rank=best["target"].map(catalog.report_rank))
        .sort_values("_rank")
        .reset_index(drop=True)[columns]
    )


def strongest_lines(strongest: pd.DataFrame, *, rst: bool) -> str:
    """One line per target naming its strongest attack with its TPR and AUC (Markdown or reStructuredText)."""
    if strongest.empty:
        return "No attack was evaluated.\n"
    tpr = next(c for c in strongest.columns if tpr_bound(c) is not None)
    lines = []
    for _, r in strongest.iterrows():
        target, attack = (
            (f"``{r['target']}``", f"``{r['attack']}``") if rst else (f"**{r['target']}**", r["attack"])
        )
        value = "n/a" if pd.isna(r[tpr]) else f"{r[tpr]:.3f}"
        lines.append(
            f"- {target}: {attack} (TPR at {100 * tpr_bound(tpr):g}% FPR {value}, AUC {r['auc']:.3f}; "
            f"strongest of {int(r['num_attacks'])})"
        )
    return "\n".join(lines) + "\n"


def pia_sweep_table(metric_files: Sequence[str | Path]) -> pd.DataFrame:
    """AUC and TPR at the first FPR bound of every attack with a timestep sweep (PIA, PIAN, SimA; the loss attack's
    per-timestep scores) at each of its timesteps, reported apart from the a-priori timestep."""
    rows = []
    for path in metric_files:
        m = _read_json(path)
        for row in m["rows"]:
            for t, values in sorted(row.get("sweep", {}).items(), key=lambda kv: int(kv[0])):
                rows.append({"attack": m["attack"], "target": row["target"], "timestep": int(t), **values})
    return pd.DataFrame(rows)


def strength_sweep_table(metric_files: Sequence[str | Path]) -> pd.DataFrame:
    """AUC and TPR at the first FPR bound of every attack with a sweep over image-to-image strength and number of
    queries (recon through the deployed sampler) at each of its settings, reported apart from the chosen one."""
    rows = [
        {"attack": m["attack"], "target": row["target"], **point}
        for m in map(_read_json, metric_files)
        for row in m["rows"]
        for point in row.get("strength_sweep", [])
    ]
    return pd.DataFrame(rows)


def halves_table(metric_files: Sequence[str | Path]) -> pd.DataFrame:
    """DualMD's targets per member half: one row per (attack, target, half) with the metrics of that half's members
    against every non-member and their 95% intervals (the evaluate stage's "halves"). A teacher is scored on its own
    half only, so its row stands beside DualMD's row of the same half."""
    rows = [
        {"attack": m["attack"], "target": row["target"], "half": half, **values}
        for m in map(_read_json, metric_files)
        for row in m["rows"]
        for half, values in row.get("halves", {}).items()
    ]
    first = ["attack", "target", "half", "num_members", "num_nonmembers"]
    if not rows:
        return pd.DataFrame(columns=first)
    df = pd.DataFrame(rows)
    df = (
        df.assign(_rank=df["target"].map(catalog.report_rank))
        .sort_values(["attack", "_rank", "half"], kind="stable")
        .drop(columns="_rank")
        .reset_index(drop=True)
    )
    return df[first + sorted((c for c in df.columns if c not in first), key=_metric_rank)]


#: Columns of the utility table, in order.
UTILITY_COLUMNS = [
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


def utility_table(
    utility_files: Sequence[str | Path], heldout_file: str | Path | None = None
) -> pd.DataFrame:
    """One row per target: held-out denoising loss of its model (with its interval), and FID (with its interval),
    KID (with its standard error) and IS of its sampler, the sampler settings and the feature network.

    ``note`` says why a number is absent: a target without weights of its own has no held-out loss, a feature
    network without a classifier head no IS.
    """
    rows: dict[str, dict] = {}
    for path in utility_files:
        r = _read_json(path)
        rows[r["sampler"]] = {k: r.get(k) for k in UTILITY_COLUMNS if k != "target"}
        rows[r["sampler"]]["note"] = r.get("is_absent_reason")
    if heldout_file is not None:
        for name, h in _read_json(heldout_file)["models"].items():
            row = rows.setdefault(name, {})
            row.update(heldout_loss=h["mean"], heldout_loss_low=h["low"], heldout_loss_high=h["high"])
    notes = {
        name: f"held-out loss not defined: {name} samples with {' and '.join(t.models)}, it has no weights"
        for name, t in catalog.TARGETS.items()
        if not t.has_weights
    }
    records = []
    for name, row in rows.items():
        note = "; ".join(n for n in (notes.get(name) if heldout_file else None, row.get("note")) if n)
        records.append({**{c: row.get(c) for c in UTILITY_COLUMNS}, "target": name, "note": note or None})
    return _order(pd.DataFrame(records, columns=UTILITY_COLUMNS), "target")


def memorization_table(copy_files: Sequence[str | Path], t_error_file: str | Path) -> pd.DataFrame:
    """Model rows (t-error separation AUC) and sampler rows (copy rate) in one table."""
    rows = []
    for t in _read_json(t_error_file)["models"]:
        rows.append(
            {
                "kind": "t_error",
                "target": t["model"],
                "value": t["auc"],
                "detail": f"median t-error members {t['member_median']:.4g} / non-members "
                f"{t['nonmember_median']:.4g}",
            }
        )
    for path in copy_files:
        c = _read_json(path)
        rows.append(
            {
                "kind": "copy_rate",
                "target": c["sampler"],
                "value": c["copy_rate"],
                "detail": f"{c['num_copies']}/{c['num_generated']} under ratio {c['threshold']:.3g}"
                + (f" ({c['rule']})" if "rule" in c else ""),
            }
        )
    df = pd.DataFrame(rows)
    rank = {name: i for i, name in enumerate(TARGET_ORDER)}
    return (
        df.assign(_r=df["target"].map(rank))
        .sort_values(["kind", "_r"])
        .drop(columns="_r")
        .reset_index(drop=True)
    )


def training_table(model_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """Per model: subset, steps, final loss, probe member/non-member loss and the gap, wall time."""
    rows = []
    for d in model_dirs:
        meta = _read_json(Path(d) / "metadata.json")
        probe = meta.get("probe", {})
        curve = meta.get("loss_curve") or [[0, float("nan")]]
        member, nonmember = (
            float(np.mean(probe[k])) if k in probe else float("nan")
            for k in ("member_loss", "nonmember_loss")
        )
        rows.append(
            {
                "model": meta["model_id"],
                "subset": meta["subset"],
                "steps": meta["num_train_steps"],
                "final_loss": curve[-1][1],
                "probe_member_loss": member,
                "probe_nonmember_loss": nonmember,
                "probe_gap": nonmember - member,
                "wall_time_s": meta.get("wall_time_s"),
            }
        )
    return _order(pd.DataFrame(rows), "model")


def flat_metrics(attacks: pd.DataFrame, utility: pd.DataFrame, memorization: pd.DataFrame) -> dict:
    """Flat `section/name/target/metric` keys for `dvc metrics show`; NaN/None values are dropped."""
    flat: dict[str, float] = {}

    def put(key: str, value) -> None:
        if value is not None and not pd.isna(value):
            flat[key] = float(value)

    for _, row in attacks.iterrows():
        for col, value in row.items():
            if (
                col not in ("attack", "target")
                and isinstance(value, int | float)
                and not isinstance(value, bool)
            ):
                put(f"attack/{row['attack']}/{row['target']}/{col}", value)
    for _, row in utility.iterrows():
        for col in ("heldout_loss", "heldout_loss_low", "heldout_loss_high", "fid", "fid_low", "fid_high"):
            put(f"utility/{row['target']}/{col}", row[col])
        for col in ("kid", "kid_se", "inception_score"):
            put(f"utility/{row['target']}/{col}", row[col])
    for _, row in memorization.iterrows():
        put(f"memorization/{row['kind']}/{row['target']}", row["value"])
    return flat


def combined_roc(roc_files: Sequence[str | Path]) -> pd.DataFrame:
    """All ROC curves in one long table (attack, target, fpr, tpr) for `dvc plots show`."""
    frames = []
    for path in roc_files:
        df = pd.read_csv(path)
        frames.append(df)
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["attack", "target", "fpr", "tpr"])
    )


def write_report(
    *,
    attack_files: Sequence[str | Path],
    roc_files: Sequence[str | Path],
    utility_files: Sequence[str | Path],
    copy_files: Sequence[str | Path],
    t_error_file: str | Path,
    model_dirs: Sequence[str | Path],
    split_meta: dict,
    out_dir: str | Path,
    heldout_file: str | Path | None = None,
    frontier: pd.DataFrame | None = None,
    matched: pd.DataFrame | None = None,
    summary: pd.DataFrame | None = None,
    max_fpr: float = 0.01,
    inference_lines: Mapping[str, str] | None = None,
) -> dict:
    """Write attacks/strongest_attacks/utility/memorization/training tables, the sweeps (pia_sweep, strength_sweep)
    and DualMD's targets per member half (halves) (CSV + MD), metrics.json, roc.csv,
    report.md, verdicts.rst (the matched-utility lines) and strongest.rst (the strongest attack against each
    target by TPR at `max_fpr`, then AUC), which the HTML report's landing page includes. `inference_lines`
    ("set", "dataset" -> the lines of set_inference.rst and dataset_inference.rst) go into report.md as they are.

    Returns:
        The flat metrics dictionary written to metrics.json.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    attacks = attack_table(attack_files)
    tables = {
        "attacks": attacks,
        "strongest_attacks": strongest_attacks(attacks, max_fpr),
        "pia_sweep": pia_sweep_table(attack_files),
        "strength_sweep": strength_sweep_table(attack_files),
        "halves": halves_table(attack_files),
        "utility": utility_table(utility_files, heldout_file),
        "memorization": memorization_table(copy_files, t_error_file),
        "training": training_table(model_dirs),
    }
    if frontier is not None and matched is not None:
        tables["frontier"], tables["matched_utility"] = frontier, matched
    if summary is not None:
        tables["summary"] = summary
    roc = combined_roc(roc_files)  # every input is read before the first output is written
    for name, df in tables.items():
        df.to_csv(out / f"{name}.csv", index=False)
        intervals = ("attacks", "utility", "frontier", "pia_sweep", "strength_sweep", "halves")
        shown = with_intervals(df) if name in intervals else df
        (out / f"{name}.md").write_text(shown.to_markdown(index=False, floatfmt=".4g") + "\n")
    roc.to_csv(out / "roc.csv", index=False)
    metrics = flat_metrics(tables["attacks"], tables["utility"], tables["memorization"])
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n")
    (out / "report.md").write_text(_markdown(tables, split_meta, max_fpr, inference_lines or {}))
    (out / "verdicts.rst").write_text(verdicts_rst(tables.get("matched_utility")))
    (out / "strongest.rst").write_text(strongest_lines(tables["strongest_attacks"], rst=True))
    return metrics


def verdicts_rst(matched: pd.DataFrame | None) -> str:
    """The matched-utility comparison as a reStructuredText bullet list (names as literals, so that no underscore
    reads as a link), for the HTML report's landing page."""
    if matched is None or matched.empty:
        return "No distilled model or DP-SGD baseline and baseline curve to compare.\n"
    return _comparison_lines(matched, rst=True)


def _matched_lines(matched: pd.DataFrame) -> str:
    """One Markdown line per defense, attack and metric: the difference with its interval and the verdict."""
    if matched.empty:
        return "No distilled model and baseline curve to compare.\n"
    return _comparison_lines(matched, rst=False)


def _comparison_lines(matched: pd.DataFrame, *, rst: bool) -> str:
    lines = []
    for _, r in matched.iterrows():
        if rst:
            head, verdict = f"- ``{r['defense']}``, ``{r['attack']}`` {r['metric']}:", f"**{r['verdict']}**"
        else:
            head, verdict = f"- **{r['defense']}**, {r['attack']} {r['metric']}:", r["verdict"]
        if pd.isna(r.get("difference")):
            lines.append(f"{head} {verdict}")
        else:
            lines.append(
                f"{head} {r['defense_value']:.3f} vs {r['curve_value']:.3f} on the baseline curve "
                f"({r['bracket']}), difference {r['difference']:+.3f} "
                f"[{r['difference_low']:+.3f}, {r['difference_high']:+.3f}]: {verdict}"
            )
    return "\n".join(lines) + "\n"


#: Columns of the summary table that opens the report (`summary_table`).
SUMMARY_COLUMNS = [
    *UTILITY_COLUMNS[: UTILITY_COLUMNS.index("fid_high") + 1],  # target, held-out loss and FID with intervals
    "attack",
    "selection_auc",
    "inverted",
    "auc",
    "auc_low",
    "auc_high",
    "tpr",
    "tpr_low",
    "tpr_high",
    "verdict_heldout",
    "verdict_fid",
]


def summary_table(
    scores: Mapping[tuple[str, str], AttackResult],
    utility: pd.DataFrame,
    matched: pd.DataFrame,
    cfg: MetricsConfig,
) -> pd.DataFrame:
    """The answer first: one row per target (checkpoints left out), in report order.

    Utility on both axes (from `utility_table`); the strongest attack against the target, selected with its
    orientation on the labelled slice (`dualmd.verdicts.selection_slice` at ``metrics.selection_fraction``, over
    the attacks that score it: the fitted attacks secmi_nn, gsa and recon train on that slice and score only the
    rest, so they cannot be selected there); that attack's AUC and TPR at the first FPR bound of
    ``metrics.tpr_at_fpr`` on the rest only, with 95 % bootstrap intervals; "inverted" where the slice chose the
    negated score (members score lower: leakage the other way); and the attack's AUC verdict at equal utility on
    each axis (`matched`, per replicate), or "" where the target is not compared with the curve.

    Args:
        scores: (target, attack) -> per-sample scores of every attack on every target it reaches.
        utility: `utility_table` rows.
        matched: `dualmd.frontier.matched_utility` rows.
        cfg: the metrics section (TPR bound, bootstrap, selection fraction).
    """
    from dualmd.metrics import summarize

    max_fpr = cfg.tpr_at_fpr[0]
    tpr_col = tpr_key(max_fpr)
    by_target: dict[str, dict[str, AttackResult]] = {}
    for (target, attack), result in scores.items():
        if catalog.split_checkpoint(target)[1] is None:
            by_target.setdefault(target, {})[attack] = result
    useful = utility.set_index("target") if not utility.empty else pd.DataFrame()
    rows = []
    for target in sorted(by_target, key=catalog.report_rank):
        results = by_target[target]
        widest = max(results.values(), key=lambda r: len(r.sample_ids))  # an attack that scores every sample
        slice_ids = selection_slice(widest.sample_ids, widest.is_member, cfg.selection_fraction)
        row: dict = {"target": target}
        for key in ("heldout_loss", "fid"):
            for suffix in ("", "_low", "_high"):
                column = f"{key}{suffix}"
                has = target in useful.index and column in useful.columns
                row[column] = useful.loc[target, column] if has else float("nan")
        try:
            chosen = select_strongest(results, slice_ids)
        except ValueError:  # no attack scores the slice
            rows.append({**row, "attack": "", "verdict_heldout": "", "verdict_fid": ""})
            continue
        rest = reported_part(results[chosen.attack], slice_ids, chosen.orientation)
        found = summarize(rest.scores, rest.is_member, cfg)
        row |= {
            "attack": chosen.attack,
            "selection_auc": chosen.selection_auc,
            "inverted": chosen.orientation < 0,
            "auc": found["auc"],
            "auc_low": found.get("auc_low", float("nan")),
            "auc_high": found.get("auc_high", float("nan")),
            "tpr": found[tpr_col],
            "tpr_low": found.get(f"{tpr_col}_low", float("nan")),
            "tpr_high": found.get(f"{tpr_col}_high", float("nan")),
        }
        for axis in ("heldout", "fid"):
            hit = matched[
                (matched["defense"] == target)
                & (matched["attack"] == chosen.attack)
                & (matched["metric"] == "auc")
                & (matched["axis"] == axis)
            ]
            row[f"verdict_{axis}"] = _verdict_cell(hit.iloc[0]) if len(hit) else ""
        rows.append(row)
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _verdict_cell(row: pd.Series) -> str:
    """A matched-utility row as one cell: the verdict, and the AUC difference with its interval where measured."""
    if pd.isna(row.get("difference")):
        return str(row["verdict"])
    return (
        f"{row['verdict']} ({row['difference']:+.3f} [{row['difference_low']:+.3f}, "
        f"{row['difference_high']:+.3f}])"
    )


def summary_display(summary: pd.DataFrame, max_fpr: float, *, literal: bool = False) -> pd.DataFrame:
    """The summary table as the report prints it: values with their intervals, one readable column each;
    `literal`: target and attack names as reStructuredText literals."""
    shown = with_intervals(summary.drop(columns=["selection_auc", "inverted"]))
    name = (lambda n: f"``{n}``") if literal else (lambda n: n)
    shown["target"] = [name(t) for t in summary["target"]]
    shown["attack"] = [
        "" if not a else f"{name(a)} (slice AUC {s:.3f}{', inverted' if inv else ''})"
        for a, s, inv in zip(summary["attack"], summary["selection_auc"], summary["inverted"], strict=True)
    ]
    return shown.rename(
        columns={
            "heldout_loss": "held-out loss",
            "fid": "FID",
            "attack": "strongest attack (chosen on the slice)",
            "auc": "AUC (rest)",
            "tpr": f"TPR @ {max_fpr:g} FPR (rest)",
            "verdict_heldout": "at equal held-out loss",
            "verdict_fid": "at equal FID",
        }
    )


def summary_rst(summary: pd.DataFrame, max_fpr: float, frontier_png: str | Path | None = None) -> str:
    """The summary table as a reStructuredText list-table, then the frontier figure inlined as a data URI (the
    HTML report's landing page shows both)."""
    shown = summary_display(summary, max_fpr, literal=True).fillna("").astype(str)
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for cells in [list(shown.columns), *shown.values.tolist()]:
        lines += [f"   * - {cells[0]}".rstrip(), *(f"     - {c}".rstrip() for c in cells[1:])]
    if frontier_png is not None and Path(frontier_png).is_file():
        # docutils limits a line to 10,000 characters and joins an argument's lines without their whitespace
        uri = "data:image/png;base64," + base64.b64encode(Path(frontier_png).read_bytes()).decode()
        lines += [
            "",
            ".. image::",
            *(f"   {uri[i : i + 76]}" for i in range(0, len(uri), 76)),
            "   :width: 100%",
        ]
    return "\n".join(lines) + "\n"


def frontier_tables(
    *,
    heldout_file: str | Path,
    utility_files: Sequence[str | Path],
    score_files: Sequence[str | Path],
    num_bootstrap: int,
    seed: int,
    max_fpr: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The frontier (`dualmd.frontier.frontier_table`) on the held-out loss and the FID axes, and the
    matched-utility comparison of every defense (`dualmd.catalog.compared_to_curve`), from the held-out losses,
    the samplers' utility summaries and the per-sample score files ``<attack>/<target>.npz``."""
    from dualmd.frontier import (
        Heldout,
        JointBootstrap,
        fid_axis,
        frontier_table,
        heldout_axis,
        matched_utility,
    )
    from dualmd.scores import load_scores

    heldout = Heldout.from_json(_read_json(heldout_file))
    summaries = {s["sampler"]: s for s in map(_read_json, utility_files)}
    scores = {(Path(p).stem, Path(p).parent.name): load_scores(p) for p in score_files}
    member_ids = np.unique(np.concatenate([r.sample_ids[r.is_member] for r in scores.values()]))
    bootstrap = JointBootstrap(member_ids, heldout.sample_ids, num_bootstrap, seed)
    axes = [heldout_axis(heldout, bootstrap), fid_axis(summaries, num_bootstrap)]
    table, resampled = frontier_table(axes, scores, bootstrap, max_fpr)
    compared = [name for name in dict.fromkeys(table["target"]) if catalog.compared_to_curve(name)]
    matched = matched_utility(table, resampled, compared, max_fpr)
    return table, matched


def _markdown(
    tables: dict[str, pd.DataFrame],
    split_meta: dict,
    max_fpr: float = 0.01,
    inference_lines: Mapping[str, str] | None = None,
) -> str:
    counts = split_meta.get("counts", {})
    parts = ["# dualmd report\n"]
    if "summary" in tables:
        parts += [
            "## Summary: each target's utility, the strongest attack against it and the verdict at equal"
            " utility\n",
            "The strongest attack is chosen, with its orientation, on a labelled slice of the members and"
            " non-members; its AUC and TPR are measured on the rest (95% bootstrap intervals). The verdicts"
            " compare that attack's AUC with the undefended baseline's checkpoint curve interpolated at the"
            " target's held-out loss and at its FID (difference and 95% joint-bootstrap interval; this run's"
            " seed only: `results/report/verdicts.csv` combines the replicates).\n",
            summary_display(tables["summary"], max_fpr).to_markdown(index=False, floatfmt=".4g"),
            "\n![privacy-utility frontier](frontier.png)\n",
        ]
    parts += [
        f"Split: {counts} (SHA-256 of each subset in the split's split.json).\n",
        "## Membership inference (members = positive class; 95% bootstrap intervals)\n",
        with_intervals(tables["attacks"]).to_markdown(index=False),
        "\n## Strongest attack against each target (highest TPR at the first FPR bound, then AUC)\n",
        strongest_lines(tables["strongest_attacks"], rst=False),
        *_inference_section(inference_lines or {}),
        "\n## Utility (held-out loss: per-pixel eps-MSE on the non-members, lower is better; FID / KID of"
        " each sampler against the reference set; 95% bootstrap intervals, KID with its standard error)\n",
        with_intervals(tables["utility"]).to_markdown(index=False, floatfmt=".4g"),
        "\n## Memorization\n",
        tables["memorization"].to_markdown(index=False, floatfmt=".3f"),
        "\n## Training (probe: mean denoising loss over the probe timesteps, fixed noise; gap = non-members"
        " minus members)\n",
        tables["training"].to_markdown(index=False, floatfmt=".4g"),
    ]
    if "matched_utility" in tables:
        parts += [
            "\n## Matched utility (each distilled model against the baseline's checkpoints at the same held-out"
            " loss; difference = model minus the interpolated curve, 95% joint-bootstrap interval)\n",
            _matched_lines(tables["matched_utility"]),
            "\n## Frontier (held-out loss and leakage of every model and checkpoint, per attack)\n",
            with_intervals(tables["frontier"]).to_markdown(index=False, floatfmt=".4g"),
        ]
    if not tables["halves"].empty:
        parts += [
            "\n## Per member half (DualMD and its teachers: the members of D1, then of D2, each against every"
            " non-member; 95% bootstrap intervals)\n",
            with_intervals(tables["halves"]).to_markdown(index=False),
        ]
    if not tables["pia_sweep"].empty:
        parts += [
            "\n## Timestep sweeps of PIA, PIAN, SimA and the loss attack (not used to pick the reported"
            " timestep)\n",
            with_intervals(tables["pia_sweep"]).to_markdown(index=False, floatfmt=".3f"),
        ]
    if not tables["strength_sweep"].empty:
        parts += [
            "\n## Strength and query sweep of recon through the deployed sampler (the reported setting is chosen"
            " on the labelled slice; these AUCs are on the scored rest)\n",
            with_intervals(tables["strength_sweep"]).to_markdown(index=False, floatfmt=".3f"),
        ]
    return "\n".join(parts) + "\n"


#: Headings of the set- and dataset-level inference lines in report.md.
_INFERENCE_HEADINGS = {
    "set": "\n## Set-level inference (the strongest attack's scores; n members against n non-members)\n",
    "dataset": "\n## Dataset-level inference (every attack's scores combined on the labelled slice; n held-out"
    " members against n held-out non-members)\n",
}


def _inference_section(lines: Mapping[str, str]) -> list[str]:
    """The report.md parts of the inference lines given ("set", "dataset"), each under its heading."""
    return [
        part
        for name in ("set", "dataset")
        if name in lines
        for part in (_INFERENCE_HEADINGS[name], lines[name])
    ]
