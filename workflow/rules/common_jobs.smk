# What the stage jobs of both experiments share: their command line, the inputs most of them read first, their
# log and benchmark paths, their entries in the HTML report, and the two modalities, for the rules defined once
# for both.
from dataclasses import dataclass
from typing import Callable


def launcher(resources):
    """`python -m dualmd` on CPU; `accelerate launch` over the rule's GPUs otherwise."""
    gpus = int(resources.get("gpu", 0) or 0)
    if gpus == 0:
        return "python -m dualmd"
    multi = f"--multi_gpu --num_processes {gpus}" if gpus > 1 else "--num_processes 1"
    precision = EXPERIMENT.train.mixed_precision
    return (
        f"accelerate launch {multi} --num_machines 1 --dynamo_backend no "
        f"--mixed_precision {precision} -m dualmd"
    )


def stage_command(command, **given):
    """Params function: the command line of stage `command`. Each option takes its value from `given` (a pattern
    such as "{output.summary}" or "{wildcards.trained}", or a function of the wildcards), else from the rule's
    input, output or wildcard of the same name. A distributed stage (training) given GPUs runs under accelerate.
    """
    spec = STAGES[command]

    def command(wildcards, input, output, threads, resources):
        values = {}
        for option in spec.options:
            value = given.get(option.name)
            if callable(value):
                value = value(wildcards)
            elif value is not None:
                value = value.format(wildcards=wildcards, input=input, output=output)
            else:
                found = [s for s in (input, output, wildcards) if option.name in s.keys()]
                value = getattr(found[0], option.name) if found else None
            values[option.name] = value
        launch = launcher(resources) if spec.distributed else "python -m dualmd"
        return command_line(spec, values, threads=threads, launch=launch)

    return command


def split_inputs(config, images=True):
    """Input function for `unpack`: the stage config `config` (a pattern, as `config_file` takes it), the dataset
    images (unless `images` is false), and the replicate's split with its sidecar; named as the stages name them.
    """
    config_of = config_file(config)

    def inputs(wildcards):
        named = {"config": config_of(wildcards)}
        if images:
            named["images"] = "results/data/images.npz"
        split = f"results/split/{wildcards.run}/split"
        return named | {"split": f"{split}.npz", "split_meta": f"{split}.json"}

    return inputs


def job_log(rule, wildcards=""):
    """The log of a job of `rule` in one replicate: logs/{run}/<rule>[/<wildcards>].log."""
    return f"logs/{{run}}/{'/'.join(filter(None, (rule, wildcards)))}.log"


def job_benchmark(rule, wildcards=""):
    """The benchmark of a job of `rule`, beside the log: results/benchmarks/{run}/<rule>[/<wildcards>].tsv."""
    return f"results/benchmarks/{{run}}/{'/'.join(filter(None, (rule, wildcards)))}.tsv"


def in_report(path, category, caption=None, subcategory=None, **labels):
    """`path` as an entry of the HTML report under `category`: captioned by workflow/report/<caption>.rst (by
    default the file's stem), labelled by its replicate (where the path has one) and by `labels`."""
    caption = caption or Path(path).stem
    run = {"run": "{run}"} if "{run}" in path else {}
    return report(
        path,
        caption=f"../report/{caption}.rst",
        category=category,
        subcategory=subcategory,
        labels=run | labels,
    )


@dataclass(frozen=True)
class Modality:
    """One experiment, for a stage both run the same way (evaluate, reference-features, utility): one rule
    definition gives each experiment its rule, with its folders and its scheduling.

    `prefix` ("" or "t2i_") starts the results folders (results/t2i_utility/) and follows the verb of the rule names
    (score_t2i_utility); `sampler` is the sampler wildcard; `attack_scores` the input function of one attack's score
    files; `roc_entry` the caption and category of its ROC plots. The unconditional experiment's jobs take their
    resources and priorities from the rule (profiles override them), the text-to-image ones their resources from
    text2image.resources and no priority.
    """

    prefix: str
    sampler: str
    attack_scores: Callable
    roc_entry: dict

    @property
    def is_text2image(self):
        """Whether this is the text-to-image experiment (the one with a prefix)."""
        return bool(self.prefix)

    def rule(self, name):
        """This experiment's name of the unconditional rule `name` (score_utility gives score_t2i_utility)."""
        verb, _, noun = name.partition("_")
        return f"{verb}_{self.prefix}{noun}"

    def folder(self, stage):
        """The results folder of `stage` in one replicate: results/<prefix><stage>/{run}."""
        return f"results/{self.prefix}{stage}/{{run}}"

    def resources(self, kind, **given):
        """`given`, or text2image.resources.<kind> for the text-to-image experiment."""
        return t2i_resources(kind) if self.is_text2image else given

    def priority(self, given):
        """`given`, or none (0) for the text-to-image experiment."""
        return 0 if self.is_text2image else given

    def evaluate_inputs(self, wildcards):
        """Input function for `unpack` of an attack's evaluation: its metrics config, its score files and, for the
        unconditional experiment, the split (DualMD's targets are also evaluated per member half).
        """
        named = {
            "config": config_file("metrics")(wildcards),
            "scores": self.attack_scores(wildcards),
        }
        if not self.is_text2image:
            split = f"results/split/{wildcards.run}/split"
            named |= {"split": f"{split}.npz", "split_meta": f"{split}.json"}
        return named | {"code": stage_code("metrics")}

    @property
    def sampler_option(self):
        """The sampler wildcard as a `stage_command` value: "{wildcards.sampler}"."""
        return self.sampler.replace("{", "{wildcards.")


# The unconditional experiment, then the text-to-image one.
MODALITIES = [
    Modality(
        prefix="",
        sampler="{sampler}",
        attack_scores=attack_scores,
        roc_entry={"caption": "roc", "category": "Attacks"},
    ),
    Modality(
        prefix="t2i_",
        sampler="{t2i_sampler}",
        attack_scores=t2i_attack_scores,
        roc_entry={"caption": "t2i_roc", "category": "Text-to-image", "subcategory": "ROC curves"},
    ),
]
