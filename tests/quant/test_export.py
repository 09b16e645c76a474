"""The ONNX export reproduces the torch model on real audio, in both subsampling forms."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from asr_tune.quant.data import feature_batches, load_rows
from asr_tune.quant.export import export_onnx
from asr_tune.quant.graph import compute_nodes, list_groups
from asr_tune.quant.runtime import compare_outputs, make_session, run_onnx, run_torch
from quant_helpers import build_module


@pytest.mark.parametrize("as_matmul", [False, True])
def test_export_matches_torch_on_real_audio(tmp_path, corpus, as_matmul):
    module = build_module()
    info = export_onnx(module.model, tmp_path / "m.onnx", 40, subsampling_as_matmul=as_matmul)
    batches = feature_batches(module, load_rows(corpus["eval"], module, "eval"), batch_seconds=4.0)
    assert len(batches) > 1 and any(len(set(b.lengths.tolist())) > 1 for b in batches)  # padded batches
    ref = run_torch(module.model, batches)
    err = compare_outputs(ref, run_onnx(make_session(info.path, 1), batches))
    assert err["max_abs"] < 1e-3 and err["argmax_agreement"] == 1.0


def test_groups_cover_every_linear_and_pointwise_conv(tmp_path):
    module = build_module()
    model = onnx.load(export_onnx(module.model, tmp_path / "m.onnx", 40).path)
    nodes = compute_nodes(model)
    groups = list_groups(nodes)
    assert list(groups) == ["subsampling.conv", "subsampling.out",
                            *[f"layers.{i}.{p}" for i in range(2) for p in ("ffn1", "attn", "conv", "ffn2")],
                            "ctc_head"]
    assert groups["layers.0.attn"] == ["layers.0.attn.in_proj", "layers.0.attn.out_proj"]
    assert groups["layers.1.conv"] == ["layers.1.conv.pw1", "layers.1.conv.pw2"]
    # every nn.Linear of the torch model (and MHA's in_proj parameter) has a quantizable node
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in module.model.modules())  # incl. MHA out_proj
    n_in_proj = sum(isinstance(m, torch.nn.MultiheadAttention) for m in module.model.modules())
    n_pointwise = sum(isinstance(m, torch.nn.Conv1d) and m.kernel_size == (1,) for m in module.model.modules())
    grouped = [n for names in groups.values() for n in names]
    assert len(grouped) == n_linear + n_in_proj + n_pointwise + 2  # + two subsampling Conv2d
    never = sorted(n.kind for n in nodes if n.group is None)
    assert never.count("depthwise Conv1d") == 2 and len(never) == 6  # + Q.K^T and P.V per layer


def test_rejects_unsupported_architecture(tmp_path):
    from asr_tune.errors import QuantizationError

    with pytest.raises(QuantizationError, match="not a ConformerCTC"):
        export_onnx(torch.nn.Linear(4, 4), tmp_path / "x.onnx", 40)
    np.testing.assert_equal((tmp_path / "x.onnx").exists(), False)
