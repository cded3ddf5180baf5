"""Downstream tasks: feature extractors, probes and the evaluation that compares them.

``evaluate`` fits probes (`RidgeProbe`, `LogisticProbe`, boosted trees) on
feature sets (`RawWeights`, `LayerStatistics`, `Hyperparameters`, `Embedding`,
`KernelPCAFeatures`, `UMAPFeatures`) for targets read from a zoo's samples
table, and returns a tidy table; ``probe_scores`` scores an encoder that is
training; ``run_baselines`` runs the standard baseline suite and writes
``baseline_performance.json`` in the 2021 shape.
"""

from weightspace.downstream.baselines import (
    BASELINES,
    Baseline,
    BaselineConfig,
    format_table,
    json_key,
    list_baselines,
    run_baselines,
    write_baseline_json,
)
from weightspace.downstream.evaluate import ProbeWarning, evaluate, results_dict, write_results_json
from weightspace.downstream.features import (
    Embedding,
    Hyperparameters,
    KernelPCAFeatures,
    LayerStatistics,
    RawWeights,
    UMAPFeatures,
)
from weightspace.downstream.probes import (
    BoostedTreesClassifierProbe,
    BoostedTreesRegressorProbe,
    LogisticProbe,
    ProbeConfig,
    RidgeClassifierProbe,
    RidgeProbe,
    make_probe,
)
from weightspace.downstream.probing import SELECT_METRIC, probe_scores
from weightspace.downstream.targets import Target, derive_targets, score

__all__ = [
    "BASELINES", "Baseline", "BaselineConfig", "list_baselines", "run_baselines",
    "ProbeWarning", "evaluate", "format_table", "json_key", "results_dict", "write_baseline_json",
    "write_results_json", "SELECT_METRIC", "probe_scores",
    "Embedding", "Hyperparameters", "KernelPCAFeatures", "LayerStatistics", "RawWeights", "UMAPFeatures",
    "BoostedTreesClassifierProbe", "BoostedTreesRegressorProbe", "LogisticProbe", "ProbeConfig",
    "RidgeClassifierProbe", "RidgeProbe",
    "make_probe",
    "Target", "derive_targets", "score",
]
