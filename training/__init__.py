"""The pieces `train.py` is made of, importable by tests: the training data and its collator
(`data`), model starting points and LoRA (`modeling`), the Trainer subclass with the paper's
optimiser groups and schedule (`trainer`), and what a run leaves behind (`report`: loss curve,
model card, Hub upload).

Nothing here ships to the Hub with a model, and nothing here parses arguments: `train.py` does.
"""
