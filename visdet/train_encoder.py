"""``python -m visdet.train_encoder``: fine-tune an encoder + linear head
(conf/train_encoder.yaml; e.g.
``encoder_data@data=image_folder data.train.root=/my/classes``). Sweeps (``-m``) behave as
``train.py``'s: a failing job is recorded and the sweep goes on (visdet.sweep.run_job)."""

import hydra
from omegaconf import DictConfig

from visdet.encoder_run import train_encoder
from visdet.sweep import run_job


@hydra.main(version_base="1.3", config_path="../conf", config_name="train_encoder")
def main(cfg: DictConfig) -> float | None:
    return run_job(cfg, train_encoder)


if __name__ == "__main__":
    main()
