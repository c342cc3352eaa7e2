"""Config checks and the OmegaConf resolvers the configs in conf/ use (registered on import,
so every entry point has them before Hydra composes its config)."""

from visdet.config.launch import register_resolvers

register_resolvers()
