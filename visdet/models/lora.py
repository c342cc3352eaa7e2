"""Low-rank adapters (LoRA, Hu et al. 2021) for Conv2d and Linear layers.

``inject_lora(model, pattern, rank, alpha, dropout, train_modules)`` wraps every Conv2d /
Linear whose qualified name matches ``pattern`` (a regular expression, ``re.search``) with
an adapter ``y = base(x) + (alpha / rank) * B(A(dropout(x)))``. ``B`` starts at zero, so the
adapted model's outputs equal the base model's at initialisation. Everything else is frozen
except the modules whose names match ``train_modules`` (typically the heads).

For a Conv2d, ``A`` is a conv with the base's kernel, stride, padding and dilation (to
``rank`` channels) and ``B`` a 1x1 conv, so the update merges into the base kernel exactly:
``W += (alpha / rank) * B @ A``. ``merge_lora`` folds the adapters in (for evaluation and
export) and can remove the wrappers so the state dict has the original keys again.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from visdet.models.weights.checkpoint_state import load_weights_file


@dataclass
class LoRAConfig:
    """``pattern`` / ``train_modules`` None: the model's defaults (``model.lora_targets()``:
    the backbone's ``lora_pattern`` and its detector family's, see ``resolved``)."""

    pattern: str | None = None
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    train_modules: list[str] | None = None

    def __post_init__(self) -> None:
        self.pattern = None if self.pattern is None else str(self.pattern)
        if self.train_modules is not None:
            self.train_modules = [str(p) for p in self.train_modules]
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"lora.rank must be an integer >= 1, got {self.rank!r}")
        if self.alpha <= 0:
            raise ValueError(f"lora.alpha must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        for name, pat in [("pattern", self.pattern or "")] + [
            ("train_modules", p) for p in self.train_modules or []
        ]:
            try:
                re.compile(pat)
            except re.error as e:
                raise ValueError(
                    f"lora.{name}: {pat!r} is not a regular expression ({e})"
                ) from None

    def resolved(self, model: nn.Module) -> LoRAConfig:
        """This config with ``pattern`` / ``train_modules`` filled from the model's defaults."""
        if self.pattern is not None and self.train_modules is not None:
            return self
        if not hasattr(model, "lora_targets"):
            raise ValueError(
                f"lora.pattern: {type(model).__name__} has no default LoRA targets; set "
                "lora.pattern (a regular expression on module names)"
            )
        pattern, train_modules = model.lora_targets()
        return LoRAConfig(
            self.pattern if self.pattern is not None else pattern,
            self.rank,
            self.alpha,
            self.dropout,
            self.train_modules if self.train_modules is not None else list(train_modules),
        )


class LoRALayer(nn.Module):
    """A frozen base layer plus a trainable low-rank update."""

    def __init__(
        self, base: nn.Conv2d | nn.Linear, rank: int, alpha: float, dropout: float
    ) -> None:
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.rank = rank
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if isinstance(base, nn.Conv2d):
            if base.groups != 1:
                raise ValueError("LoRA supports Conv2d with groups=1 only")
            self.lora_a = nn.Conv2d(
                base.in_channels,
                rank,
                base.kernel_size,
                base.stride,
                base.padding,
                base.dilation,
                bias=False,
                padding_mode=base.padding_mode,
            )
            self.lora_b = nn.Conv2d(rank, base.out_channels, 1, bias=False)
        else:
            self.lora_a = nn.Linear(base.in_features, rank, bias=False)
            self.lora_b = nn.Linear(rank, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_a.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_b.weight)
        self.lora_a.to(base.weight)
        self.lora_b.to(base.weight)
        self.merged = False

    def delta_weight(self) -> Tensor:
        """The update the adapter adds to ``base.weight``."""
        b = self.lora_b.weight.reshape(self.lora_b.weight.shape[0], self.rank)
        a = self.lora_a.weight.reshape(self.rank, -1)
        return (b @ a).reshape(self.base.weight.shape) * self.scaling

    def forward(self, x: Tensor) -> Tensor:
        out = self.base(x)
        if self.merged:
            return out
        return out + self.lora_b(self.lora_a(self.dropout(x))) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False


