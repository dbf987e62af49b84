"""Models: datasets and labels, walk-forward evaluation, the four-model ensemble, tuning, registry.

Heavy libraries (xgboost, lightgbm, sklearn, torch, optuna, mlflow) are imported inside the
functions that need them, so importing ``hft.ml`` stays cheap.
"""
