"""The CIFAR-10 loader on small files the tests write: the official batches and a class-folder JPEG archive."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from unitary_lowrank.tasks import cifar10
from unitary_lowrank.tasks.cifar10 import CLASSES, load_cifar10


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)


def _write_batches(folder, train_parts, test):
    folder.mkdir(parents=True)
    for i, (x, y) in enumerate(train_parts, start=1):
        payload = {b"data": x.transpose(0, 3, 1, 2).reshape(len(x), -1), b"labels": y.tolist()}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(payload))
    x, y = test
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": x.transpose(0, 3, 1, 2).reshape(len(x), -1),
                                                      b"labels": y.tolist()}))  # fmt: skip


def test_official_batches_directory_and_its_parent_and_tarball(tmp_path):
    parts = [_images(5, 1), _images(4, 2)]
    test = _images(3, 3)
    root = tmp_path / "cifar-10-batches-py"
    _write_batches(root, parts, test)
    data = load_cifar10(root, cache_dir="")
    assert np.array_equal(data.x_train, np.concatenate([parts[0][0], parts[1][0]]))  # channel order undone
    assert np.array_equal(data.y_train, np.concatenate([parts[0][1], parts[1][1]])) and data.y_train.dtype == np.int64
    assert np.array_equal(data.x_test, test[0]) and np.array_equal(data.y_test, test[1])
    assert np.array_equal(load_cifar10(tmp_path, cache_dir="").x_train, data.x_train)  # the folder above it
    tarball = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(root, arcname="cifar-10-batches-py")
    assert np.array_equal(load_cifar10(tarball, cache_dir="").x_test, test[0])


def _jpeg(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95, subsampling=0)
    return buffer.getvalue()


def _smooth(label: int, k: int) -> np.ndarray:
    """An image JPEG keeps almost exactly: one colour per 8×8 block."""
    blocks = (np.arange(16).reshape(4, 4) * 13 + 20 * label + 7 * k) % 200 + 20
    channel = np.kron(blocks, np.ones((8, 8)))
    return np.stack([channel, 255 - channel, (channel + 60) % 256], axis=-1).astype(np.uint8)


def test_class_folder_jpeg_archive_packed_and_extracted(tmp_path):
    pytest.importorskip("PIL")
    tarball = tmp_path / "cifar10-jpeg.tar.gz"
    expected = {"train": [], "test": []}
    with tarfile.open(tarball, "w:gz") as archive:
        for split, count in (("train", 2), ("test", 1)):
            for label in (7, 0, 3):
                for k in range(count):
                    pixels = _smooth(label, k)
                    payload = _jpeg(pixels)
                    info = tarfile.TarInfo(f"cifar10-jpeg/{split}/{CLASSES[label]}/{k:04d}.jpg")
                    info.size = len(payload)
                    archive.addfile(info, io.BytesIO(payload))
                    expected[split].append((label, k, pixels))
        notes = b"not an image"
        info = tarfile.TarInfo("cifar10-jpeg/README.txt")
        info.size = len(notes)
        archive.addfile(info, io.BytesIO(notes))
    data = load_cifar10(tarball, cache_dir="")
    assert data.x_train.shape == (6, 32, 32, 3) and data.x_test.shape == (3, 32, 32, 3)
    assert data.y_train.tolist() == [0, 0, 3, 3, 7, 7] and data.y_test.tolist() == [0, 3, 7]  # by class, then name
    ordered = sorted(expected["train"], key=lambda e: (e[0], e[1]))
    sources = np.stack([pixels for _, _, pixels in ordered]).astype(int)
    for i, decoded in enumerate(data.x_train.astype(int)):
        distances = np.abs(sources - decoded).mean(axis=(1, 2, 3))
        assert distances.argmin() == i and distances[i] <= 2  # JPEG's rounding of this image, not another one
    with tarfile.open(tarball) as archive:
        archive.extractall(tmp_path / "extracted", filter="data")
    again = load_cifar10(tmp_path / "extracted", cache_dir="")
    assert np.array_equal(again.x_train, data.x_train) and np.array_equal(again.y_test, data.y_test)


def test_decoded_arrays_are_cached(tmp_path, monkeypatch):
    root = tmp_path / "cifar-10-batches-py"
    _write_batches(root, [_images(4, 1)], _images(2, 2))
    first = load_cifar10(root, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("cifar10-*.npz"))) == 1

    def no_reading(source):
        raise AssertionError("read the source again instead of the cache")

    monkeypatch.setattr(cifar10, "_read", no_reading)
    second = load_cifar10(root, cache_dir=tmp_path / "cache")
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_the_default_cache_follows_xdg_and_tests_keep_it_temporary(tmp_path):
    """The suite never writes into the user's real ~/.cache: conftest points XDG_CACHE_HOME into pytest's folder."""
    import os

    cache_home = Path(os.environ["XDG_CACHE_HOME"])
    assert cache_home.parent == tmp_path.parent  # pytest's base temporary folder
    root = tmp_path / "cifar-10-batches-py"
    _write_batches(root, [_images(4, 1)], _images(2, 2))
    load_cifar10(root)
    assert len(list((cache_home / "unitary_lowrank").glob("cifar10-*.npz"))) >= 1


def test_bad_sources_say_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_cifar10(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither the official batches"):
        load_cifar10(tmp_path / "empty", cache_dir="")


def test_train_cifar10_command_certifies_and_writes_a_summary(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("tqdm")
    from unitary_lowrank.cli import main

    root = tmp_path / "cifar-10-batches-py"
    _write_batches(root, [_images(40, 1)], _images(20, 2))
    argv = ["train", "cifar10", "--data", str(root), "--width", "4", "--depth", "5", "--batch", "8", "--epochs", "1",
            "--eval-every", "2", "--out", str(tmp_path / "runs"), "--no-progress", "--minutes", "10"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "certified" in out and f"wrote {tmp_path / 'runs' / 'cifar10-projunn-transport-k1-w4-d5.csv'}" in out
    summary = json.loads((tmp_path / "runs" / "cifar10-projunn-transport-k1-w4-d5.json").read_text())
    assert summary["iterations"] == 5 and summary["config"]["task"] == "cifar10"
    assert set(summary["certified_accuracy"]) == {"36/255", "72/255", "108/255"}
    assert summary["lipschitz_bound"] <= 1 + 1e-4 and summary["lipschitz_estimate"] <= summary["lipschitz_bound"]
    assert summary["seconds_per_iteration"] > 0 and (Path.cwd() / summary["config"]["data"]).resolve() == root
    assert len(summary["data_sha256"]) == 16
    assert (tmp_path / "runs" / summary["log"]).exists() and (tmp_path / "runs" / summary["plot"]).exists()
    # the conditions a study needs to judge its timings
    assert 0 < summary["cpu_seconds"] and 0 < summary["wall_seconds"]
    assert summary["iterations_per_cpu_minute"] == pytest.approx(60 * 5 / summary["cpu_seconds"])
    assert summary["threads"] >= 1 and summary["cpu_count"] >= 1
    assert set(summary["load_average"]) == {"start", "end"} and summary["library_bound"] is None


def test_torchlip_lipconvnet_trains_and_reports_both_bounds(tmp_path):
    """The external library's layer in the same harness: certified with the exact bound, its own bound beside it."""
    pytest.importorskip("tqdm")
    pytest.importorskip("deel.torchlip")
    from unitary_lowrank.cli.train_cifar import CifarConfig, run

    root = tmp_path / "cifar-10-batches-py"
    _write_batches(root, [_images(40, 1)], _images(20, 2))
    config = CifarConfig(data=str(root), conv="torchlip", width=4, depth=5, batch=8, epochs=1, out=str(tmp_path))
    summary = run(config, progress=False)
    assert summary["name"] == "cifar10-torchlip-w4-d5" and summary["iterations"] == 5
    assert summary["library_bound"] == 1.0
    assert summary["lipschitz_estimate"] <= summary["lipschitz_bound"] <= 1 + 1e-5
    assert set(summary["certified_accuracy"]) == {"36/255", "72/255", "108/255"}


