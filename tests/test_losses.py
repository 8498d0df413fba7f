
import pytest
import torch

from lightning_style.losses import content_loss, gram_matrix, style_loss, total_variation


def test_gram_matrix_by_hand():
    # channel 0 = [1, 2], channel 1 = [3, 4] over H*W = 2 positions
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 2
    torch.testing.assert_close(gram_matrix(features), expected)


def test_content_loss_by_hand():
    features = torch.tensor([[[[1.0, 1.0]]], [[[0.0, 0.0]]]])
    target = torch.tensor([[[[1.0, 3.0]]], [[[1.0, 2.0]]]])
    # pair 0: mean((0, 4)) / mean((1, 9)) = 0.4; pair 1: mean((1, 4)) / mean((1, 4)) = 1
    torch.testing.assert_close(content_loss(features, target), torch.tensor([0.4, 1.0]))


def test_style_loss_by_hand():
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    target = torch.tensor([[[2.0, 0.0], [0.0, 2.0]]])
    # Gram [[2.5, 5.5], [5.5, 12.5]]; squared errors (0.25, 30.25, 30.25, 110.25) mean 42.75; target's mean square 2
    torch.testing.assert_close(style_loss(features, target), torch.tensor([21.375]))


def test_masked_gram_and_style_loss_by_hand():
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # positions (1, 3) and (2, 4)
    masks = torch.tensor([[[[1.0, 0.5]], [[0.0, 0.0]]]])  # region 0: all of position 0, half of 1; region 1: empty
    # region 0: (1 * [[1, 3], [3, 9]] + 0.25 * [[4, 8], [8, 16]]) / 1.25
    grams = gram_matrix(features, masks)
    torch.testing.assert_close(grams[0, 0], torch.tensor([[1.6, 4.0], [4.0, 10.4]]))
    # region 0 covers 0.75 of the image; the empty region adds nothing
    target = torch.stack([grams[:, 0] * 2, torch.ones(1, 2, 2)], dim=1)
    expected = 0.75 * ((grams[0, 0] - 2 * grams[0, 0]) ** 2).mean() / ((2 * grams[0, 0]) ** 2).mean()
    torch.testing.assert_close(style_loss(features, target, masks), expected[None])


def test_a_mask_of_ones_gives_the_unmasked_loss():
    features, target = torch.rand(2, 4, 6, 5), torch.rand(2, 4, 4)
    ones = torch.ones(2, 1, 24, 20)  # any size: pooled to the feature map's
    torch.testing.assert_close(gram_matrix(features, ones)[:, 0], gram_matrix(features))
    torch.testing.assert_close(style_loss(features, target[:, None], ones), style_loss(features, target))


def test_total_variation_by_hand():
    images = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]], [[[0.0, 0.0], [2.0, 2.0]]]])
    # pair 0: vertical 0, horizontal 1 -> 0.5; pair 1: vertical 4, horizontal 0 -> 2
    torch.testing.assert_close(total_variation(images), torch.tensor([0.5, 2.0]))


@pytest.mark.parametrize("loss", ["content", "style", "tv"])
def test_pairs_never_influence_each_other(loss):
    features = torch.rand(3, 4, 5, 5, requires_grad=True)
    target = torch.rand(3, 4, 5, 5)
    fn = {
        "content": lambda f, t: content_loss(f, t),
        "style": lambda f, t: style_loss(f, gram_matrix(t)),
        "tv": lambda f, t: total_variation(f),
    }[loss]
    values = fn(features, target)
    assert values.shape == (3,)
    (grad,) = torch.autograd.grad(values[1], features)
    assert grad[1].abs().sum() > 0 and grad[0].abs().sum() == 0 and grad[2].abs().sum() == 0
    torch.testing.assert_close(fn(features[1:2].detach(), target[1:2]), values[1:2].detach())


def test_gram_in_float32_does_not_overflow_under_autocast():
    features = torch.full((1, 2, 8, 8), 300.0, dtype=torch.float16)  # sum of squares 5.8e6 > fp16 max 65504
    assert (features.float().flatten(2) @ features.float().flatten(2).transpose(1, 2)).max() > 65504
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gram = gram_matrix(features)
        loss = style_loss(features, gram)
    assert gram.dtype == torch.float32 and torch.isfinite(gram).all()
    torch.testing.assert_close(gram, torch.full((1, 2, 2), 90000.0))
    assert loss.dtype == torch.float32 and loss.item() == 0.0
