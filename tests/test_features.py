import pytest
import torch
import torchvision

from lightning_style import StyleTransferError, VGGFeatures
from lightning_style.features import IMAGENET_MEAN, IMAGENET_STD, build_features, layer_names

PAPER_LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]


def torchvision_vgg(backbone: str) -> torch.nn.Module:
    """A torchvision VGG with freshly initialised features and a one-layer classifier: its state_dict has a whole
    model's keys, without the 120M classifier parameters that would take seconds to initialise and save."""
    with torch.device("meta"):
        model = getattr(torchvision.models, backbone)()
    model.features.to_empty(device="cpu")
    for module in model.features.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    model.classifier = torch.nn.Linear(4, 2)
    return model


@pytest.mark.parametrize(
    "backbone, indices",
    [("vgg19_bn", [2, 9, 16, 29, 32, 42]), ("vgg19", [1, 6, 11, 20, 22, 29]), ("vgg16", [1, 6, 11, 18, 20, 25])],
)
def test_layer_names_match_torchvision_indices(backbone, indices):
    names = layer_names(torchvision_vgg(backbone).features)
    assert [names.index(layer) for layer in PAPER_LAYERS] == indices
    assert names[:3] == (["conv1_1", "bn1_1", "relu1_1"] if backbone.endswith("_bn")
                         else ["conv1_1", "relu1_1", "conv1_2"])


def test_frozen_truncated_and_out_of_the_state_dict():
    features = VGGFeatures(["relu1_1", "relu4_2"], backbone="vgg19_bn", weights=None)
    assert len(features.net) == 33 and features.names[-1] == "relu4_2"
    assert list(features.parameters()) == []
    assert features.state_dict() == {}
    assert all(not buffer.requires_grad for buffer in features.buffers())
    images = torch.rand(1, 3, 32, 32)
    evaluated = features.eval()(images)
    trained = features.train()(images)  # Lightning calls train(): nothing in the net depends on the mode
    assert all(torch.equal(trained[layer], evaluated[layer]) for layer in evaluated)
    assert not any(isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.Dropout)) for m in features.modules())
    assert features.min_size == 8  # three pools before relu4_2


def test_matches_torchvision_with_the_same_weights(tmp_path):
    reference = torchvision_vgg("vgg16")
    torch.save(reference.state_dict(), tmp_path / "whole.pth")
    torch.save(reference.features.state_dict(), tmp_path / "features.pth")
    images = torch.rand(2, 3, 32, 32)
    normalised = torchvision.transforms.functional.normalize(images, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    expected = reference.features[:21].eval()(normalised)  # up to relu4_2
    for path in ["whole.pth", "features.pth"]:
        features = VGGFeatures(["relu4_2"], backbone="vgg16", weights=str(tmp_path / path))
        torch.testing.assert_close(features(images)["relu4_2"], expected)


def test_batchnorm_folded_into_the_convs_gives_torchvision_vgg19_bn_outputs(tmp_path):
    reference = torchvision_vgg("vgg19_bn")
    for module in reference.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # statistics far from the identity, as trained ones are
            module.running_mean.normal_(0, 0.5), module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5), module.bias.data.normal_(0, 0.2)
    torch.save(reference.state_dict(), tmp_path / "vgg19_bn.pth")
    features = VGGFeatures(PAPER_LAYERS, backbone="vgg19_bn", weights=str(tmp_path / "vgg19_bn.pth"))
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in features.modules())
    assert all(module.training for module in features.modules())  # no "modules in eval mode" warning at fit start
    images = torch.rand(2, 3, 32, 32)
    x = torchvision.transforms.functional.normalize(images, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    out, names = features(images), layer_names(reference.features)
    with torch.no_grad():
        for name, layer in zip(names, reference.features.eval(), strict=True):
            x = layer(x)
            if name in PAPER_LAYERS:
                torch.testing.assert_close(out[name], x, atol=1e-4, rtol=1e-4)
    # a tapped conv keeps its BatchNorm (frozen, mode-free), so that its output is the conv's
    kept = VGGFeatures(["conv2_1", "relu2_1"], backbone="vgg19_bn", weights=str(tmp_path / "vgg19_bn.pth"))
    assert isinstance(kept.net[kept.names.index("bn2_1")], torchvision.ops.FrozenBatchNorm2d)
    x = reference.features[:10].eval()(torchvision.transforms.functional.normalize(images, IMAGENET_MEAN, IMAGENET_STD))
    torch.testing.assert_close(kept.train()(images)["relu2_1"], x, atol=1e-4, rtol=1e-4)


def test_checkpointing_gives_the_same_outputs_and_gradients():
    plain = VGGFeatures(PAPER_LAYERS, backbone="vgg19_bn", weights=None)
    checkpointed = VGGFeatures(PAPER_LAYERS, backbone="vgg19_bn", weights=None, checkpointing=True)
    checkpointed.net = plain.net  # the same random weights
    gradients = []
    for features in (plain, checkpointed):
        images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)).requires_grad_()
        out = features(images)
        sum(value.square().mean() for value in out.values()).backward()
        gradients.append((out, images.grad))
    for name in PAPER_LAYERS:
        torch.testing.assert_close(gradients[0][0][name], gradients[1][0][name])
    torch.testing.assert_close(gradients[0][1], gradients[1][1])


