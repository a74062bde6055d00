"""Converts a scikit-learn model logged in MLflow (a pickle, which only Python can load) to ONNX
with skl2onnx, and registers the result as a new version of a registered model, so tributary can
serve it.

    .venv/bin/python processors/models/export_to_mlflow.py MODEL_URI [--name NAME] [--alias ALIAS]

MODEL_URI is any URI ``mlflow.sklearn.load_model`` takes: ``models:/<name>@<alias>``,
``models:/<name>/<version>``, ``runs:/<run_id>/model``. The new version goes to ``--name``,
by default the registered model MODEL_URI names (so ``models:/rides@champion`` gains a version
beside the pickled one); ``--alias`` then points an alias at it. The ONNX model is logged with
``mlflow.onnx.log_model`` in a new run of the source run's experiment, tagged with the URI it
came from. MLFLOW_TRACKING_URI (and, for S3 artifacts, the AWS variables and
MLFLOW_S3_ENDPOINT_URL) are read as MLflow reads them.

Inputs, as skl2onnx sees them:

* a pipeline starting with ``DictVectorizer`` (the seeds' ``make_pipeline(DictVectorizer(), ...)``)
  takes ``map(string, float)``: map it in tributary with ``entries`` (see docs/configuration.md);
* any other estimator takes one float matrix ``float_input`` of ``n_features_in_`` columns.

The script checks the ONNX model against the original on rows the data scientist would send
(``--check N`` random rows for a matrix input; the DictVectorizer's vocabulary for a map input)
and stops without registering when they differ by more than 1e-4.
"""

import argparse
import sys

import mlflow
import mlflow.onnx
import mlflow.sklearn
import numpy as np
import onnxruntime as ort
from mlflow.tracking import MlflowClient
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import DictionaryType, FloatTensorType, StringTensorType
from sklearn.feature_extraction import DictVectorizer
from sklearn.pipeline import Pipeline


def registered_name(uri):
    if uri.startswith("models:/"):
        rest = uri[len("models:/"):].strip("/")
        return rest.split("@")[0].rsplit("/", 1)[0] if "@" not in rest else rest.split("@")[0]
    return None


def convert(model):
    first = model.steps[0][1] if isinstance(model, Pipeline) else model
    if isinstance(first, DictVectorizer):
        initial = [("input", DictionaryType(StringTensorType([]), FloatTensorType([])))]
        return convert_sklearn(model, initial_types=initial), "map"
    n = getattr(model, "n_features_in_", None)
    if n is None:
        sys.exit("cannot tell the model's input width (no n_features_in_); convert it with skl2onnx by hand")
    return convert_sklearn(model, initial_types=[("float_input", FloatTensorType([None, int(n)]))]), "matrix"


def check(model, onx, kind, rows):
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    if kind == "map":
        vocabulary = list(model.steps[0][1].vocabulary_)
        samples = [{k: (1.0 if "=" in k else float(rng.uniform(0, 10))) for k in rng.choice(vocabulary, 3)}
                   for _ in range(rows)]
        ours = [float(np.ravel(sess.run(None, {"input": s})[0])[0]) for s in samples]
    else:
        samples = rng.normal(0, 1, (rows, sess.get_inputs()[0].shape[1])).astype(np.float32)
        ours = np.ravel(sess.run(None, {"float_input": samples})[0]).tolist()
    theirs = np.ravel(model.predict(samples)).tolist()
    worst = max(abs(float(a) - float(b)) for a, b in zip(ours, theirs))
    if worst > 1e-4:
        sys.exit(f"the ONNX model differs from the original by {worst:g} (> 1e-4): not registered")
    return worst


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("uri", help="the scikit-learn model: models:/name@alias, models:/name/N or runs:/ID/model")
    parser.add_argument("--name", help="registered model for the ONNX version (default: the one URI names)")
    parser.add_argument("--alias", help="point this alias at the new version")
    parser.add_argument("--check", type=int, default=200, help="rows compared against the original (default 200)")
    args = parser.parse_args()
    name = args.name or registered_name(args.uri)
    if not name:
        sys.exit("give --name: a runs:/ URI names no registered model")

    model = mlflow.sklearn.load_model(args.uri)
    onx, kind = convert(model)
    worst = check(model, onx, kind, args.check)
    client = MlflowClient()
    info = mlflow.models.get_model_info(args.uri)
    experiment = client.get_run(info.run_id).info.experiment_id if info.run_id else None
    with mlflow.start_run(experiment_id=experiment, run_name=f"onnx export of {args.uri}") as run:
        mlflow.set_tag("tributary.converted_from", args.uri)
        logged = mlflow.onnx.log_model(onx, name="model", registered_model_name=name)
    version = logged.registered_model_version
    if args.alias:
        client.set_registered_model_alias(name, args.alias, version)
    print(f"registered {name} version {version} (ONNX, {kind} input; max difference from scikit-learn {worst:.2g})")
    print(f'model = "models:/{name}/{version}"' + (f'   # or "models:/{name}@{args.alias}"' if args.alias else ""))
    print(f"run: {run.info.run_id}")


if __name__ == "__main__":
    main()
