"""Zero-shot evaluation metrics, one local `evaluate` metric per folder.

Each `metrics/<name>/<name>.py` is self-contained (only `datasets`, `evaluate` and the standard
library), because `evaluate.load("/abs/path/metrics/<name>")` copies that one file into its own
module cache. The same file defines the plain function that does the work, importable without
`evaluate.load`, e.g. `from metrics.vqa_accuracy.vqa_accuracy import vqa_accuracy`.

Every score is reported on the paper's 0-100 scale (CIDEr x100 too, as in Table 1).
"""
