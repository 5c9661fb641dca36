"""The models of the VAE literature, each in its own file, all behind the interface of
:class:`tinyvae.models.base.Model`. ``MODELS`` maps a model's name to its class; ``build`` makes one."""

from tinyvae.models.ae import AE, AEConfig
from tinyvae.models.base import LossResult, Model, ModelConfig
from tinyvae.models.beta_vae import BetaVAE, BetaVAEConfig
from tinyvae.models.cvae import CVAE, CVAEConfig
from tinyvae.models.flow import FlowVAE, FlowVAEConfig
from tinyvae.models.hvae import HVAE, HVAEConfig
from tinyvae.models.iwae import IWAE, IWAEConfig
from tinyvae.models.linear import LinearGaussianConfig, LinearGaussianVAE
from tinyvae.models.mixture import MixtureVAE, MixtureVAEConfig
from tinyvae.models.vae import VAE, VAEConfig
from tinyvae.models.vqvae import VQVAE, VQVAEConfig

MODELS = {
    cls.name: cls
    for cls in (VAE, BetaVAE, IWAE, VQVAE, CVAE, HVAE, MixtureVAE, FlowVAE, LinearGaussianVAE, AE)
}


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
    "FlowVAE",
    "FlowVAEConfig",
    "HVAE",
    "HVAEConfig",
    "IWAE",
    "IWAEConfig",
    "LinearGaussianConfig",
    "LinearGaussianVAE",
    "MODELS",
    "VAE",
    "LossResult",
    "MixtureVAE",
    "MixtureVAEConfig",
    "Model",
    "ModelConfig",
    "VAEConfig",
    "VQVAE",
    "VQVAEConfig",
    "build",
]
