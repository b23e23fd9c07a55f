"""Catalogue, importers, safe image loading, prepared-image cache and the demo corpus."""
from .catalog import Catalog, CatalogError, TaskSpec
from .images import ImageLoadError, SkipReport, load_image

__all__ = ["Catalog", "CatalogError", "TaskSpec", "ImageLoadError", "SkipReport", "load_image"]
