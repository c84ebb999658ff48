"""Runs the training-step example of docs/PYTHON.md (its first ```python block) as written."""

import math
import pathlib
import re

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "PYTHON.md"


def test_readme_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks, f"no ```python block in {DOC}"
    code = blocks[0]
    assert len(code.strip().splitlines()) <= 12, "the example is meant to stay short"
    grads_at_step = []

    def record(optimizer, args, kwargs):
        grads_at_step.extend(p.grad.clone() for group in optimizer.param_groups for p in group["params"])

    handle = register_optimizer_step_pre_hook(record)
    try:
        namespace = {}
        torch.manual_seed(0)
        exec(compile(code, str(DOC), "exec"), namespace)
    finally:
        handle.remove()
    assert math.isfinite(namespace["loss"].item())
    # The optimizer step saw non-zero gradients that came through the attention's backward.
    assert grads_at_step and all(torch.isfinite(g).all() for g in grads_at_step)
    assert any(g.abs().sum() > 0 for g in grads_at_step)
