import pytest

from artextract.job import Job


@pytest.fixture(scope="session")
def demo_outliers_corpus(tmp_path_factory):
    """A small demo corpus (120 paintings, 64 px, seed 0): its folder and catalogue."""
    from artextract.data.demo import generate_demo

    root = tmp_path_factory.mktemp("demo_outliers")
    return root, generate_demo(root, n=120, size=64, seed=0)


@pytest.fixture(scope="session")
def demo_outliers(demo_outliers_corpus):
    """The same corpus and its pooled ImageNet features (computed once per session)."""
    from artextract.models.backbones import WeightsUnavailable
    from artextract.outliers.detect import backbone_features

    root, cat = demo_outliers_corpus
    try:
        feats = backbone_features(cat, "mobilenet_v2", job=Job(progress=False, log=lambda *_: None))
    except WeightsUnavailable as exc:  # pragma: no cover - the Makefile installs them
        pytest.skip(f"ImageNet MobileNetV2 weights not installed: {exc}")
    return root, cat, feats
