"""weightspace: learning from the weights of populations of trained networks (model zoos)."""

from weightspace.layout import LayerSpec, WeightLayout
from weightspace.zoo.architectures import create_zoo_model, list_zoo_models

__version__ = "0.1.0"

__all__ = ["LayerSpec", "WeightLayout", "create_zoo_model", "list_zoo_models", "__version__"]
