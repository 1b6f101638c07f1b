"""Experiments built from the library: the masking ablation of AttMask (Table 1, Table 2, Fig. 4)."""

from attmask.experiments.config import ARMS, EvalSpec, ExperimentConfig, load_experiment
from attmask.experiments.masking import MaskingExperiment
from attmask.experiments.plan import Cell, plan_cells

__all__ = ["ARMS", "Cell", "EvalSpec", "ExperimentConfig", "MaskingExperiment", "load_experiment", "plan_cells"]
