"""Names shared by a sweep's jobs, its sweeper and its summary: the record files a job leaves
in its directory and what visdet's Optuna sweeper tells each trial's job (kept apart so that
reading them imports neither torch nor Optuna)."""

# a job that failed: its error (visdet.runs.job.record_failure)
ERROR_FILE = "job_error.json"

# environment of a trial's job (set through hydra.job.env_set): where its trial lives
ENV_STORAGE = "VISDET_OPTUNA_STORAGE"
ENV_STUDY = "VISDET_OPTUNA_STUDY"
ENV_TRIAL = "VISDET_OPTUNA_TRIAL"
# a pruned trial: the user attribute its job sets (the step it was pruned at) and its record
PRUNED_ATTR = "pruned_at_step"
PRUNED_FILE = "trial_pruned.json"
