"""One function per workflow rule: read the stage's input files, call the library, write its output files.

Every rule runs ``python -m dualmd <stage> ...`` (`dualmd.cli` only parses the arguments and sets the thread
count); tests call these functions directly. Stages that run different library code live in different
modules, so that a rule's code inputs (the import closure of its stage module, `dualmd.sources.closure`) are
the modules it runs, and editing one reruns only the stages that import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def device() -> torch.device:
    """CUDA when visible, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
