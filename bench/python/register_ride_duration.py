"""For benchmark 9: logs the ride-duration model (processors/models/ride_duration/model.onnx) to
the MLflow server at MLFLOW_TRACKING_URI twice, as versions 1 and 2 of registered model NAME,
with alias ``champion`` -> 1.

Usage: register_ride_duration.py NAME
"""

import sys

import mlflow
import mlflow.onnx
import onnx
from mlflow.tracking import MlflowClient


def main(name):
    model = onnx.load("processors/models/ride_duration/model.onnx")
    mlflow.set_experiment("tributary-bench")
    for _ in range(2):
        with mlflow.start_run():
            mlflow.onnx.log_model(model, name="model", registered_model_name=name)
    MlflowClient().set_registered_model_alias(name, "champion", "1")


if __name__ == "__main__":
    main(sys.argv[1])
