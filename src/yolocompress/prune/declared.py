"""What the graph cannot see: users' declarations on `register_module`, and the shapes seen while tracing.

The dependency graph sees a `split` along the channels, but not the module attribute its sizes come from;
`split_sizes=...` names it (models/registry.py finds the owners), and the split's pruner rewrites it
(prune/tp_fixes.py, FixedSplitPruner); the checkpoint records it (models/checkpoint.py, layer_structure).
Torch-Pruning's graph also keeps no tensor shapes; `TraceRecorder` notes them (by autograd node) so that
edges which carry no channel identity (a broadcast, a reduction over the channels) can be told apart.
"""
from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode


_SPLITS = {torch.split, torch.chunk, torch.Tensor.split, torch.Tensor.chunk, torch.Tensor.split_with_sizes,
           torch.tensor_split, torch.Tensor.tensor_split}


class TraceRecorder(TorchFunctionMode):
    """While the model runs, note by autograd node: which declared module made each split (`found`), the
    shape of every tensor made (`shapes`) and the channel count of every input of a channel concat
    (`cat_sizes`)."""

    def __init__(self, owners):
        super().__init__()
        self.owners, self.stack, self.found, self._hooks = owners, [], {}, []
        self.shapes, self.cat_sizes = {}, {}

    def __enter__(self):
        def enter(mod, args):
            self.stack.append(mod)

        def leave(mod, args, out):
            self.stack.pop()
        for m in self.owners:
            self._hooks += [m.register_forward_pre_hook(enter), m.register_forward_hook(leave)]
        return super().__enter__()

    def __exit__(self, *exc):
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor) and t.grad_fn is not None:
                self.shapes.setdefault(t.grad_fn, tuple(t.shape))
        if func is torch.cat and isinstance(out, torch.Tensor) and out.grad_fn is not None and out.dim() >= 2:
            dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
            if dim in (1, 1 - out.dim()):
                self.cat_sizes[out.grad_fn] = [int(t.shape[1]) for t in args[0]
                                               if isinstance(t, torch.Tensor) and t.requires_grad]
        if self.stack and func in _SPLITS and isinstance(out, (tuple, list)) and out:
            grad_fn = getattr(out[0], "grad_fn", None)
            if grad_fn is not None:
                self.found[grad_fn] = (self.stack[-1], self.owners[self.stack[-1]])
        return out
