"""Frozen torchvision VGG features, tapped at layers named as in the paper (``relu4_2``, ``conv1_1``, ``pool3``...)."""

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

import torch
import torchvision
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.utils.checkpoint import checkpoint
from torchvision.models.vgg import cfgs, make_layers
from torchvision.ops import FrozenBatchNorm2d

from .errors import OptionError, StyleTransferError

Backbone = Literal["vgg19_bn", "vgg19", "vgg16"]
Pooling = Literal["max", "avg"]
_CONFIGS = {"vgg19_bn": ("E", True), "vgg19": ("E", False), "vgg16": ("D", False)}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FEATURES = "VGGFeatures"
OFFLINE = "HED"  # the name of the offline VGG16's weights (lightning_style.offline_weights)


def build_features(backbone: str) -> nn.Sequential:
    """torchvision's ``features`` for ``backbone``, randomly initialised as torchvision does (no classifier)."""
    if backbone not in _CONFIGS:
        raise OptionError(FEATURES, "backbone", backbone, f"must be one of {', '.join(_CONFIGS)}")
    config, batch_norm = _CONFIGS[backbone]
    with torch.device("meta"):  # no memory and no default initialisation: torchvision's init below is the only one
        features = make_layers(cfgs[config], batch_norm=batch_norm)
    features = features.to_empty(device="cpu")
    for module in features.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()
    return features


def layer_names(features: nn.Sequential) -> list[str]:
    """Paper names of ``features``' layers in order: ``conv1_1, bn1_1, relu1_1, ..., pool1, conv2_1, ...``."""
    names, block, conv = [], 1, 0
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            conv += 1
            names.append(f"conv{block}_{conv}")
        elif isinstance(layer, nn.BatchNorm2d):
            names.append(f"bn{block}_{conv}")
        elif isinstance(layer, nn.ReLU):
            names.append(f"relu{block}_{conv}")
        else:
            names.append(f"pool{block}")
            block, conv = block + 1, 0
    return names


def load_state_dict(backbone: str, weights: str) -> dict[str, Tensor]:
    """The ``features`` state_dict (keys ``"0.weight"``...) named by ``weights``: a torchvision weights name
    (``DEFAULT``, ``IMAGENET1K_V1``), ``HED`` (the offline VGG16 of :mod:`lightning_style.offline_weights`, from the
    torch hub cache) or the path of a state_dict saved from a whole model or its ``features``."""
    if weights == OFFLINE:
        from .offline_weights import default_path  # here: python -m lightning_style.offline_weights runs it as __main__

        path = default_path()
        if backbone != "vgg16":
            raise OptionError(FEATURES, "weights", weights, f"are VGG16's convolutions, not {backbone}'s: use "
                                                            "backbone=vgg16")
        if not path.is_file():
            raise OptionError(FEATURES, "weights", weights, f"are not in {path} yet: python -m "
                                                            "lightning_style.offline_weights puts them there (once, "
                                                            "through pip)")
        weights = str(path)
    enum = torchvision.models.get_model_weights(backbone)
    if weights in enum.__members__:
        state = _download(enum[weights], weights)
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise OptionError(FEATURES, "weights", weights, f"is neither a file nor a weights name of {backbone} "
                                                            f"({', '.join(enum.__members__)})")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            problem = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise StyleTransferError(f"weights file {path} is not a PyTorch state_dict: {problem}") from None
        if not isinstance(state, Mapping):
            raise StyleTransferError(f"weights file {path} holds a {type(state).__name__}, not a state_dict")
    prefix = "features." if any(key.startswith("features.") for key in state) else ""
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def _download(weights: torchvision.models.WeightsEnum, name: str) -> dict[str, Tensor]:
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except OSError as error:  # urllib's URLError is an OSError
        folder = Path(torch.hub.get_dir()) / "checkpoints"
        raise OptionError(FEATURES, "weights", name, (
            f"cannot be downloaded: {weights} from {weights.url} ({getattr(error, 'reason', error)}); offline, copy "
            f"{Path(weights.url).name} into {folder} (or set TORCH_HOME), give the path of a weights file instead, "
            "or get a real pretrained VGG16 through pip: python -m lightning_style.offline_weights")) from error


def _check_fits(net: nn.Sequential, state: Mapping[str, Tensor], backbone: str, source: str) -> None:
    expected = net.state_dict()
    missing = [key for key in expected if key not in state]
    wrong = [key for key in expected if key in state and state[key].shape != expected[key].shape]
    if missing or wrong:
        fits = [other for other in _CONFIGS if other != backbone and _fits(other, state)]
        hint = f"; it fits {fits[0]}: use backbone={fits[0]}" if fits else ""
        detail = f"missing {missing[0]}" if missing else f"{wrong[0]} has shape {tuple(state[wrong[0]].shape)}"
        raise StyleTransferError(f"weights {source} do not fit {backbone} ({detail}){hint}")


def _fits(backbone: str, state: Mapping[str, Tensor]) -> bool:
    expected = build_features(backbone).state_dict()
    return all(key in state and state[key].shape == value.shape for key, value in expected.items())


