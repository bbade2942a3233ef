"""Stage of `workflow/rules/report.smk`: every defense's verdicts at equal utility, across replicates."""

from __future__ import annotations

from pathlib import Path

from dualmd.stage import stage


@stage("verdicts")
def verdicts(*, matched: list[Path], out: Path) -> None:
    """verdicts.csv from each replicate's matched_utility.csv (`dualmd.verdicts.verdict_table`).

    Args:
        matched: matched_utility.csv of each replicate's report (its folder names the replicate).
        out: verdicts.csv.
    """
    import pandas as pd

    from dualmd.files import atomic_write
    from dualmd.verdicts import verdict_table

    rows = pd.concat([read_matched(path) for path in matched], ignore_index=True)
    table = verdict_table(rows)
    atomic_write(out, lambda handle: handle.write(table.to_csv(index=False).encode()))


def read_matched(path: Path):
    """One replicate's matched-utility rows in `verdict_table`'s columns: a row without a difference (out of
    range, not resolvable) keeps its verdict as the note."""
    import pandas as pd

    frame = pd.read_csv(path)
    missing = {"defense", "attack", "metric", "axis", "difference", "p_value", "verdict"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path} lacks the columns {sorted(missing)}; rerun the report stage that writes it")
    frame = frame.rename(columns={"difference_low": "low", "difference_high": "high"})
    frame["replicate"] = Path(path).parent.name
    frame["note"] = frame["verdict"].where(frame["difference"].isna())
    return frame[
        ["replicate", "defense", "attack", "metric", "axis", "difference", "low", "high", "p_value", "note"]
    ]
