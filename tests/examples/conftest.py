import pytest

from yolocompress.models import registry


@pytest.fixture
def gallery_registry(monkeypatch):
    """The module registry as it was before the test: gallery names (C2f, SE, ...) do not leak into others."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    yield
