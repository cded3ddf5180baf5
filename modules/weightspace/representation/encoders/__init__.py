"""The encoders, one module each; every module here is imported with this package, and registers itself.

Adding an encoder is adding one module: its config (a dataclass subclassing
`weightspace.representation.registry.EncoderConfig`), its model (an
`weightspace.representation.autoencoder.Autoencoder`) and a builder decorated with
``@register_encoder(name, config=...)``.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):  # sorted by name
    importlib.import_module(f"{__name__}.{_module.name}")
