"""How the strategy records trials in Optuna's storage; reports read exactly these keys.

Study user attributes:
  STUDY_CONFIG     the [search] section the study was created with (dict)
  STUDY_OBJECTIVES list of {"name", "direction", "scale"} in objective order
  STUDY_SUM_SCALED True when the objective is one weighted sum of scaled metrics
  STUDY_SPACE      {"name": space name, "choices": {param: [choices]}}
  STUDY_MODEL      {"model", "dataset", "load_name"}
  STUDY_RUN_CONFIG the whole resolved run configuration the study was created with
  STUDY_BASE       the unquantized base model scored like a trial, the reference of the reports and
                   of drop constraints (accuracy_drop):
                   {"metrics": {name: float | None}, "values": [objective values] or None,
                   "scaled": {name: value * scale}, "feasible": bool, "seconds": float}, or
                   {"error": reason} when it could not be evaluated; absent in older studies

Trial user attributes:
  TRIAL_METRICS    raw metric values {name: float | None}
  TRIAL_SCALED     {name: value * scale} for the objective metrics
  TRIAL_CONFIG     the sampled choices {param: value} (also the trial's params)
  TRIAL_CONFIG_KEY hash of the sampled choices (deduplication)
  TRIAL_FEASIBLE   False when a constraint is violated
  TRIAL_SECONDS    wall time of the trial
  TRIAL_FAIL       the reason a FAIL trial failed (exception text, "NaN in <metric>", ...)
  TRIAL_CONSTRAINTS per constraint, <= 0 when satisfied (Optuna's constraints convention)
  TRIAL_CONSTRAINED per constraint key, the bounded quantity: the metric, or its drop below the
                   float base model (`accuracy_drop`: base - value, or (base - value) / base for
                   a relative bound); None when it could not be measured
  TRIAL_CACHED_FROM number of the earlier trial whose identical configuration was reused
  TRIAL_DERIVED    what the space chose beyond the sample, by parameter-like name: calibrated
                   frac widths {"<node>/<operand>_frac_width": int, or a list per output channel}
  TRIAL_WORKER     "host:pid:start" of the process that ran the trial (liveness checks, reports)
  TRIAL_UNCOUNTED  why a trial does not count towards the budget: "requeued" (its worker died and
                   its configuration was queued again), "duplicate" (another worker holds the same
                   grid point) or "over budget" (other workers had claimed every remaining trial)
  TRIAL_REQUEUE_OF number of the dead trial a queued trial repeats
"""

STUDY_CONFIG = "machop_search_config"
STUDY_OBJECTIVES = "machop_objectives"
STUDY_SUM_SCALED = "machop_sum_scaled"
STUDY_SPACE = "machop_space"
STUDY_MODEL = "machop_model"
STUDY_RUN_CONFIG = "machop_run_config"
STUDY_BASE = "machop_base"

TRIAL_METRICS = "machop_metrics"
TRIAL_SCALED = "machop_scaled"
TRIAL_CONFIG = "machop_config"
TRIAL_CONFIG_KEY = "machop_config_key"
TRIAL_FEASIBLE = "machop_feasible"
TRIAL_SECONDS = "machop_seconds"
TRIAL_FAIL = "machop_fail_reason"
TRIAL_CONSTRAINTS = "constraint"
TRIAL_CONSTRAINED = "machop_constrained"
TRIAL_CACHED_FROM = "machop_cached_from"
TRIAL_DERIVED = "machop_derived"
TRIAL_WORKER = "machop_worker"
TRIAL_UNCOUNTED = "machop_uncounted"
TRIAL_REQUEUE_OF = "machop_requeue_of"
