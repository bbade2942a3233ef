# dualmd: dual-model defenses for diffusion models, measured by membership inference attacks.
# The DAG, per replicate: data -> split -> trained models -> distilled models -> samples -> attacks, memorization,
# utility -> report; with text2image.enabled, the text-to-image experiment instead (workflow/rules/text2image.smk).
# See README.md and config/README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/stage_configs.smk"
include: "workflow/rules/inputs.smk"
include: "workflow/rules/common_t2i.smk"
include: "workflow/rules/common_jobs.smk"
include: "workflow/rules/stage_job.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/attack.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/text2image.smk"
include: "workflow/rules/text2image_blackbox.smk"
include: "workflow/rules/text2image_memorization.smk"


rule all:
    default_target: True
    input:
        final_targets(),


# The artifacts DVC versions (data, split, stage configs and models of every replicate). After `dvc pull`, which
# does not keep modification times, `snakemake --touch --cores 1 dvc_artifacts` marks them up to date.
rule dvc_artifacts:
    input:
        dvc_artifacts(),
