"""The text-to-image tables and plots are declared for Snakemake's HTML report (`snakemake --report`): the rules
loaded by Snakemake's API with config/text2image-tiny.yaml flag them under the category "Text-to-image", and
every caption renders with that config. Building the report itself needs a finished run (test_t2i_workflow.py,
slow)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import jinja2
import pytest
import yaml
from helpers.projects import ROOT, run

TINY = "config/text2image-tiny.yaml"

# Prints {rule: [{"path", "category", "subcategory", "labels", "caption"}]} for every report-flagged output.
REPORT_FLAGS = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.io import is_flagged
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

root, configfile = Path(sys.argv[1]), Path(sys.argv[2])
with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    workflow = api.workflow(
        resource_settings=ResourceSettings(),
        config_settings=ConfigSettings(configfiles=[root / configfile]),
        snakefile=root / "Snakefile",
        workdir=root,
    )._workflow
    flagged = {}
    for rule in workflow.rules:
        for f in rule.output:
            if is_flagged(f, "report"):
                r = f.flags["report"]
                flagged.setdefault(rule.name, []).append(
                    {"path": str(f), "category": r.category, "subcategory": r.subcategory,
                     "labels": r.labels, "caption": str(r.caption)}
                )
print("FLAGS" + json.dumps(flagged, default=str))
"""

#: rule -> the file name its report entry ends with
EXPECTED = {
    "make_t2i_report": "text2image.csv",
    "make_t2i_blackbox_report": "text2image_blackbox.csv",
    "make_t2i_utility_report": "text2image_utility.csv",
    "evaluate_t2i_attack": ".png",
    "sample_t2i_images": "grid.png",
}


def filled(path: Path) -> dict:
    """The config as the workflow sees it (common.smk): the file, validated, with every section resolved by the
    dataclasses (which fill in the defaults)."""
    from snakemake.utils import validate

    from dualmd.config.experiment import ExperimentConfig

    config = yaml.safe_load(path.read_text())
    validate(config, str(ROOT / "workflow/schemas/config.schema.yaml"))
    config.update(ExperimentConfig.resolve(config).to_dict())
    return config


@pytest.fixture(scope="module")
def flags():
    out = run([sys.executable, "-c", REPORT_FLAGS, str(ROOT), TINY], cwd=ROOT).stdout
    return json.loads(out.split("FLAGS", 1)[1])


@pytest.mark.parametrize("rule", sorted(EXPECTED))
def test_text2image_outputs_are_in_the_report_category(flags, rule):
    (entry,) = [e for e in flags.get(rule, []) if e["category"] == "Text-to-image"]
    assert entry["path"].endswith(EXPECTED[rule]) and "{run" in entry["path"]
    assert entry["subcategory"] in {"Tables", "ROC curves", "Samples"}
    assert Path(entry["caption"]).is_file()


def test_text2image_captions_and_landing_page_render_with_the_tiny_config(flags):
    """Each caption (and the landing page) is a Jinja template over `snakemake`: the validated config and the
    entry's wildcards; StrictUndefined makes a misspelt key fail here instead of in `snakemake --report`."""
    config = filled(ROOT / TINY)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    entries = [e for rule in EXPECTED for e in flags[rule]]
    assert len({e["caption"] for e in entries}) == 5
    for entry in entries:
        # the wildcards of the entry's own path, each set to its name
        wildcards = {name: f"<{name}>" for name in re.findall(r"\{(\w+)", entry["path"])}
        template = env.from_string(Path(entry["caption"]).read_text())
        text = template.render(snakemake={"config": config, "wildcards": wildcards})
        assert text.strip() and "{{" not in text
        used = re.findall(r"snakemake\.wildcards\.(\w+)", Path(entry["caption"]).read_text())
        assert all(f"<{name}>" in text for name in used)
    landing = env.from_string((ROOT / "workflow/report/workflow.rst").read_text())
    page = landing.render(snakemake={"config": config})
    assert "text-to-image run" in page and "verdicts.rst" not in page  # no unconditional includes
    default = landing.render(snakemake={"config": filled(ROOT / "config/config.yaml")})
    assert "verdicts.rst" in default and "text-to-image run" not in default