class VGGFeatures(nn.Module):
    """Frozen VGG ``features`` that return the activations of the requested layers.

    Takes RGB images in ``[0, 1]`` (ImageNet normalisation happens inside). The network is cut after the deepest
    requested layer, its weights are non-persistent buffers (never trained, never in a checkpoint: they come from
    torchvision), and its BatchNorm layers are frozen affine maps of their ImageNet statistics, folded into the
    convolutions before them: nothing in it depends on train or eval mode, and nothing updates.

    Args:
        layers: names of the layers to return, e.g. ``["relu1_1", "relu4_2"]``.
        backbone: ``vgg19_bn``, ``vgg19`` or ``vgg16``.
        weights: ``DEFAULT`` (torchvision's ImageNet weights, downloaded to the torch hub cache on first use), another
            torchvision weights name, ``HED`` (a real pretrained VGG16 that works offline: see
            :mod:`lightning_style.offline_weights`), the path of a torchvision-format state_dict, or ``None`` for
            random weights.
        pooling: ``max`` (torchvision's) or ``avg`` (the paper's recommendation for smoother results).
        checkpointing: keep only each block's input (between pooling layers) and the tapped layers' outputs for
            the backward pass, and recompute the rest: less memory for one more forward pass.
        channels_last: run the convolutions on channels-last (NHWC) tensors.
    """

    def __init__(
        self,
        layers: Iterable[str],
        *,
        backbone: Backbone = "vgg19_bn",
        weights: str | None = "DEFAULT",
        pooling: Pooling = "max",
        checkpointing: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if pooling not in ("max", "avg"):
            raise OptionError(FEATURES, "pooling", pooling, "must be max or avg")
        net = build_features(backbone)
        names = layer_names(net)
        self.layers = list(dict.fromkeys(layers))
        unknown = [layer for layer in self.layers if layer not in names]
        if unknown or not self.layers:
            problem = f"names an unknown {backbone} layer, {unknown[0]}" if unknown else "is empty"
            known = ", ".join(name for name in names if name.startswith("relu"))
            raise OptionError(FEATURES, "layers", list(layers), f"{problem}; known layers: {known} (and conv*, bn*, "
                                                                "pool*)")
        depth = max(names.index(layer) for layer in self.layers) + 1
        net, self.names = net[:depth], names[:depth]
        if weights is not None:
            state = load_state_dict(backbone, weights)
            _check_fits(net, state, backbone, weights)
            net.load_state_dict({key: state[key] for key in net.state_dict()})
        for i, layer in enumerate(net):
            if isinstance(layer, nn.ReLU) and self.names[i - 1] in self.layers:
                net[i] = nn.ReLU(inplace=False)  # an in-place ReLU would overwrite the tapped conv/bn output
            elif isinstance(layer, nn.MaxPool2d) and pooling == "avg":
                net[i] = nn.AvgPool2d(kernel_size=2, stride=2)
            elif isinstance(layer, nn.BatchNorm2d) and self.names[i - 1] not in self.layers:
                # Frozen BatchNorm is an affine map: folded into the conv before it, it costs no time or memory.
                fused = fuse_conv_bn_eval(net[i - 1].eval(), layer.eval())
                net[i - 1], net[i] = fused.train(), nn.Identity()  # the copy comes in eval mode, which Lightning
                # warns of at the start of a fit; a conv computes the same in either mode
            elif isinstance(layer, nn.BatchNorm2d):  # the conv's own output is tapped: keep the map separate
                net[i] = FrozenBatchNorm2d(layer.num_features, layer.eps)
                net[i].load_state_dict({k: v for k, v in layer.state_dict().items() if k != "num_batches_tracked"})
        for module in net.modules():
            for name, param in list(module.named_parameters(recurse=False)):
                delattr(module, name)
                module.register_buffer(name, param.detach(), persistent=False)
            for name, buffer in list(module.named_buffers(recurse=False)):
                module.register_buffer(name, buffer, persistent=False)
        self.net = net.to(memory_format=torch.channels_last) if channels_last else net
        self.checkpointing, self.channels_last = checkpointing, channels_last
        pools = [i + 1 for i, name in enumerate(self.names) if name.startswith("pool")]
        self.blocks = list(zip([0, *pools], [*pools, depth], strict=True))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def min_size(self) -> int:
        """Smallest image side, in pixels, that still gives every requested layer at least one position."""
        return 2 ** sum(name.startswith("pool") for name in self.names[:-1])

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """``(B, 3, H, W)`` images in ``[0, 1]`` -> ``{layer name: (B, C, h, w) activations}``."""
        x = (images - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = {}
        for start, stop in self.blocks:
            if self.checkpointing and torch.is_grad_enabled() and x.requires_grad:
                x, taps = checkpoint(self._block, x, start, stop, use_reentrant=False)
            else:
                x, taps = self._block(x, start, stop)
            out.update(taps)
        return out

    def _block(self, x: Tensor, start: int, stop: int) -> tuple[Tensor, dict[str, Tensor]]:
        taps = {}
        for name, layer in zip(self.names[start:stop], self.net[start:stop], strict=True):
            x = layer(x)
            if name in self.layers:
                taps[name] = x
        return x, taps
