"""Self-supervised representations of network weights: encoders, losses, training.

Encoders live in ``encoders/``, one module each, behind one registry (`create_autoencoder`,
`list_encoders`) and one contract (`Autoencoder`); each has its own config class.
"""

from weightspace.representation.autoencoder import Autoencoder
from weightspace.representation.config import (
    AugmentConfig,
    HeadConfig,
    LearnerConfig,
    LossConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
)
from weightspace.representation.encoders.mlp import MLPConfig
from weightspace.representation.encoders.neuron_set import NeuronSetConfig
from weightspace.representation.encoders.transformer import TransformerConfig
from weightspace.representation.heads import ProjectionHead
from weightspace.representation.learner import Learner, NonFiniteLossError, embed, fit, reconstruction_r2
from weightspace.representation.losses import GammaLoss, NTXentLoss, PositiveContrastLoss, ReconstructionLoss
from weightspace.representation.registry import (
    EncoderConfig,
    create_autoencoder,
    encoder_config,
    list_encoders,
    register_encoder,
)

__all__ = [
    "AugmentConfig", "LearnerConfig", "HeadConfig", "LossConfig", "TrainConfig", "config_from_dict",
    "config_to_dict", "Autoencoder", "EncoderConfig", "MLPConfig", "NeuronSetConfig", "TransformerConfig",
    "ProjectionHead", "Learner", "NonFiniteLossError", "embed", "fit", "reconstruction_r2", "GammaLoss",
    "NTXentLoss", "PositiveContrastLoss", "ReconstructionLoss", "create_autoencoder", "encoder_config",
    "list_encoders", "register_encoder",
]