def _matching_layers(model: nn.Module, pattern: str) -> list[str]:
    regex = re.compile(pattern)
    return [
        n
        for n, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
        and not isinstance(m, LoRALayer)
        and ".lora_" not in f".{n}"
        and regex.search(n)
    ]


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def inject_lora(model: nn.Module, config: LoRAConfig) -> dict[str, int]:
    """Wrap the matching layers, freeze the rest (except ``train_modules``).

    Returns ``{"adapted_layers", "trainable", "total"}`` parameter counts."""
    config = config.resolved(model)
    names = _matching_layers(model, config.pattern)
    if not names:
        raise ValueError(
            f"lora.pattern {config.pattern!r} matches no Conv2d or Linear layer; "
            "layer names look like "
            f"{[n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)][:3]}"
        )
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        _set_module(
            model,
            name,
            LoRALayer(model.get_submodule(name), config.rank, config.alpha, config.dropout),
        )
    train_res = [re.compile(p) for p in config.train_modules]
    for name, module in model.named_modules():
        if isinstance(module, LoRALayer):
            for p in (*module.lora_a.parameters(), *module.lora_b.parameters()):
                p.requires_grad_(True)
        elif any(r.search(name) for r in train_res) and name:
            for p in module.parameters():
                p.requires_grad_(True)
    model._lora_config = config  # remembered for adapter checkpoints
    return {
        "adapted_layers": len(names),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total": sum(p.numel() for p in model.parameters()),
    }


def adapter_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The trainable part: LoRA weights and the fully trained modules' parameters/buffers."""
    config: LoRAConfig | None = getattr(model, "_lora_config", None)
    if config is None:
        raise ValueError("the model has no LoRA adapters (call inject_lora first)")
    train_res = [re.compile(p) for p in config.train_modules]
    state = {}
    for key, value in model.state_dict().items():
        module_name = key.rsplit(".", 1)[0]
        if ".lora_a." in key or ".lora_b." in key or any(r.search(module_name) for r in train_res):
            state[key] = value.detach().cpu().clone()
    return state


def save_adapters(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write the adapter weights and their configuration to ``path`` (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": "visdet-lora-v1",
        "config": asdict(model._lora_config),
        "state_dict": adapter_state_dict(model),
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_adapters(model: nn.Module, path: str | os.PathLike) -> LoRAConfig:
    """Inject adapters as saved in ``path`` (unless already injected) and load their weights.

    The file is read with ``weights_only=True`` (save_adapters writes tensors, numbers,
    strings and containers only): an adapter file that needs more is refused."""
    payload = load_weights_file(path, "lora adapters")
    if not isinstance(payload, dict) or payload.get("format") != "visdet-lora-v1":
        raise ValueError(f"{path} is not a visdet LoRA adapter file")
    config = LoRAConfig(**payload["config"])
    if getattr(model, "_lora_config", None) is None:
        inject_lora(model, config)
    elif asdict(model._lora_config) != asdict(config):
        raise ValueError(
            f"{path} was saved with LoRA settings {asdict(config)}, the model has "
            f"{asdict(model._lora_config)}"
        )
    missing = set(payload["state_dict"]) - set(model.state_dict())
    if missing:
        raise ValueError(
            f"{path}: {len(missing)} adapter keys do not exist in the model, "
            f"first: {sorted(missing)[:3]}"
        )
    model.load_state_dict(payload["state_dict"], strict=False)
    return config


def merge_lora(model: nn.Module, remove: bool = False) -> nn.Module:
    """Fold every adapter into its base weight; with ``remove`` also replace the wrappers by
    their base layers (original state-dict keys; the adapters are gone)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALayer):
            module.merge()
            if remove:
                _set_module(model, name, module.base)
    if remove and hasattr(model, "_lora_config"):
        del model._lora_config
    return model
