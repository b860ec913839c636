"""latro: LaTRO and the self-rewards it is compared with, on one training path.

    from latro import TrainConfig, train, evaluate, dgdiff, register_reward, register_task
"""

from latro.api import dgdiff, evaluate, train
from latro.config import DGDiffConfig, EvalConfig, TrainConfig
from latro.dgdiff import register_discriminator
from latro.estimators import register_estimator
from latro.rewards import RewardContext, register_reward
from latro.tasks import Task, register_task
from latro.trajectories import Trajectories

__all__ = ["DGDiffConfig", "EvalConfig", "RewardContext", "Task", "TrainConfig", "Trajectories", "dgdiff",
           "evaluate", "register_discriminator", "register_estimator", "register_reward", "register_task", "train"]
