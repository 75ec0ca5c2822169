"""Gradient health over training: ``analyze --steps N`` (:mod:`.loop`), :class:`Monitor` for hand-written
loops, and callbacks for PyTorch Lightning and Hugging Face ``Trainer`` (:mod:`.callbacks`)."""
