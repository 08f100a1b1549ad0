"""Shared test set-up: one torch thread (fast and predictable on small, shared CPU runners)."""

import torch

torch.set_num_threads(1)
