"""Search: spaces of candidate models, Optuna strategies, runners that measure, reports."""
