"""Running a model: device and precision choices, batched prediction, scores of predictions.

Below both training (which validates with these) and the metric registry (which measures with
them); the modules are imported one by one, so that naming the package loads no torch.
"""
