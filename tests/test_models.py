import pytest
import torch

from cu.models import MODELS, build_model


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("size,channels", [(8, 1), (32, 3)])
def test_shapes_and_normalised_embedding(name, size, channels):
    m = build_model(name, num_classes=7, in_channels=channels, width=4).eval()
    x = torch.randn(3, channels, size, size)
    logits, z = m.forward_both(x)
    assert logits.shape == (3, 7) and z.shape == (3, 128)
    assert torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(m(x), logits) and torch.allclose(m.embed(x), z)


def test_cifar_stem_and_width():
    m = build_model("resnet18", 10, 3, width=16)
    assert m.encoder.conv1.kernel_size == (3, 3) and m.encoder.conv1.stride == (1, 1)
    assert not any(isinstance(x, torch.nn.MaxPool2d) for x in m.modules())
    assert m.encoder.dim_out == 128  # 8 * width for BasicBlock
    assert build_model("resnet50", 10, 3, width=16).encoder.dim_out == 512  # 8 * width * 4
    full = sum(p.numel() for p in build_model("resnet18", 10, 3, 64).encoder.parameters())
    assert 11.0e6 < full < 11.3e6  # the standard CIFAR ResNet-18 trunk
    # classifier is ReLU -> Linear on z, as in the authors' SupConResNet
    assert isinstance(m.classifier[0], torch.nn.ReLU) and m.classifier[1].in_features == 128


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: resnet18, resnet34, resnet50, resnet101"):
        build_model("vgg16")
