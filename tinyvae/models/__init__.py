"""The models of the VAE literature, each in its own file, all behind the interface of
:class:`tinyvae.models.base.Model`. ``MODELS`` maps a model's name to its class (every class decorated with
:func:`register`, the built-in ones when this package is imported); ``build`` makes one."""

from tinyvae.models.ae import AE, AEConfig
from tinyvae.models.base import LossResult, Model, ModelConfig
from tinyvae.models.beta_vae import BetaVAE, BetaVAEConfig
from tinyvae.models.cvae import CVAE, CVAEConfig
from tinyvae.models.diffusion import Diffusion, DiffusionConfig
from tinyvae.models.flow import FlowVAE, FlowVAEConfig
from tinyvae.models.hvae import HVAE, HVAEConfig
from tinyvae.models.iwae import IWAE, IWAEConfig
from tinyvae.models.linear import LinearGaussianConfig, LinearGaussianVAE
from tinyvae.models.mixture import MixtureVAE, MixtureVAEConfig
from tinyvae.models.priors import MarkovChain, Prior, StandardNormal, UniformCodes
from tinyvae.models.registry import MODELS, register
from tinyvae.models.vae import VAE, VAEConfig
from tinyvae.models.vamp import VampConfig, VampPrior, VampVAE
from tinyvae.models.vqvae import VQVAE, VQVAEConfig


def build(name, **config):
    """``build("vae", x_dim=784, z_dim=20)``: the model called ``name`` with its config's fields."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    cls = MODELS[name]
    return cls(cls.config_class(**config))


__all__ = [
    "AE",
    "AEConfig",
    "BetaVAE",
    "BetaVAEConfig",
    "CVAE",
    "CVAEConfig",
    "Diffusion",
    "DiffusionConfig",
    "FlowVAE",
    "FlowVAEConfig",
    "HVAE",
    "HVAEConfig",
    "IWAE",
    "IWAEConfig",
    "LinearGaussianConfig",
    "LinearGaussianVAE",
    "MODELS",
    "MarkovChain",
    "Prior",
    "StandardNormal",
    "UniformCodes",
    "register",
    "VAE",
    "LossResult",
    "MixtureVAE",
    "MixtureVAEConfig",
    "Model",
    "ModelConfig",
    "VAEConfig",
    "VQVAE",
    "VQVAEConfig",
    "VampConfig",
    "VampPrior",
    "VampVAE",
    "build",
]
