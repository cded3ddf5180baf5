"""Self-supervised representations of network weights: tokenizers, autoencoders, losses, training."""

from weightspace.representation.config import (
    AugmentConfig,
    EncoderConfig,
    HeadConfig,
    LearnerConfig,
    LossConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
)
from weightspace.representation.heads import ProjectionHead
from weightspace.representation.learner import Learner, NonFiniteLossError, embed, fit, reconstruction_r2
from weightspace.representation.losses import GammaLoss, NTXentLoss, PositiveContrastLoss, ReconstructionLoss
from weightspace.representation.registry import create_autoencoder, list_autoencoders

__all__ = [
    "AugmentConfig", "EncoderConfig", "LearnerConfig", "HeadConfig", "LossConfig", "TrainConfig",
    "config_from_dict", "config_to_dict", "ProjectionHead", "Learner", "NonFiniteLossError", "embed", "fit",
    "reconstruction_r2", "GammaLoss", "NTXentLoss", "PositiveContrastLoss", "ReconstructionLoss",
    "create_autoencoder", "list_autoencoders",
]
