"""The names of the tags the pipeline reads and writes in MLflow: the one vocabulary.

Every tag name of a run, an experiment, a logged or registered model, a model version or a
dataset input is spelled here once; the other modules (and the stages) use these constants,
so a renamed tag cannot be half renamed (tests/test_tracking_tags.py checks that no other
file under pipeline/ or stages/ types one as a string). MLflow's own names
(``mlflow.utils.mlflow_tags``) are the ones its UI shows: source, commit, description.
"""

from __future__ import annotations

# MLflow's reserved namespace: tags under it describe a run, they are not copied to a fork.
MLFLOW_PREFIX = "mlflow."

# MLflow's own tags (the UI's source, commit and description columns).
SOURCE_TAG = "mlflow.source.name"
SOURCE_TYPE_TAG = "mlflow.source.type"
COMMIT_TAG = "mlflow.source.git.commit"
NOTE_TAG = "mlflow.note.content"
# MLflow 3's marker of a model-training experiment (an experiment tag).
KIND_TAG = "mlflow.experimentKind"
# MLflow's link from a logged model to its registered versions (a logged-model tag).
MODEL_VERSIONS_TAG = "mlflow.modelVersions"
# MLflow's dataset input context tag; its value "training" is what MLflow's own autologgers
# use for the data a model was fitted on.
CONTEXT_TAG = "mlflow.data.context"
# MLflow's nested runs: a child run names its parent (the UI shows it under the parent).
PARENT_RUN_TAG = "mlflow.parentRunId"
# A saved view of the runs table (MLflow's shared view state, an experiment tag).
VIEW_KEY = "deepflash-compare"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"

# What ran, on which data, in which DVC experiment.
EXP_NAME_TAG = "dvc.exp_name"
BASELINE_REV_TAG = "dvc.baseline_rev"
DATASET_TAG = "data.name"
FINGERPRINT_TAG = "data.fingerprint"
ARCH_TAG = "model.arch"
ENCODING_TAG = "loss.encoding"
# The run's role: params mlflow.role for model runs, "baseline" and "paper" for the references.
ROLE_TAG = "role"

# Set by evaluate when it has logged its metrics: a later evaluation of the same trained
# model (say, other evaluate params) then gets a run of its own instead of overwriting.
EVALUATED_TAG = "deepflash.evaluated"
# The training run a re-evaluation was forked from.
TRAIN_RUN_TAG = "deepflash.train_run_id"
# A reference run's system (identity, oracle, paper) and the key it is found by again.
SYSTEM_TAG = "deepflash.system"
KEY_TAG = "deepflash.baseline_key"
# The seed group of a run (``deepflash grid queue --seeds N``): children and their parent.
SEED_GROUP_TAG = "deepflash.seed_group"
# The seeds (train.seed values) a seed group's parent run summarises, comma-separated.
SEEDS_TAG = "deepflash.seeds"
