import pytest


@pytest.fixture(scope="session")
def demo_outliers(tmp_path_factory):
    """A small demo corpus and its pooled ImageNet features (computed once per session)."""
    from artextract.data.demo import generate_demo
    from artextract.models.backbones import WeightsUnavailable
    from artextract.outliers.detect import backbone_features

    root = tmp_path_factory.mktemp("demo_outliers")
    cat = generate_demo(root, n=120, size=64, seed=0)
    try:
        feats = backbone_features(cat, "mobilenet_v2", progress=False, log=lambda *_: None)
    except WeightsUnavailable as exc:  # pragma: no cover - the Makefile installs them
        pytest.skip(f"ImageNet MobileNetV2 weights not installed: {exc}")
    return root, cat, feats
