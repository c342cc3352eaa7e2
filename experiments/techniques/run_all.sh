#!/usr/bin/env bash
# Reproduce the training-technique experiments (issue 4) on the shapes dataset.
#   BASE_CKPT=<a shapes-trained checkpoint, e.g. from `make train`> bash experiments/techniques/run_all.sh
# Runs go to outputs/experiments/<name>/ (not committed); summarise.py builds the tables.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=outputs/experiments
BASE_CKPT=${BASE_CKPT:?set BASE_CKPT to a shapes-trained checkpoint}
COMMON="~callbacks.progress_bar +trainer.enable_progress_bar=false"
# the shifted variant for fine-tuning: another seed, bigger and more objects, fewer images
SHIFT="trainer.check_val_every_n_epoch=1 data.source.seed=1 +data.source.min_object_size=20 +data.source.max_object_size=72 +data.source.max_objects=6 data.source.num_train=300"
run() { name=$1; shift; echo "== $name"; /usr/bin/time -f "$name wall %e s" $PY train.py hydra.run.dir=$OUT/$name $COMMON "$@" 2>&1 | grep -E "final:|LR finder|wall|LoRA|freeze_unfreeze|progressive" ; }

# (a) LR finder curve and suggestion (the sweep, then one short epoch)
run lr_finder +callbacks/lr_finder=default trainer.max_epochs=1 +trainer.limit_train_batches=10 +trainer.limit_val_batches=2 test=false
# (b) one-cycle vs the default schedule at equal epochs (4)
run default_4ep trainer.max_epochs=4
run one_cycle_4ep sched=one_cycle trainer.max_epochs=4
# (c) progressive resizing vs fixed size (8 epochs; the fixed-size run is `make train`)
run progressive_8ep +callbacks/progressive_resize=default
# (d) LoRA vs full fine-tuning onto the shifted variant (3 epochs, from BASE_CKPT)
run finetune_full $SHIFT model.init_from=$BASE_CKPT trainer.max_epochs=3 optim.lr=0.01 sched.warmup_steps=20
run finetune_lora $SHIFT model.init_from=$BASE_CKPT +model/lora=default trainer.max_epochs=3 optim.lr=0.01 sched.warmup_steps=20
# (e) discriminative LRs + freeze-then-unfreeze for the same fine-tuning
run finetune_discriminative $SHIFT model.init_from=$BASE_CKPT trainer.max_epochs=3 sched.warmup_steps=20 +optim/param_groups=discriminative optim.param_groups.lr_low=0.0005 optim.param_groups.lr_high=0.01 +callbacks/freeze_unfreeze=default
