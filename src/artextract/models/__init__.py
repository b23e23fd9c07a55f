"""Networks: the backbone registry and the multi-task convolutional-recurrent model."""
from .backbones import (DEFAULT_BACKBONE, Backbone, WeightsUnavailable, create_backbone,
                        list_backbones)

__all__ = ["DEFAULT_BACKBONE", "Backbone", "WeightsUnavailable", "create_backbone", "list_backbones"]
