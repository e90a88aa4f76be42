"""The names of a batch's arrays: one place for every key a model reads and a batch carries.

A screen becomes named arrays once (:mod:`delpyro.encoding`), :class:`~delpyro.batches.Minibatches` slices
batches of tensors from them, and :class:`~delpyro.model.DELModel` reads a batch by these keys. Shapes are
per batch (``[batch]`` compounds), or per screen for the arrays ``encode`` returns (``[n_compounds]``).

=====================  ==========================================================================
key                    what it holds
=====================  ==========================================================================
``INDEX``              int64 ``[batch]``: the compounds' row positions in the screen
``SCREEN_SIZE``        int: compounds in the screen the batch is drawn from (what a subsampled plate
                       scales the likelihood to)
``FINGERPRINTS``       uint8 ``[batch, n_bits // 8]``: packed Morgan bits
``POSES``              float32 or float16 ``[batch, n_poses, n_pose_features]``: docked-pose features
``BLOCK_CODES``        int64 ``[batch, n_families]``: each compound's slot in every building-block
                       family (cycles, then pairs of cycles), in the training vocabulary
``TRAINING_POSITION``  int64 ``[batch]``: the compound's row in the training screen, -1 if never
                       screened (whose per-compound effect is then drawn from its prior)
``LOG_LOAD``           float32 ``[batch]``: the load offset, log(load + pseudocount) - log mean
``TARGET_COUNTS``      float32 ``[batch, n_target_replicates]``: reads after the target selection
``CONTROL_COUNTS``     float32 ``[batch, n_control_replicates]``: reads after the bead selection
``BATCH_TOTAL``        int: when processes share each batch (:class:`~delpyro.batches.ShardedMinibatches`),
                       the compounds of the step's whole batch, every process's part together
``PAIR_SUBSAMPLE``     the batch's pair slots, their weights and each compound's pairs among them: not
                       sliced from the screen but worked out from ``BLOCK_CODES`` by the model the
                       first time a batch needs it (:meth:`~delpyro.model.DELModel.pair_subsample`),
                       so the guide and the model share one
=====================  ==========================================================================
"""

from __future__ import annotations

__all__ = [
    "BATCH_TOTAL",
    "BLOCK_CODES",
    "CONTROL_COUNTS",
    "FINGERPRINTS",
    "INDEX",
    "LOG_LOAD",
    "PAIR_SUBSAMPLE",
    "POSES",
    "SCREEN_SIZE",
    "TARGET_COUNTS",
    "TRAINING_POSITION",
]

INDEX = "index"
SCREEN_SIZE = "screen_size"
FINGERPRINTS = "fingerprints"
POSES = "poses"
BLOCK_CODES = "building_block_codes"
TRAINING_POSITION = "training_position"
LOG_LOAD = "log_load"
TARGET_COUNTS = "target_counts"
CONTROL_COUNTS = "control_counts"
PAIR_SUBSAMPLE = "pair_subsample"
BATCH_TOTAL = "batch_total"
