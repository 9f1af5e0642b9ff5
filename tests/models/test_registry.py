import pytest
import torch

from tgs.core.errors import ConfigError
from tgs.models import registry
from tgs.models.losses import LOSSES, LovaszHinge, create_loss
from tgs.models.registry import create_model, create_net, list_models, smp_archs
from tgs.models.seed_unet import SeedUNet

SMALL = {"encoder": "resnet18"}


# DPT takes a ViT encoder at the size it was made for (224 px, bilinear resize)
VIT = ({"encoder": "tu-vit_tiny_patch16_224"}, "resize", 224)


@pytest.mark.parametrize("name", list_models())
def test_every_model_forward_backward_101_and_its_size(name):
    kw, geometry, size = {"seed_unet": ({}, "pad", 128), "dpt": VIT}.get(name, (SMALL, "pad", 128))
    model = create_model(name, geometry=geometry, size=size, **kw)
    x = torch.randn(2, 1, 101, 101)
    out = model(x)
    assert out.shape == (2, 1, 101, 101)
    out.mean().backward()
    grads = [p.grad is not None for p in model.parameters()]
    assert sum(grads) / len(grads) > 0.5  # (pspnet leaves its unused deepest stage without grad)
    raw = create_net(name, in_channels=1, **kw)
    assert raw(torch.randn(2, 1, size, size)).shape == (2, 1, size, size)


def test_smp_unet_takes_101_directly():
    model = create_model("unet", geometry="none", **SMALL)
    assert model(torch.randn(2, 1, 101, 101)).shape == (2, 1, 101, 101)


def test_seed_unet_structure():
    net = SeedUNet(n_filters=16)
    block = net.downs[0]
    convs = [m for m in block if isinstance(m, torch.nn.Conv2d)]
    assert [c.in_channels for c in convs] == [1, 16]  # second conv chained to the first
    assert net.bottleneck[0].out_channels == 256  # 16x filters
    ups = [u for u in net.ups]
    assert all(u.kernel_size == (3, 3) and u.stride == (2, 2) for u in ups)
    assert net.head.kernel_size == (1, 1)
    with pytest.raises(ValueError, match="divisible by 16"):
        net(torch.randn(1, 1, 101, 101))


def test_registry_typos_list_valid_names():
    with pytest.raises(ConfigError, match="did you mean unet") as e:
        create_model("uent")
    assert "seed_unet" in str(e.value) and "fpn" in str(e.value)
    with pytest.raises(ConfigError, match="resnet34"):
        create_model("unet", encoder="resnet3")


def test_smp_architectures_are_smps_own(monkeypatch):
    import segmentation_models_pytorch as smp

    assert set(smp_archs()) == set(smp.MODEL_ARCHITECTURES_MAPPING)  # DPT too, on smp 0.6
    assert set(smp_archs()) | {"seed_unet"} == set(list_models())
    monkeypatch.setattr(registry, "smp_archs", lambda: ())  # Kaggle's image: no smp
    assert list_models() == ["seed_unet"]
    with pytest.raises(ConfigError, match="segmentation_models_pytorch, not installed"):
        create_model("unet")


def test_scse_attention_changes_the_decoder():
    plain = create_net("unet", **SMALL)
    scse = create_net("unet", decoder_attention_type="scse", **SMALL)
    assert sum(p.numel() for p in scse.parameters()) > sum(p.numel() for p in plain.parameters())


def test_local_encoder_weights_file(tmp_path):
    import segmentation_models_pytorch as smp

    rgb = smp.Unet("resnet18", encoder_weights=None, in_channels=3)
    torch.save(rgb.encoder.state_dict(), tmp_path / "r18.pth")
    model = create_net("unet", encoder="resnet18", encoder_weights=str(tmp_path / "r18.pth"))
    w3 = rgb.encoder.conv1.weight
    assert torch.allclose(model.encoder.conv1.weight, w3.sum(dim=1, keepdim=True))
    assert torch.equal(model.encoder.layer1[0].conv1.weight, rgb.encoder.layer1[0].conv1.weight)