def test_torchlip_without_the_library_is_a_settings_error(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from unitary_lowrank.cli.train_cifar import CifarConfig, run
    from unitary_lowrank.tasks import train_cifar10

    monkeypatch.setattr(train_cifar10, "_has_torchlip", lambda: False)
    with pytest.raises(ValueError, match=r"pip install \"unitary-lowrank\[torchlip\]\""):
        run(CifarConfig(data=str(tmp_path), conv="torchlip"), progress=False)
    with pytest.raises(ValueError, match="ResNet9 takes --conv projunn, cayley or plain"):
        run(CifarConfig(data=str(tmp_path), conv="torchlip", model="resnet9"), progress=False)


def test_train_cifar10_refuses_fewer_images_than_a_batch(tmp_path):
    """Otherwise an epoch would hold no iteration and the run would never end."""
    pytest.importorskip("torch")
    from unitary_lowrank.cli.train_cifar import CifarConfig, run

    root = tmp_path / "cifar-10-batches-py"
    _write_batches(root, [_images(6, 1)], _images(2, 2))
    with pytest.raises(ValueError, match="fewer than one batch"):
        run(CifarConfig(data=str(root), batch=8, out=str(tmp_path)), progress=False)


def test_resnet9_presets_train_and_write_a_summary_without_certificate(tmp_path, capsys):
    """``--preset quick`` is the paper's ResNet9, shortened; no certificate (BatchNorm, residual sums)."""
    pytest.importorskip("torch")
    pytest.importorskip("tqdm")
    from unitary_lowrank.cli import main

    root = tmp_path / "cifar-10-batches-py"
    _write_batches(root, [_images(40, 1)], _images(20, 2))
    for conv in ("projunn", "cayley", "plain"):
        argv = ["train", "cifar10", "--preset", "quick", "--data", str(root), "--width", "2", "--batch", "16",
                "--conv", conv, "--translate", "2", "--tta", "--out", str(tmp_path / "runs"),
                "--no-progress"]  # fmt: skip
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "clean test accuracy" in out and "certified" not in out
    summary = json.loads((tmp_path / "runs" / "cifar10-resnet9-projunn-transport-k1-w2.json").read_text())
    assert summary["config"]["model"] == "ResNet9" and summary["config"]["tta"] is True
    assert summary["iterations"] == 2 and summary["certified_accuracy"] is None and summary["lipschitz_bound"] is None
    assert summary["unitarity_error"] < 1e-5  # the orthogonal convolutions stayed orthogonal
    assert json.loads((tmp_path / "runs" / "cifar10-resnet9-plain-w2.json").read_text())["unitarity_error"] is None


def test_paper_preset_is_the_authors_settings_and_options_override_it(capsys):
    pytest.importorskip("torch")
    from unitary_lowrank.cli import main

    assert main(["train", "cifar10", "--preset", "paper", "--print-config"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["model"] == "resnet9" and config["width"] == 64 and config["epochs"] == 100
    settings = (config["optimizer"], config["lr"], config["momentum"], config["weight_decay"])
    assert settings == ("rmsprop", 0.5, 0.9, 5e-5)
    assert main(["train", "cifar10", "--preset", "paper", "--lr", "0.1", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["lr"] == 0.1
    with pytest.raises(SystemExit):  # conv has no presets: argparse refuses the option
        main(["train", "conv", "--preset", "paper", "--print-config"])
    assert "unrecognized arguments: --preset paper" in capsys.readouterr().err


def test_schedule_warms_up_then_steps_down_by_thirds():
    from unitary_lowrank.cli.train_cifar import CifarConfig, schedule

    factor = schedule(CifarConfig(epochs=9, warmup_epochs=1), per_epoch=10)  # 90 iterations, thirds of 30
    assert factor(0) == pytest.approx(0.001) and factor(5) == pytest.approx(0.001 + 0.999 / 2)
    assert [factor(i) for i in (10, 39, 40, 70, 89)] == pytest.approx([1, 1, 0.2, 0.04, 0.04])
    assert schedule(CifarConfig(minutes=1.0), per_epoch=10)(10**6) == 1.0  # time-budgeted runs: constant


def test_translate_shifts_each_image_by_its_own_offset():
    torch = pytest.importorskip("torch")
    from unitary_lowrank.cli.train_cifar import translate

    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6) + 1
    y = translate(x, 2, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and translate(x, 0, None) is x
    for b in range(2):  # some shift (dy, dx) with |dy|, |dx| ≤ 2 reproduces image b, zero-filled
        matches = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                padded = torch.nn.functional.pad(x[b], (2, 2, 2, 2))
                shifted = padded[:, 2 + dy : 2 + dy + 6, 2 + dx : 2 + dx + 6]
                matches.append(bool(torch.equal(shifted, y[b])))
        assert sum(matches) == 1


def test_holdout_and_test_limit_draw_from_every_class(tmp_path, monkeypatch):
    """Held-out images are training images the run never sees; a test subset is random, not the first classes."""
    pytest.importorskip("torch")
    pytest.importorskip("tqdm")
    from unitary_lowrank.backends.torch import lipschitz as backend

    from unitary_lowrank.cli.train_cifar import CifarConfig, run

    seen = []
    certify = backend.certified_accuracy

    def recording(model, inputs, labels, *args, **kwargs):
        seen.append(labels.clone())
        return certify(model, inputs, labels, *args, **kwargs)

    monkeypatch.setattr(backend, "certified_accuracy", recording)

    root = tmp_path / "cifar-10-batches-py"
    x, y = _images(60, 1)
    order = np.argsort(y, kind="stable")  # a test set listed class by class, as in class-folder archives
    _write_batches(root, [(x, y)], (x[order], y[order]))
    common = dict(data=str(root), width=2, batch=8, epochs=1, out=str(tmp_path / "runs"), eval_every=100)
    held = run(CifarConfig(**common, holdout=20), progress=False)
    assert held["train_images"] == 40 and held["test_images"] == 20
    assert held["evaluated_on"] == "held-out training images" and held["name"].endswith("-holdout")
    limited = run(CifarConfig(**common, test_limit=20), progress=False)
    assert limited["test_images"] == 20 and limited["evaluated_on"] == "test set"
    assert len(set(seen[-1].tolist())) >= 5  # the first 20 of the sorted test set hold 3 or 4 classes
    assert sorted(y[order][:20].tolist()) != sorted(seen[-1].tolist())
    with pytest.raises(ValueError, match="holdout"):
        run(CifarConfig(**common, holdout=60), progress=False)


def test_resnet9_shapes_and_parameter_split():
    torch = pytest.importorskip("torch")
    from unitary_lowrank.backends.torch import ResNet9, UnitaryConv2d

    model = ResNet9(width=2, generator=torch.Generator().manual_seed(0))
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 10)
    convs = [m for m in model.modules() if isinstance(m, UnitaryConv2d)]
    assert len(convs) == 7  # every convolution after the stem
    assert len(model.unitary_parameters()) + len(model.other_parameters()) == len(list(model.parameters()))
    assert ResNet9(width=2, conv="plain").unitary_parameters() == []
    with pytest.raises(ValueError, match="conv must be"):
        ResNet9(conv="aol")
    with pytest.raises(ValueError, match="32×32"):
        model(torch.randn(1, 3, 16, 16))


def test_rank_above_a_small_layers_size_is_capped_for_that_layer(tmp_path):
    """The stem's frequency matrices are c × 3: rank 4 steps them at rank 3, the rest at rank 4."""
    pytest.importorskip("torch")
    from unitary_lowrank.cli.train_cifar import CifarConfig, build

    _, optimizer = build(CifarConfig(width=4, rank=4, method="project"))
    ranks = {group.get("rank") for group in optimizer.param_groups if group.get("unitary")}
    assert ranks == {3, 4}
    small = next(g for g in optimizer.param_groups if g.get("rank") == 3)["params"]
    assert small and all(min(p.shape[-2:]) == 3 for p in small)


def test_paper_preset_builds_and_steps_with_weight_decay_off_the_unitary_weights():
    """The authors' weight decay applies to the other parameters; on a unitary one ProjUNN would refuse it."""
    torch = pytest.importorskip("torch")
    from unitary_lowrank.cli.train_cifar import PRESETS, CifarConfig, build
    from unitary_lowrank.unitarity import unitarity_error

    model, optimizer = build(CifarConfig(**{**PRESETS["paper"], "width": 2}))
    decay = {bool(g.get("unitary")): g["weight_decay"] for g in optimizer.param_groups}
    assert decay == {False: 5e-5, True: 0}
    torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3])).backward()
    optimizer.step()
    assert max(float(unitarity_error(p.detach()).max()) for p in model.unitary_parameters()) < 1e-5


@pytest.mark.parametrize(("rank", "expected"), [(16, [3, 10, 16]), (2, [2]), ("auto", ["auto"])])
def test_unitary_groups_by_rank_in_ascending_order(rank, expected):
    """An integer rank is capped per weight (the stem's c × 3 matrices at 3, the 10-class head at 10), and the
    groups follow the ranks as numbers (3, 10, 16; as strings 16 would come before 3), so that a run's parameter
    indices, and its sketch keys, stay what they were; "auto" leaves the rank to the optimizer, in one group."""
    pytest.importorskip("torch")
    from unitary_lowrank.tasks.train_cifar10 import CifarConfig, build

    _, optimizer = build(CifarConfig(model="lipconvnet", width=16, depth=5, rank=rank))
    assert [group["rank"] for group in optimizer.param_groups if group.get("unitary")] == expected
