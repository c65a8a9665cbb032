"""Procedural scenes: determinism, masks vs attributes, captions vs attributes, shift knobs, the HF
road, clips, landslides, the classification view and the gallery command."""

import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import ndimage

from shared.cli import main
from shared.data import scenes as sc
from shared.data.scenes import (
    POSITION_PHRASES,
    POSITIONS,
    SCENE_COLOURS,
    SCENE_SHAPES,
    SIZES,
    ClassificationView,
    SceneConfig,
    SceneShift,
    make_clips,
    make_scene_classification,
    make_scenes,
    scenes_dataset,
)
from shared.data.splits import small_image_splits

BASE = SceneConfig(image_size=32, min_objects=2, max_objects=5)
COLOURS = tuple(SCENE_COLOURS)


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(48, replace(BASE, captions_per_image=4), seed=3, amodal=True)


def same_objects(a, b) -> bool:
    return all(torch.equal(a.objects[k], b.objects[k]) for k in a.objects)


def test_deterministic_by_seed():
    a, b = make_scenes(10, BASE, seed=0), make_scenes(10, BASE, seed=0)
    assert torch.equal(a.images, b.images) and torch.equal(a.instance, b.instance)
    assert same_objects(a, b) and a.captions == b.captions
    assert not torch.equal(a.images, make_scenes(10, BASE, seed=1).images)
    assert a.images.dtype == torch.uint8 and a.images.shape == (10, 3, 32, 32)
    assert a.semantic.shape == a.instance.shape == (10, 32, 32)
    c1, c2 = make_clips(3, 4, BASE, seed=0), make_clips(3, 4, BASE, seed=0)
    assert torch.equal(c1.frames, c2.frames) and torch.equal(c1.centres, c2.centres)
    v1, v2 = make_scene_classification(3, 32, seed=0), make_scene_classification(3, 32, seed=0)
    assert torch.equal(v1.images, v2.images) and torch.equal(v1.labels, v2.labels)


