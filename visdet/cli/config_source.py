"""Where the Hydra apps find their configs: the ``visdet.conf`` package (the repository's
top-level ``conf/`` folder, shipped inside the installed package), so ``visdet <cmd>`` works
from any folder and from a non-editable install."""

import visdet.config  # noqa: F401 - registers the OmegaConf resolvers the configs use

CONFIG_PATH = "pkg://visdet.conf"
