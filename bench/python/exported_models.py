"""Python references for benchmark 8 (exported models by configuration).

Usage: exported_models.py FIXTURES_DIR RECORDS BATCH
FIXTURES_DIR is what tests/fixtures/models/export.py writes. For each model, on the same good
events tributary-bench uses (cycled to RECORDS, in batches of BATCH), it times, in CPU seconds
per record (median of 5 passes):

* ``ort``: the best vectorized Python onnxruntime consumer: json.loads every event, build the
  input array, one ``run`` per batch, json.dumps one envelope per record;
* ``ort_run``: the ``run`` calls alone, on arrays built beforehand;
* for the DictVectorizer pipeline, where onnxruntime takes one map per call: ``ort`` with one
  ``run`` per record, and ``sklearn``: the pickled pipeline's ``predict`` on each batch, with the
  same JSON decoding and envelopes (``sklearn_predict``: the ``predict`` calls alone).

Prints one JSON object: {model: {measure: microseconds per record}}.
"""

import json
import pickle
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def matrix(fields, dtype):
    return lambda events: np.array([[e[k] for k in fields] for e in events], dtype=dtype)


def nested(*path):
    def get(e):
        for k in path:
            e = e[k]
        return e
    return get


def columns(getters, dtype):
    return lambda events: np.array([[g(e) for g in getters] for e in events], dtype=dtype)


def array_field(name, dtype):
    return lambda events: np.array([e[name] for e in events], dtype=dtype)


# Feature building per model, as a user would write it for each export.
BIKE = columns([nested("features", k) for k in ("t1", "t2", "hum", "weather_code")], np.float32)
FRAUD = matrix(["amount", "age", "score"], np.float32)
def fare_columns(events):
    trips = [e["trip"] for e in events]
    return {
        "vendor": np.array([[t["vendor"]] for t in trips], dtype=object),
        "passengers": np.array([[t["passengers"]] for t in trips], dtype=np.int64),
        "distance": np.array([[t["distance"]] for t in trips], dtype=np.float32),
    }


MODELS = {
    "bike_linear": (BIKE, "float_input", ["variable"]),
    "lightgbm_regressor": (array_field("x", np.float32), "input", ["variable"]),
    "fare_columns": (fare_columns, None, ["variable"]),
    "fraud_zipmap": (FRAUD, "X", ["output_label", "output_probability"]),
    "fraud_tensor": (FRAUD, "X", ["label", "probabilities"]),
    "tier_zipmap": (array_field("x", np.float64), "X", ["output_label", "output_probability"]),
    "tier_tensor": (array_field("x", np.float64), "X", ["label", "probabilities"]),
}


def plain(v):
    if isinstance(v, dict):
        return {str(k): float(x) for k, x in v.items()}
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def cpu_per_record(fn, records, passes=5):
    times = []
    for _ in range(passes):
        started = time.process_time()
        fn()
        times.append(time.process_time() - started)
    return statistics.median(times) / records * 1e6


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def good_lines(fixtures, name, records):
    lines = [l for l in (fixtures / f"{name}.events.jsonl").read_text().splitlines()
             if json.loads(l)["id"] < 10_000]
    return [lines[i % len(lines)] for i in range(records)]


def vectorized(fixtures, name, records, batch):
    build, input_name, outputs = MODELS[name]
    sess = session(fixtures / f"{name}.onnx")
    lines = good_lines(fixtures, name, records)
    batches = [lines[i:i + batch] for i in range(0, len(lines), batch)]

    def end_to_end():
        for chunk in batches:
            events = [json.loads(l) for l in chunk]
            results = sess.run(outputs, feeds(build(events)))
            for k, e in enumerate(events):
                prediction = {o: plain(r[k]) for o, r in zip(outputs, results)}
                prediction["id"] = e["id"]
                json.dumps({"model": name, "version": "v", "prediction": prediction})

    def feeds(built):
        """One array for a one-input model, or the inputs by name."""
        return built if input_name is None else {input_name: built}

    arrays = [feeds(build([json.loads(l) for l in chunk])) for chunk in batches]

    def run_only():
        for array in arrays:
            sess.run(outputs, array)

    return {"ort": cpu_per_record(end_to_end, records), "ort_run": cpu_per_record(run_only, records)}


def dict_vectorizer(fixtures, records, batch):
    name = "rides_forest"
    sess = session(fixtures / f"{name}.onnx")
    with open(fixtures / f"{name}.pkl", "rb") as f:
        pipeline = pickle.load(f)
    lines = good_lines(fixtures, name, records)
    batches = [lines[i:i + batch] for i in range(0, len(lines), batch)]

    def prepare(ride):
        """The seeds' prepare_features."""
        return {"PU_DO": f"{ride['PULocationID']}_{ride['DOLocationID']}", "trip_distance": ride["trip_distance"]}

    def envelope(e, duration):
        json.dumps({"model": name, "version": "v", "prediction": {"duration": float(duration), "id": e["id"]}})

    def ort_per_row():
        for chunk in batches:
            for line in chunk:
                e = json.loads(line)
                ride = e["ride"]
                features = {f"PU_DO={ride['PULocationID']}_{ride['DOLocationID']}": 1.0,
                            "trip_distance": float(ride["trip_distance"])}
                (out,) = sess.run(None, {"input": features})
                envelope(e, out.reshape(-1)[0])

    def sklearn_batches():
        for chunk in batches:
            events = [json.loads(l) for l in chunk]
            predictions = pipeline.predict([prepare(e["ride"]) for e in events])
            for e, p in zip(events, predictions):
                envelope(e, p)

    prepared = [[prepare(json.loads(l)["ride"]) for l in chunk] for chunk in batches]

    def sklearn_predict_only():
        for features in prepared:
            pipeline.predict(features)

    return {
        "ort": cpu_per_record(ort_per_row, records, passes=3),
        "sklearn": cpu_per_record(sklearn_batches, records, passes=3),
        "sklearn_predict": cpu_per_record(sklearn_predict_only, records, passes=3),
    }


def main():
    fixtures, records, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    results = {name: vectorized(fixtures, name, records, batch) for name in MODELS}
    results["rides_forest"] = dict_vectorizer(fixtures, max(batch, records // 5), batch)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
