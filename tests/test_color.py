import numpy as np
import pytest
import torch
from PIL import Image

from lightning_style.color import keep_content_colours, match_colours, to_yiq
from lightning_style.losses import gram_matrix

from helpers import fit, results

yiq = to_yiq


def test_luminance_from_the_result_colour_from_the_content():
    # Seeded, and in [0.4, 0.6]: the recombined RGB stays inside [0, 1], so clamping never changes it.
    generator = torch.Generator().manual_seed(0)
    result, content = (torch.rand(2, 3, 8, 8, generator=generator) * 0.2 + 0.4).unbind()
    combined = yiq(keep_content_colours(result, content))
    torch.testing.assert_close(combined[0], yiq(result)[0], atol=1e-3, rtol=0)
    torch.testing.assert_close(combined[1:], yiq(content)[1:], atol=1e-3, rtol=0)


def test_matched_style_has_the_content_colour_statistics():
    generator = torch.Generator().manual_seed(0)  # matched pixels stay inside [0, 1]: no clamping
    style = torch.rand(3, 30, 20, generator=generator) * torch.tensor([0.9, 0.2, 0.4]).view(3, 1, 1)
    content = torch.rand(3, 16, 16, generator=generator) * 0.5 + torch.tensor([0.3, 0.2, 0.1]).view(3, 1, 1)
    matched = match_colours(style, content)
    flat = lambda image: image.reshape(3, -1)
    torch.testing.assert_close(flat(matched).mean(1), flat(content).mean(1), atol=1e-3, rtol=0)
    torch.testing.assert_close(torch.cov(flat(matched), correction=0), torch.cov(flat(content), correction=0),
                               atol=1e-3, rtol=0)
    assert matched.shape == style.shape


@pytest.mark.parametrize("mode", ["luminance", "histogram"])
def test_preserve_color_in_a_run(tmp_path, images, mode):
    """Two contents in one batch: each result (as published and as written) takes its own content's colours."""
    model, trainer = fit(tmp_path, [images["content"], images["content2"]], images["style"], steps=2,
                         preserve_color=mode)
    pairs = results(trainer)
    assert model.run.names == ("photo__paint", "photo2__paint")  # one batch
    for row, name in enumerate(model.run.names):
        pair = pairs[name]
        if mode == "luminance":
            torch.testing.assert_close(yiq(pair.image)[1:], yiq(pair.content)[1:], atol=0.02, rtol=0)
            assert not torch.equal(pair.image, model.images[row].detach())
            pixels = np.array(Image.open(tmp_path / "images" / f"{name}.png"))
            written = torch.from_numpy(pixels).permute(2, 0, 1) / 255
            torch.testing.assert_close(written, pair.image, atol=1 / 255, rtol=0)
        else:
            features = model.features(match_colours(pair.styles[0], pair.content)[None])
            torch.testing.assert_close(model.run.objective.style_target("relu1_1")["gram"][row, 0],
                                       gram_matrix(features["relu1_1"])[0])