def test_masks_agree_with_attributes_and_occlusion_order(scenes):
    obj = {k: v.numpy() for k, v in scenes.objects.items()}
    inst, sem, amodal = scenes.instance.numpy(), scenes.semantic.numpy(), scenes.amodal.numpy()
    assert ((inst == 0) == (sem == 0)).all()
    for i in range(len(scenes)):
        present = np.flatnonzero(obj["present"][i])
        assert len(present) == obj["present"][i].sum() >= 2
        assert sorted(obj["depth"][i, present]) == list(present)  # one id per object: ids are unique
        assert set(np.unique(inst[i])) - {0} <= set(present + 1)
        covered = np.zeros(inst.shape[1:], dtype=bool)
        for j in present[::-1]:  # front to back
            visible = amodal[i, j] & ~covered
            assert np.array_equal(inst[i] == j + 1, visible), "visible pixels contradict the occlusion order"
            assert (sem[i][visible] == obj["shape"][i, j] + 1).all(), "an object's pixels must carry its class"
            assert obj["visible"][i, j] == visible.sum() and obj["area"][i, j] == amodal[i, j].sum()
            ys, xs = np.nonzero(visible)
            if len(ys):
                assert list(obj["box"][i, j]) == [xs.min(), ys.min(), xs.max(), ys.max()]
            x, y = obj["centre"][i, j]
            assert obj["position"][i, j] == min(int(y * 3 // 32), 2) * 3 + min(int(x * 3 // 32), 2)
            covered |= amodal[i, j]
        assert not amodal[i, obj["present"][i] == 0].any()
        counts = np.bincount(obj["shape"][i, present], minlength=len(SCENE_SHAPES))
        assert np.array_equal(scenes.counts[i].numpy(), counts)
    assert (obj["visible"] < obj["area"]).any(), "some object should be occluded in 48 crowded scenes"


NOUN = rf"(?:a|an) (?:({'|'.join(SIZES)}) )?(?:({'|'.join(COLOURS)}) )?({'|'.join(SCENE_SHAPES)})"
RELATION = re.compile(rf"^{NOUN} (left of|right of|above|below|in front of|behind) {NOUN}$")
POSITION = re.compile(rf"^{NOUN} ({'|'.join(POSITION_PHRASES.values())})$")
WORDS = {w: i for i, w in enumerate(sc.NUMBER_WORDS)}


def matching(obj, i, size, colour, shape):
    """Slots of image i whose attributes fit a parsed noun phrase (and that captions may name)."""
    ok = obj["present"][i] & (obj["visible"][i] >= sc.CAPTION_MIN_VISIBLE * obj["area"][i])
    ok &= obj["shape"][i] == SCENE_SHAPES.index(shape)
    if size:
        ok &= obj["size"][i] == SIZES.index(size)
    if colour:
        ok &= obj["colour"][i] == COLOURS.index(colour)
    return np.flatnonzero(ok)


def relation_holds(obj, amodal, i, a, b, rel):
    (xa, ya), (xb, yb) = obj["centre"][i, a], obj["centre"][i, b]
    dx, dy, margin = xb - xa, yb - ya, sc.RELATION_MARGIN * 32
    overlap = (amodal[i, a] & amodal[i, b]).any()
    return {
        "left of": dx >= margin and abs(dx) >= abs(dy),
        "right of": -dx >= margin and abs(dx) >= abs(dy),
        "above": dy >= margin and abs(dy) > abs(dx),
        "below": -dy >= margin and abs(dy) > abs(dx),
        "in front of": overlap and a > b,
        "behind": overlap and a < b,
    }[rel]


def test_captions_agree_with_attributes(scenes):
    obj = {k: v.numpy() for k, v in scenes.objects.items()}
    amodal = scenes.amodal.numpy()
    seen = set()
    for i, captions in enumerate(scenes.captions):
        assert len(captions) == 4 and int(scenes.caption_source[i]) == i
        for caption in captions:
            if m := RELATION.match(caption):
                seen.add("relation")
                sa, ca, ha, rel, sb, cb, hb = m.groups()
                pairs = [
                    (a, b)
                    for a in matching(obj, i, sa, ca, ha)
                    for b in matching(obj, i, sb, cb, hb)
                    if a != b and relation_holds(obj, amodal, i, a, b, rel)
                ]
                assert pairs, f"image {i}: no objects fit {caption!r}"
            elif m := POSITION.match(caption):
                seen.add("position")
                size, colour, shape, phrase = m.groups()
                cell = POSITIONS.index(next(p for p, text in POSITION_PHRASES.items() if text == phrase))
                assert any(obj["position"][i, j] == cell for j in matching(obj, i, size, colour, shape)), caption
            elif caption.startswith("a scene with "):
                seen.add("inventory")
                counts = np.zeros(len(SCENE_SHAPES), dtype=int)
                for item in re.split(r", | and ", caption.removeprefix("a scene with ")):
                    number, noun = item.split(" ")
                    shape = noun if noun in SCENE_SHAPES else next(s for s, p in sc.PLURALS.items() if p == noun)
                    counts[SCENE_SHAPES.index(shape)] = 1 if number in ("a", "an") else WORDS[number]
                assert np.array_equal(counts, scenes.counts[i].numpy()), caption
            else:
                seen.add("count")
                m = re.match(r"^(\w+) objects? on a (plain|noisy|patterned) background$", caption)
                assert m, f"caption {caption!r} fits no template"
                assert WORDS[m.group(1)] == obj["present"][i].sum()
                assert sc.BACKGROUND_WORDS[sc.BACKGROUNDS[int(scenes.background[i])]] == m.group(2)
        assert len(set(captions)) >= 2
    assert seen == {"relation", "position", "inventory", "count"}


def test_caption_noise_swaps_whole_caption_sets():
    clean = make_scenes(64, BASE, seed=5)
    noisy = make_scenes(64, replace(BASE, caption_noise=0.3), seed=5)
    assert torch.equal(clean.images, noisy.images) and same_objects(clean, noisy)
    source = noisy.caption_source.numpy()
    swapped = np.flatnonzero(source != np.arange(64))
    assert 8 <= len(swapped) <= 32 and sorted(source[swapped]) == list(swapped)  # a permutation of the noisy ones
    for i in range(64):
        assert noisy.captions[i] == clean.captions[source[i]]


@pytest.mark.parametrize(
    "shift",
    [
        SceneShift(palette="pastel"),
        SceneShift(texture=0.6),
        SceneShift(noise=0.1),
        SceneShift(blur=1.0),
        SceneShift(night=0.7),
    ],
    ids=["palette", "texture", "noise", "blur", "night"],
)
def test_shift_knobs_change_only_pixels(shift):
    base = make_scenes(16, BASE, seed=2)
    shifted = make_scenes(16, replace(BASE, shift=shift), seed=2)
    assert torch.equal(base.semantic, shifted.semantic) and torch.equal(base.instance, shifted.instance)
    assert same_objects(base, shifted) and base.captions == shifted.captions
    assert torch.equal(base.background, shifted.background)
    changed = base.images != shifted.images
    assert changed.any()
    if shift.palette != "standard":  # the palette renders objects only: the background stays
        assert not changed.permute(1, 0, 2, 3)[:, base.instance == 0].any()
    if shift.night:
        assert shifted.images.float().mean() < 0.7 * base.images.float().mean()


def test_knobs_draw_from_their_own_streams():
    """Adding noise on top of a texture leaves the texture as it was: the difference is the noise alone."""
    tex = make_scenes(8, replace(BASE, shift=SceneShift(texture=0.5)), seed=4).images.float()
    both = make_scenes(8, replace(BASE, shift=SceneShift(texture=0.5, noise=0.02)), seed=4).images.float()
    assert 0 < (both - tex).abs().mean() < 6  # ~ noise std 0.02 * 255 ≈ 5 grey levels, minus clipping


def test_landslide_and_height():
    cfg = replace(BASE, image_size=48, min_objects=0, max_objects=0, height=True)
    plain, slide = make_scenes(6, cfg, seed=1), make_scenes(6, replace(cfg, landslide=True), seed=1)
    assert plain.landslide is None and slide.landslide.shape == (6, 48, 48) and slide.height.shape == (6, 1, 48, 48)
    mask = slide.landslide.numpy()
    assert (mask.mean(axis=(1, 2)) > 0.02).all()
    delta = (slide.height - plain.height)[:, 0].numpy()
    far = ~ndimage.binary_dilation(mask, structure=np.ones((1, 7, 7), dtype=bool))
    assert np.abs(delta[far]).max() < 1e-2, "the landslide changes the height only around its blob"
    assert (delta[mask] < -0.05).any() and (np.abs(delta[mask]).mean() > 0.02), "no scarp in the elevation"
    rgb_change = (slide.images.float() - plain.images.float()).abs().mean(1).numpy()
    assert rgb_change[mask].mean() > 2 * rgb_change[~mask].mean()  # a cue, inside the blob
    assert rgb_change[mask].mean() < 20  # a weak one
    assert all("landslide" in c for caps in slide.captions for c in caps)
    objects = make_scenes(6, replace(BASE, height=True), seed=1)
    assert torch.equal(objects.images, make_scenes(6, BASE, seed=1).images)  # height adds a channel, nothing else


def test_clips_move_and_bounce():
    clips = make_clips(6, 10, BASE, seed=0, speed=(0.05, 0.1))
    assert clips.frames.shape == (6, 10, 3, 32, 32) and clips.instance.shape == (6, 10, 32, 32)
    c, v, r = clips.centres.numpy(), clips.velocity.numpy(), clips.objects["radius"].numpy()
    present = clips.objects["present"].numpy()
    lo, hi = r[:, None, :] - 1e-4, 32 - r[:, None, :] + 1e-4
    assert ((c[..., 0] >= lo) & (c[..., 0] <= hi) | ~present[:, None]).all()
    step = np.abs(np.diff(c, axis=1))
    speed = np.abs(v)[:, None]
    assert (np.abs(step - speed) < 1e-3)[present[:, None].repeat(9, 1)].mean() > 0.7  # mostly straight
    assert (np.abs(step - speed) > 1e-3).any(), "some object should bounce in 10 frames"
    for i in range(6):
        ids = set(np.unique(clips.instance[i].numpy())) - {0}
        assert ids <= set(np.flatnonzero(present[i]) + 1)
        shapes = clips.objects["shape"][i].numpy()
        for j in np.flatnonzero(present[i]):
            assert (clips.semantic[i][clips.instance[i] == j + 1] == shapes[j] + 1).all()
    assert not torch.equal(clips.frames[:, 0], clips.frames[:, -1])


def test_hf_dataset_round_trips_the_arrays(tmp_path, monkeypatch):
    cfg = replace(BASE, height=True, landslide=True, caption_noise=0.2)
    arrays = make_scenes(7, cfg, seed=2)
    ds = scenes_dataset(7, cfg, seed=2, cache_dir=tmp_path)
    objects = ds.features["objects"]
    objects = objects.feature if hasattr(objects, "feature") else objects[0]  # datasets 4+ / 3
    assert len(ds) == 7 and objects["shape"].names == list(SCENE_SHAPES)
    for i, row in enumerate(ds):
        assert np.array_equal(np.asarray(row["image"]).transpose(2, 0, 1), arrays.images[i].numpy())
        assert np.array_equal(np.asarray(row["semantic"]), arrays.semantic[i].numpy())
        assert np.array_equal(np.asarray(row["instance"]), arrays.instance[i].numpy())
        assert np.array_equal(np.asarray(row["landslide"]) > 0, arrays.landslide[i].numpy())
        assert np.allclose(np.asarray(row["height"]), arrays.height[i, 0].numpy())
        assert row["captions"] == arrays.captions[i] and row["caption_source"] == arrays.caption_source[i]
        assert row["counts"] == arrays.counts[i].tolist() and row["background"] == arrays.background[i]
        expected = arrays.object_list(i)
        assert [o["shape"] for o in row["objects"]] == [SCENE_SHAPES.index(o["shape"]) for o in expected]
        assert [o["box"] for o in row["objects"]] == [o["box"] for o in expected]
        assert [o["visible"] for o in row["objects"]] == [o["visible"] for o in expected]
    saved = list((tmp_path / "scenes").iterdir())
    assert [p.name for p in saved] == [f"hf-{sc.config_key(cfg, n=7, seed=2)}"]  # no temp folders left

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached data set should have been loaded")

    monkeypatch.setattr("datasets.Dataset.from_generator", no_rebuild)
    assert scenes_dataset(7, cfg, seed=2, cache_dir=tmp_path)[3]["captions"] == arrays.captions[3]


def test_tensor_cache(tmp_path):
    first = make_scenes(5, BASE, seed=9, cache=tmp_path)
    again = make_scenes(5, BASE, seed=9, cache=tmp_path)
    assert len(list((tmp_path / "scenes").glob("*.pt"))) == 1
    assert torch.equal(first.images, again.images) and same_objects(first, again) and first.captions == again.captions


def test_classification_view():
    data, masks = make_scene_classification(6, 32, seed=0, return_masks=True)
    assert data.images.shape == (48, 3, 32, 32) and data.classes == SCENE_SHAPES
    assert torch.bincount(data.labels).tolist() == [6] * 8
    for i in range(len(data)):  # the main object is in front and large: its class owns the most pixels
        counts = torch.bincount(masks[i].flatten().long(), minlength=9)[1:]
        assert counts.argmax() == data.labels[i]
    two = make_scene_classification(4, 32, seed=0, view=ClassificationView(shapes=("star", "ring"), clutter=(0, 0)))
    assert two.classes == ("star", "ring") and len(two) == 8
    cfg = {"data": "scenes", "train_per_class": 5, "test_per_class": 3, "image_size": 32}
    train, bank, test = small_image_splits(cfg)
    assert len(train) == 40 and bank is train and len(test) == 24
    assert not torch.equal(train.images[:24], test.images)
    small = small_image_splits({**cfg, "scene_view": {"clutter": [0, 0]}})[0]
    assert not torch.equal(small.images, train.images)


def test_bad_configs_fail_clearly():
    with pytest.raises(ValueError, match="image_size"):
        SceneConfig(image_size=200)
    with pytest.raises(ValueError, match="min_objects"):
        SceneConfig(min_objects=4, max_objects=2)
    with pytest.raises(ValueError, match="unknown shapes"):
        SceneConfig(shapes=("circle", "blob"))
    with pytest.raises(ValueError, match="palette"):
        SceneShift(palette="neon")
    with pytest.raises(ValueError, match="noise"):
        SceneShift(noise=-1)
    with pytest.raises(ValueError, match="positive integer"):
        make_scenes(0, BASE)
    with pytest.raises(ValueError, match="unknown scene config keys"):
        SceneConfig.from_dict({"colour": "red"})


def test_gallery_command_writes_a_png(tmp_path, capsys):
    out = tmp_path / "gallery.png"
    assert main(["data", "scenes", "--gallery", str(out), "--n", "2", "--image-size", "32", "--night", "0.3"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(out) in capsys.readouterr().out
    for view in ("classification", "clips", "landslide"):
        path = tmp_path / f"{view}.png"
        assert main(["data", "scenes", "--view", view, "--gallery", str(path), "--n", "2", "--image-size", "32"]) == 0
        assert path.read_bytes()[:4] == b"\x89PNG"
    assert main(["data", "scenes", "--n", "1", "--image-size", "32"]) == 0
    assert "caption:" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["gallery.png", "classification.png", "clips.png", "landslide.png"]
    )  # atomic writes leave no temp files


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--gallery", "{tmp}/out.jpg"], "must end in .png"),
        (["--gallery", "{tmp}/missing/out.png"], "does not exist"),
        (["--objects", "5-2"], "--objects"),
        (["--objects", "two"], "--objects"),
        (["--palette", "neon"], "palette"),
        (["--n", "0"], "--n"),
        (["--image-size", "8"], "image_size"),
        (["--noise", "2"], "noise"),
    ],
)
def test_gallery_command_fails_clearly(tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(["data", "scenes", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("repro: error:") and message in err
    assert not list(tmp_path.rglob("*.png"))


def test_gallery_command_rejects_unknown_data_set(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data", "nosuchset"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_help_lists_every_palette(capsys):
    with pytest.raises(SystemExit):
        main(["data", "--help"])
    out = capsys.readouterr().out
    assert all(p in out for p in sc.PALETTES) and "--gallery" in out
