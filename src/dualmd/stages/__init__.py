"""One function per workflow rule: read the stage's input files, call the library, write its output files.

Every rule runs ``python -m dualmd <stage> ...`` (`dualmd.cli` only parses the arguments and sets the thread
count); tests call these functions directly. Stages that run different library code live in different
modules, so that a rule's code inputs (the import closure of its stage module, `dualmd.sources.closure`) are
the modules it runs, and editing one reruns only the stages that import it. `device` is the one module that is
not a stage: the device the stages run their models on.
"""
