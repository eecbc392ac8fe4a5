"""Named-layer features for distillation: forward hooks on modules by name, learned adapters, and the
:class:`Objective` that turns a list of :class:`LossTerm` into one weighted loss."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from edgestill.compress.distill.losses import LossTerm
from edgestill.errors import ConfigError, did_you_mean

LOGITS = "logits"  # the pseudo-layer name for the model's output; relation losses use it when no pairs are given


def module_names(model) -> list[str]:
    """Every named submodule of ``model`` (the names layer pairs use), in definition order."""
    return [name for name, _ in model.named_modules() if name]


def resolve_module(model, name: str, *, role: str, loss: str = ""):
    """Return ``model``'s submodule called ``name``.

    Raises:
        ConfigError: no such module; the message lists the available names and the closest match.
    """
    modules = dict(model.named_modules())
    if name and name in modules:
        return modules[name]
    names = module_names(model)
    where = f"{loss}: " if loss else ""
    raise ConfigError(f"{where}the {role} has no module named {name!r}.{did_you_mean(name, names)} Available "
                      f"{role} modules ({len(names)}, plus {LOGITS!r} for the output): {', '.join(names)}.")


class FeatureTap:
    """Capture the outputs of named modules on every forward; use as a context manager or call ``close()``."""

    def __init__(self, model, names: Iterable[str], *, role: str = "model", detach: bool = False):
        self.outputs: dict[str, Any] = {}
        self._handles = []
        for name in dict.fromkeys(n for n in names if n != LOGITS):
            module = resolve_module(model, name, role=role)
            self._handles.append(module.register_forward_hook(self._hook(name, detach)))

    def _hook(self, name: str, detach: bool):
        def hook(_module, _inputs, output):
            if not hasattr(output, "shape"):
                raise ConfigError(f"module {name!r} returns {type(output).__name__}, not a tensor; pick a layer whose "
                                  "output is a single tensor.")
            self.outputs[name] = output.detach() if detach else output

        return hook

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> FeatureTap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_adapter(kind: str, student_shape: Sequence[int], teacher_shape: Sequence[int], *, where: str):
    """A learned map from a student feature (shape without batch) to the teacher feature's channels.

    ``conv1x1``: 1×1 conv + BatchNorm for 4-D maps (a Linear for vectors); ``linear``: pool to a vector, then
    Linear; ``none``: identity, only when the channel counts already agree.

    Raises:
        ConfigError: ``none`` with different channel counts, or ranks that cannot be matched.
    """
    import torch.nn as nn

    s, t = tuple(student_shape), tuple(teacher_shape)
    if kind == "none":
        if s[0] != t[0] or len(s) != len(t):
            raise ConfigError(f"{where}: adapter 'none' needs equal channels, but the student layer gives {list(s)} and "
                              f"the teacher layer {list(t)}. Use adapter 'conv1x1' or 'linear'.")
        return nn.Identity()
    if len(s) == 3 and len(t) == 3 and kind == "conv1x1":
        return nn.Sequential(nn.Conv2d(s[0], t[0], 1, bias=False), nn.BatchNorm2d(t[0]))
    if len(t) == 1 or kind == "linear":
        pool = [nn.AdaptiveAvgPool2d(1), nn.Flatten()] if len(s) == 3 else [nn.Flatten()]
        if len(t) != 1:
            raise ConfigError(f"{where}: adapter 'linear' maps to a vector, but the teacher layer gives {list(t)}. "
                              "Use adapter 'conv1x1' for feature maps.")
        in_features = s[0] if len(s) == 3 else int(_prod(s))
        return nn.Sequential(*pool, nn.Linear(in_features, t[0]))
    if len(s) == 1 and len(t) == 1:
        return nn.Linear(s[0], t[0])
    raise ConfigError(f"{where}: cannot adapt a student feature of shape {list(s)} to a teacher feature of shape "
                      f"{list(t)}; pair layers of the same kind (two feature maps or two vectors).")


def _prod(xs: Sequence[int]) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def build_objective(terms: Sequence[LossTerm], student_shapes: Mapping[str, Sequence[int]],
                    teacher_shapes: Mapping[str, Sequence[int]]):
    """Make the :class:`Objective` module (it owns the adapters) for ``terms``.

    Args:
        terms: the loss terms.
        student_shapes, teacher_shapes: per layer name (``"logits"`` included), the output shape without batch.

    Raises:
        ConfigError: a fitnets/at pair whose shapes cannot be matched.
    """
    import torch.nn as nn

    class Objective(nn.Module):
        """Weighted sum of loss terms; holds the learned adapters (they train with the student)."""

        def __init__(self) -> None:
            super().__init__()
            self.terms = tuple(terms)
            self.adapters = nn.ModuleDict()
            for i, term in enumerate(self.terms):
                if term.spec.kind != "pairs":
                    continue
                for j, (a, b) in enumerate(term.pairs or [(LOGITS, LOGITS)]):
                    s, t = tuple(student_shapes[a]), tuple(teacher_shapes[b])
                    where = f"{term.name} pair [{a!r}, {b!r}]"
                    if term.name == "fitnets":
                        self.adapters[f"t{i}p{j}"] = build_adapter(term.resolved()["adapter"], s, t, where=where)
                    elif term.name == "at" and (len(s) != 3 or len(t) != 3):
                        raise ConfigError(f"{where}: attention transfer needs two feature maps (C×H×W), got student "
                                          f"{list(s)} and teacher {list(t)}. Pick convolutional layers.")

        def forward(self, student_logits, teacher_logits, labels, student_feats: Mapping[str, Any],
                    teacher_feats: Mapping[str, Any], epoch: float = 0.0):
            """Return (total loss, {term label: detached value})."""
            total = student_logits.new_zeros(())
            parts: dict[str, Any] = {}
            for i, term in enumerate(self.terms):
                spec = term.spec
                opts = {k: v for k, v in term.resolved().items() if k not in ("pairs", "adapter")}
                if spec.kind == "logits":
                    if term.name == "dkd":
                        opts["epoch"] = epoch
                    value = spec.fn(student_logits, teacher_logits, labels, **opts)
                else:
                    values = []
                    for j, (a, b) in enumerate(term.pairs or [(LOGITS, LOGITS)]):
                        s = student_logits if a == LOGITS else student_feats[a]
                        t = teacher_logits if b == LOGITS else teacher_feats[b]
                        key = f"t{i}p{j}"
                        if key in self.adapters:
                            s = self.adapters[key](s)
                        values.append(spec.fn(s, t, **opts))
                    value = sum(values) / len(values)
                total = total + term.weight * value
                parts[f"{i}:{term.name}"] = float(value.detach())
            return total, parts

    return Objective()


def student_layers(terms: Sequence[LossTerm]) -> list[str]:
    """Student module names the terms need (without ``"logits"``)."""
    return list(dict.fromkeys(a for t in terms for a, _ in t.pairs if a != LOGITS))


def teacher_layers(terms: Sequence[LossTerm]) -> list[str]:
    """Teacher module names the terms need (without ``"logits"``)."""
    return list(dict.fromkeys(b for t in terms for _, b in t.pairs if b != LOGITS))
