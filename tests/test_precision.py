"""`--precision`: NVIDIA's fp16 layers in float16 or bfloat16 against float32 (on the CPU,
where both dtypes run), the rest of the network untouched, and bad values refused."""

from __future__ import annotations

import pytest
import torch

from irep3d.errors import UsageError
from irep3d.generator import load_generator, seeds_to_ws
from irep3d.networks.precision import PRECISIONS, check_precision, layer_dtype

# Relative RMS error of the whole image, measured here over seeds 1-3: fp16 below 5e-3,
# bf16 6e-3..1.5e-2 (StyleGAN2, StyleGAN3-R) and 4e-2..5.2e-2 (StyleGAN3-T, whose fp16
# layers are 12 of its 15). bfloat16 keeps 8 bits of mantissa against float16's 11.
TOLERANCE = {"fp16": 1e-2, "bf16": 1e-1}


@pytest.fixture(scope="module", params=["sg3t-256", "sg2-256"])
def net_and_ws(request):
    net = load_generator(f"builtin:{request.param}", "cpu")
    return net, seeds_to_ws(net, [1])  # one frame: float16 convolutions are slow on a CPU


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reduced_precision_is_close_to_float32_and_not_equal(net_and_ws, precision):
    net, ws = net_and_ws
    with torch.no_grad():
        ref = net.synthesis(ws, precision="fp32")
        low = net.synthesis(ws, precision=precision)
    assert low.dtype == torch.float32  # returned as float32 whatever the layers ran in
    err = ((low - ref).norm() / ref.norm()).item()
    assert 0 < err < TOLERANCE[precision], err  # > 0: the fp16 layers really ran reduced


def test_auto_is_float32_on_the_cpu(net_and_ws):
    net, ws = net_and_ws
    with torch.no_grad():
        assert torch.equal(net.synthesis(ws), net.synthesis(ws, precision="fp32"))


def test_layers_before_the_fp16_ones_are_untouched():
    net = load_generator("builtin:sg3t-256", "cpu")
    ws = seeds_to_ws(net, [3])
    early = "L2_36_64"  # the last layer before the num_fp16_res highest resolutions
    with torch.no_grad():
        ref = net.synthesis(ws, capture=[early], precision="fp32")[early]
        low = net.synthesis(ws, capture=[early], precision="bf16")[early]
    assert torch.equal(ref, low)


def test_layer_dtype_table():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert layer_dtype(True, "auto", cpu) == torch.float32
    assert layer_dtype(True, "auto", cuda) == torch.float16
    assert layer_dtype(True, "bf16", cpu) == torch.bfloat16
    assert layer_dtype(False, "fp16", cuda) == torch.float32  # never outside NVIDIA's fp16 layers
    assert layer_dtype(True, "fp32", cuda) == torch.float32


# What NVIDIA's fp16 layers run in on the CPU under each --precision; the other layers
# always run in float32.
FP16_LAYERS_ON_THE_CPU = {
    "auto": torch.float32,
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_precision_runs_the_fp16_layers_in_its_dtype(precision):
    """Every name --precision accepts runs, the marked layers compute in its dtype, the
    others in float32, and what is captured comes back as float32."""
    net = load_generator("builtin:sg3t-256", "cpu")
    ws = seeds_to_ws(net, [2])
    last = "L3_52_64"  # the first of the fp16 layers: the run stops there
    names = net.synthesis.layer_names[1 : net.synthesis.layer_names.index(last) + 1]
    ran: dict[str, torch.dtype] = {}
    hooks = [
        getattr(net.synthesis, name).register_forward_hook(
            lambda _m, _i, out, name=name: ran.update({name: out.dtype})
        )
        for name in names
    ]
    try:
        with torch.no_grad():
            acts = net.synthesis(ws, capture=["L2_36_64", last], precision=check_precision(precision))
    finally:
        for hook in hooks:
            hook.remove()
    marked = {name: getattr(net.synthesis, name).use_fp16 for name in names}
    assert marked[last] and not marked["L2_36_64"]  # both kinds are covered
    expected = {name: FP16_LAYERS_ON_THE_CPU[precision] if marked[name] else torch.float32 for name in names}
    assert ran == expected
    assert all(a.dtype == torch.float32 for a in acts.values())


def test_bad_precision_names_the_valid_ones():
    with pytest.raises(UsageError, match="auto, fp32, fp16, bf16"):
        check_precision("fp8")
