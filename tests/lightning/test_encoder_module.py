"""EncoderModule: head on pooled features, loss, linear probe, checkpoint keys."""

import functools

import pytest
import torch
import torch.nn.functional as F

from visdet.lightning import EncoderModule
from visdet.models.encoders import GeneralEncoder
from visdet.models.weights.pretrained import init_backbone


def module(**kwargs):
    torch.manual_seed(0)
    enc = GeneralEncoder(depth=18, stage="c3", input_shape=(3, 32, 32))
    opt = functools.partial(torch.optim.SGD, lr=0.1)
    return EncoderModule(enc, num_classes=3, optimizer=opt, **kwargs)


def test_forward_is_linear_head_on_pooled_features():
    m = module().eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = m.encoder(x).mean((2, 3)) @ m.head.weight.T + m.head.bias
        torch.testing.assert_close(m(x), expected)
    assert m(x).shape == (2, 3)


def test_training_step_loss_and_gradients():
    m = module(hflip=False, label_smoothing=0.1)
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 1])
    loss = m.training_step((x, y), 0)
    torch.testing.assert_close(loss, F.cross_entropy(m(x), y, label_smoothing=0.1))
    loss.backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_linear_probe_trains_only_the_head_and_keeps_bn_stats():
    m = module(freeze_encoder=True)
    m.train()
    assert not m.encoder.training and m.head.training
    stats = m.encoder.backbone.bn1.running_mean.clone()
    m.training_step((torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])), 0).backward()
    torch.testing.assert_close(m.encoder.backbone.bn1.running_mean, stats)
    assert all(p.grad is None for p in m.encoder.parameters())
    opt = m.configure_optimizers()
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == 128 * 3 + 3


def test_bad_labels_and_arguments():
    m = module()
    with pytest.raises(ValueError, match=r"labels must be in 0..2"):
        m.training_step((torch.rand(2, 3, 32, 32), torch.tensor([0, 3])), 0)
    with pytest.raises(ValueError, match="num_classes"):
        module_cls = EncoderModule
        module_cls(GeneralEncoder(depth=18), num_classes=0, optimizer=torch.optim.SGD)
    with pytest.raises(ValueError, match="label_smoothing"):
        module(label_smoothing=1.0)


def test_checkpoint_keys_initialise_an_encoder(tmp_path):
    m = module()
    torch.save({"state_dict": m.state_dict()}, tmp_path / "enc.ckpt")
    fresh = GeneralEncoder(depth=18, stage="c3")
    init_backbone(fresh.backbone, str(tmp_path / "enc.ckpt"), key="encoder.init_from")
    for k, v in m.encoder.backbone.state_dict().items():
        torch.testing.assert_close(fresh.backbone.state_dict()[k], v)
