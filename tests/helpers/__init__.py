"""Builders shared by the tests, imported as ordinary modules (pytest puts `tests/` on the import path through
`pythonpath` in pyproject.toml):

- `helpers.models`: the tiny UNet and a model directory holding it;
- `helpers.training`: tiny images and a short training run of the tiny UNet, with interruptions;
- `helpers.projects`: copies of the project, commands and dry-run plans for the workflow and cluster tests;
- `helpers.text2image`: the image ids and short training runs of the text-to-image tests.
- `helpers.captioned`: tiny captioned datasets (Parquet, save_to_disk) and a tiny BLIP captioning model.

The conftest.py files hold fixtures and hooks only.
"""
