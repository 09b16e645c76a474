"""Weight decay applies to weight matrices/kernels only, never to biases and norm gains/shifts, also
after a checkpoint restore with a new (e.g. PBT-mutated) weight decay."""
from __future__ import annotations

import pytest
import torch

from asr_tune.config import load_config
from asr_tune.data.tokenizer import train_tokenizer
from asr_tune.model.lightning_module import ASRModule

TINY = {"features.n_mels": 16, "model.d_model": 16, "model.num_layers": 1, "model.num_heads": 2,
        "model.ffn_mult": 2, "model.conv_kernel": 3, "optim.weight_decay": 0.5, "optim.lr": 0.1}


def _module(**over) -> ASRModule:
    cfg = load_config(None, {**TINY, **over})
    return ASRModule(cfg, train_tokenizer(["zero one two"], cfg.tokenizer))


def _optimizer(module: ASRModule) -> torch.optim.Optimizer:
    return module.configure_optimizers()["optimizer"]


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
def test_decay_only_on_matrices(optimizer: str) -> None:
    module = _module(**{"optim.optimizer": optimizer})
    opt = _optimizer(module)
    decay_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    names = dict(module.named_parameters())
    assert set(decay_of) == {id(p) for p in names.values()}
    norms = [n for n, m in module.named_modules() if isinstance(m, (torch.nn.LayerNorm, torch.nn.BatchNorm1d))]
    assert norms
    for name, p in names.items():
        expected = 0.5 if p.ndim > 1 else 0.0
        assert decay_of[id(p)] == expected, name
    for n in norms:  # norm gains and shifts are never decayed
        assert decay_of[id(names[f"{n}.weight"])] == 0.0


def test_adamw_step_with_zero_gradient_leaves_norms_and_biases_alone() -> None:
    module = _module()
    opt = _optimizer(module)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    for p in module.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for name, p in module.named_parameters():
        if p.ndim <= 1:
            assert torch.equal(p, before[name]), name  # decoupled decay would shrink them
        else:
            assert not torch.equal(p, before[name]), name


def test_restore_with_a_new_weight_decay_keeps_the_no_decay_group_at_zero() -> None:
    donor = _module()
    state = {"optimizer_states": [_optimizer(donor).state_dict()], "lr_schedulers": []}
    recipient = _module(**{"optim.weight_decay": 0.25})
    recipient.on_load_checkpoint(state)
    decays = sorted(g["weight_decay"] for g in state["optimizer_states"][0]["param_groups"])
    assert decays == [0.0, 0.25]
