"""Shared pytest setup for the ONNX interpreter tests."""

import torch

# Two cores are shared with other work: keep torch single-threaded in tests.
torch.set_num_threads(1)