def test_channels_last_gives_the_same_outputs():
    torch.manual_seed(0)
    plain = VGGFeatures(PAPER_LAYERS, backbone="vgg16", weights=None)
    torch.manual_seed(0)
    nhwc = VGGFeatures(PAPER_LAYERS, backbone="vgg16", weights=None, channels_last=True)
    assert nhwc.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.rand(1, 3, 32, 32)
    for name, value in nhwc(images).items():
        torch.testing.assert_close(value, plain(images)[name], atol=1e-5, rtol=1e-4)


def test_tapped_conv_output_is_not_overwritten_by_relu():
    out = VGGFeatures(["conv1_1", "relu1_1"], backbone="vgg16", weights=None)(torch.rand(1, 3, 16, 16))
    assert (out["conv1_1"] < 0).any()
    torch.testing.assert_close(out["relu1_1"], out["conv1_1"].relu())


def test_average_pooling():
    """``avg`` averages each 2x2 window where ``max`` takes its largest value, and the model passes it on."""
    from lightning_style import StyleTransfer

    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    built = {}
    for pooling in ("avg", "max"):
        torch.manual_seed(0)  # the same random weights
        built[pooling] = VGGFeatures(["relu2_1"], backbone="vgg16", weights=None, pooling=pooling)
    x = (image - built["avg"].mean) / built["avg"].std
    for name, layer in zip(built["avg"].names, built["avg"].net, strict=True):
        x = torch.nn.functional.avg_pool2d(x, 2) if name == "pool1" else layer(x)
    torch.testing.assert_close(built["avg"](image)["relu2_1"], x)
    assert not torch.allclose(built["max"](image)["relu2_1"], x)
    torch.manual_seed(0)
    model = StyleTransfer(backbone="vgg16", weights=None, pooling="avg", content_layers=["relu2_1"],
                          style_layers=["relu2_1"])
    torch.testing.assert_close(model.features(image)["relu2_1"], x)


def test_weights_for_another_backbone_say_which_fits(tmp_path):
    torch.save(build_features("vgg16").state_dict(), tmp_path / "vgg16.pth")
    with pytest.raises(StyleTransferError, match=r"do not fit vgg19_bn .*it fits vgg16: use backbone=vgg16$"):
        VGGFeatures(["relu4_2"], backbone="vgg19_bn", weights=str(tmp_path / "vgg16.pth"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"layers": ["relu9_1"]},
         r"^VGGFeatures\(layers=\['relu9_1'\]\) names an unknown vgg16 layer, relu9_1; known layers: relu1_1"),
        ({"layers": ["relu1_1"], "backbone": "resnet50"},
         r"^VGGFeatures\(backbone='resnet50'\) must be one of vgg19_bn"),
        ({"layers": ["relu1_1"], "weights": "missing.pth"}, r"^VGGFeatures\(weights='missing.pth'\) is neither a file"),
        ({"layers": ["relu1_1"], "pooling": "average"}, r"^VGGFeatures\(pooling='average'\) must be max or avg$"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(StyleTransferError, match=message):
        VGGFeatures(**{"backbone": "vgg16", "weights": None, **kwargs})


def test_weights_file_that_is_not_a_state_dict(tmp_path):
    (tmp_path / "bad.pth").write_text("not a checkpoint")
    with pytest.raises(StyleTransferError, match="bad.pth is not a PyTorch state_dict"):
        VGGFeatures(["relu1_1"], backbone="vgg16", weights=str(tmp_path / "bad.pth"))


def test_weights_that_cannot_be_downloaded_say_how_to_fix_it(tmp_path, monkeypatch):
    # An empty hub cache and a proxy that refuses connections: a real download failure, whatever the network.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for variable in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"]:
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    with pytest.raises(StyleTransferError) as error:
        VGGFeatures(["relu1_1"], backbone="vgg19_bn", weights="DEFAULT")
    message = str(error.value)
    assert message.startswith("VGGFeatures(weights='DEFAULT') cannot be downloaded: ") and "\n" not in message
    assert f"copy vgg19_bn-c79401a0.pth into {tmp_path / 'hub' / 'checkpoints'}" in message
    assert "give the path of a weights file instead" in message
    assert message.endswith("python -m lightning_style.offline_weights")


def test_offline_weights_in_one_command(tmp_path, monkeypatch, capsys, hed_weights):
    import shutil

    from lightning_style import offline_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    target = tmp_path / "hub" / "checkpoints" / "hed_vgg16_features.pth"
    assert offline_weights.default_path() == target
    target.parent.mkdir(parents=True)
    shutil.copy(hed_weights, target)  # converted once per machine by the fixture, through the same fetch
    offline_weights.main([])
    path, usage = capsys.readouterr().out.splitlines()
    assert path == str(target)
    assert usage == ("use it with: lightning-style fit --config configs/offline.yaml (or --model.backbone vgg16 "
                     "--model.weights HED)")
    named = VGGFeatures(["relu1_1"], backbone="vgg16", weights="HED")  # the name finds them in the hub cache
    from_path = VGGFeatures(["relu1_1"], backbone="vgg16", weights=path)
    image = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(named(image)["relu1_1"], from_path(image)["relu1_1"])
    with pytest.raises(StyleTransferError, match=r"^VGGFeatures\(weights='HED'\) are VGG16's convolutions, not "):
        VGGFeatures(["relu1_1"], backbone="vgg19_bn", weights="HED")
    target.unlink()
    with pytest.raises(StyleTransferError, match=r"are not in .*hed_vgg16_features.pth yet: python -m "):
        VGGFeatures(["relu1_1"], backbone="vgg16", weights="HED")