def test_losses_from_names():
    logits = torch.randn(2, 1, 101, 101, requires_grad=True)
    target = (torch.rand(2, 1, 101, 101) > 0.5).float()
    for name in LOSSES:
        value = create_loss(name)(logits, target)
        assert value.ndim == 0 and torch.isfinite(value)
    bce, dice = create_loss("bce")(logits, target), create_loss("dice")(logits, target)
    combo = create_loss("0.5*bce+2*dice")(logits, target)
    assert torch.allclose(combo, 0.5 * bce + 2 * dice)
    lovasz = create_loss("lovasz").losses[0]  # TGS scores per image: the per-image hinge
    assert isinstance(lovasz, LovaszHinge) and (lovasz.activation, lovasz.symmetric) == (
        "relu",
        False,
    )
    with pytest.raises(ConfigError, match="did you mean lovasz"):
        create_loss("bce+lovsz")
    with pytest.raises(ConfigError, match="cannot parse"):
        create_loss("bce+*")


def test_cpu_amp_is_bf16_only_where_native(monkeypatch):
    """amp on CPU autocasts convolutions to bf16 when the CPU has AMX/AVX512-BF16, never when it
    is emulated, and never with amp off; the loss and probabilities stay float32."""
    from tgs.core.config import load_config
    from tgs.predict import inference

    cfg_on = load_config(None, ["device=cpu"])
    cfg_off = load_config(None, ["device=cpu", "amp=false"])
    assert inference.Runtime.from_config(cfg_off).amp_dtype is None
    monkeypatch.setattr(inference, "cpu_native_bf16", lambda: False)
    assert inference.Runtime.from_config(cfg_on).amp_dtype is None
    monkeypatch.setattr(inference, "cpu_native_bf16", lambda: True)
    rt = inference.Runtime.from_config(cfg_on)
    assert rt.amp_dtype == torch.bfloat16
    model = create_model("seed_unet", n_filters=4, geometry="resize", size=32)
    seen = []
    model.net.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with rt.autocast():
        model(torch.randn(2, 1, 101, 101))
    assert seen == [torch.bfloat16]
    probs, _ = inference.predict_array(
        model, torch.zeros(3, 101, 101, dtype=torch.uint8).numpy(), rt
    )
    assert probs.dtype.name == "float32" and probs.shape == (3, 101, 101)


def test_seed_unet_scse_is_smps_module_applied_after_each_up_block():
    from segmentation_models_pytorch.base.modules import SCSEModule

    from tgs.models.heads import SCSE

    torch.manual_seed(0)
    ours, theirs = SCSE(32), SCSEModule(32)
    theirs.load_state_dict(ours.state_dict())  # same layers, same keys
    x = torch.randn(2, 32, 8, 8)
    torch.testing.assert_close(ours(x), theirs(x))
    net = create_net("seed_unet", n_filters=4, scse=True)
    widths = []
    for m in net.modules():
        if isinstance(m, SCSE):
            m.register_forward_hook(lambda mod, inp, out: widths.append(out.shape[1]))
    net(torch.randn(2, 1, 32, 32)).mean().backward()
    assert widths == [32, 16, 8, 4]  # run once per up-block, at its width
    assert all(p.grad is not None for p in net.parameters())
    plain = create_net("seed_unet", n_filters=4, decoder_attention_type="scse")  # smp's key:
    assert not any(isinstance(m, SCSE) for m in plain.modules())  # old runs keep a plain net


def test_seed_unet_residual_blocks_add_their_shortcut():
    from tgs.models.seed_unet import ResidualBlock

    block = ResidualBlock(8, 8).eval()
    last_bn = [m for m in block.body if isinstance(m, torch.nn.BatchNorm2d)][-1]
    torch.nn.init.zeros_(last_bn.weight)  # the body outputs its last BN's bias: -1
    torch.nn.init.constant_(last_bn.bias, -1.0)
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(block(x), torch.relu(x - 1))  # the ReLU comes after the sum
    assert isinstance(ResidualBlock(8, 16).shortcut[0], torch.nn.Conv2d)  # 1x1 where width changes
    plain, res = SeedUNet(n_filters=4), SeedUNet(n_filters=4, residual=True)
    assert all(isinstance(b, ResidualBlock) for b in [*res.downs, res.bottleneck, *res.up_blocks])
    x = torch.randn(2, 1, 32, 32)
    out = res(x)
    assert out.shape == plain(x).shape == (2, 1, 32, 32)
    out.mean().backward()  # no in-place autograd error
    # the same convolutions as the plain net, plus the shortcuts' 1x1 projections
    n_plain = sum(p.numel() for p in plain.parameters())
    shortcuts = [b.shortcut for b in res.modules() if isinstance(b, ResidualBlock)]
    n_proj = sum(p.numel() for s in shortcuts for p in s.parameters())
    assert sum(p.numel() for p in res.parameters()) == n_plain + n_proj > n_plain
