"""Loads the compiled operators (one shared object for the whole family) and provides the helper
that registers fake (meta) kernels on every torch version the package supports."""

import os

import torch

_LIB_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_opennsa_ops.so")
torch.ops.load_library(_LIB_PATH)

_meta_library = None


def register_fake(name):
    """Decorator registering a fake kernel (output shapes and dtypes only, for torch.compile and
    meta tensors) for opennsa::<name>. Full validation happens in the CPU kernel."""
    global _meta_library
    qualname = "opennsa::" + name
    if hasattr(torch.library, "register_fake"):  # torch >= 2.4
        return torch.library.register_fake(qualname)
    if hasattr(torch.library, "impl_abstract"):  # torch 2.2 - 2.3
        return torch.library.impl_abstract(qualname)
    # torch 2.1: a Meta kernel, which fake tensors also fall back to.
    if _meta_library is None:
        _meta_library = torch.library.Library("opennsa", "IMPL")

    def register(fn):
        _meta_library.impl(name, fn, "Meta")
        return fn
    return register


def has_op_autograd():
    """Op-level autograd (torch.library.register_autograd, torch >= 2.4)."""
    return hasattr(torch.library, "register_autograd")
