import numpy as np
import pytest
import torch

from tgs.core.errors import ConfigError
from tgs.models.geometry import Geometry
from tgs.predict.tta import TTAS, VIEWS, hflip, predict_proba


def test_pad_round_trip_exact():
    x = torch.randn(3, 2, 101, 101)
    g = Geometry("pad", 128)
    y = g.forward(x)
    assert y.shape == (3, 2, 128, 128)
    assert torch.equal(g.inverse(y), x)
    # reflect padding: the row above the image mirrors row 1 (edge not repeated)
    assert torch.equal(y[:, :, 12, 13:114], x[:, :, 1, :])


def test_resize_round_trip_shapes_and_values():
    g = Geometry("resize", 128)
    x = torch.linspace(0, 1, 101).repeat(1, 1, 101, 1)  # smooth ramp
    y = g.forward(x)
    assert y.shape == (1, 1, 128, 128)
    back = g.inverse(y)
    assert back.shape == x.shape
    assert (back - x).abs().max() < 0.02


def test_none_is_identity_and_bad_names():
    x = torch.randn(1, 1, 101, 101)
    assert torch.equal(Geometry("none").forward(x), x)
    with pytest.raises(ConfigError, match="valid: pad, resize, none"):
        Geometry("crop")
    with pytest.raises(ConfigError):
        Geometry("pad", 64)


def test_hflip_is_own_inverse():
    x = torch.randn(2, 1, 101, 101)
    assert torch.equal(hflip(hflip(x)), x)
    assert torch.equal(hflip(x)[..., 0], x[..., -1])
    for name in TTAS["hflip"]:
        aug, deaug = VIEWS[name]
        assert torch.equal(deaug(aug(x)), x)


def test_views_of_a_batch_run_as_one_forward():
    calls = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            calls.append(x.shape[0])
            return x[:, :1] * 0 + torch.arange(x.shape[-1], dtype=torch.float32)

    x = torch.zeros(3, 1, 101, 101)
    p, _ = predict_proba(Recorder(), x, "hflip")
    assert calls == [6]  # 3 images x 2 views, one forward
    assert p.shape == (3, 101, 101)
    with pytest.raises(ConfigError, match="unknown tta 'vflip'"):
        predict_proba(Recorder(), x, "vflip")


def test_tta_averages_flipped_predictions():
    class LeftBright(torch.nn.Module):  # logits depend on absolute column: not flip-equivariant
        def forward(self, x):
            cols = torch.arange(x.shape[-1], dtype=torch.float32)
            return (cols - 50).expand_as(x).clone()

    x = torch.zeros(1, 1, 101, 101)
    p, cls = predict_proba(LeftBright(), x, "hflip")
    assert cls is None
    expected = (
        torch.sigmoid(torch.arange(101.0) - 50) + torch.sigmoid(50 - torch.arange(101.0))
    ) / 2
    np.testing.assert_allclose(p[0, 0].numpy(), expected.numpy(), rtol=1e-6)
    assert torch.allclose(
        predict_proba(LeftBright(), x, "none")[0][0, 0], torch.sigmoid(torch.arange(101.0) - 50)
    )
