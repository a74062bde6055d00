"""The Python side of benchmark section 11 (batch scoring of a TLC month), in two ways:

- ``seeds``: the seeds' way (seed 004's batch mode, as the course's ``score.py`` does it):
  ``pandas.read_parquet``, the seeds' ``prepare_features`` dict per ride, the scikit-learn
  pipeline (``DictVectorizer.transform`` + ``LinearRegression.predict``), ``to_parquet``.
- ``vectorized``: the best a Python user would write: pyarrow reads the three columns, numpy
  builds the ``PU_DO`` strings, one onnxruntime call per 1M rows on the same ``model.onnx``
  tributary runs (one intra-op thread: per-core figures), pyarrow writes zstd Parquet.

    python batch_score.py seeds|vectorized INPUT.parquet OUTPUT.parquet MODEL

MODEL is the pickled pipeline for ``seeds`` and the ONNX file for ``vectorized``. Prints one
JSON line: rows, predicted, wall and CPU seconds, peak RSS (MB). Bad rows (a missing or
out-of-range zone id, a negative distance) are left out, as tributary dead-letters them.
"""

import json
import pickle
import resource
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

PASSTHROUGH = ["tpep_pickup_datetime", "PULocationID", "DOLocationID", "trip_distance"]


def prepare_features(ride):
    features = {}
    features["PU_DO"] = "%s_%s" % (ride["PULocationID"], ride["DOLocationID"])
    features["trip_distance"] = ride["trip_distance"]
    return features


def seeds(src, dst, model_path):
    with open(model_path, "rb") as f_in:
        pipeline = pickle.load(f_in)
    df = pd.read_parquet(src)
    good = (
        df["PULocationID"].between(1, 265)
        & df["DOLocationID"].between(1, 265)
        & (df["trip_distance"] >= 0)
    )
    df = df[good].copy()
    df["PULocationID"] = df["PULocationID"].astype(int)
    df["DOLocationID"] = df["DOLocationID"].astype(int)
    dicts = [prepare_features(ride) for ride in df[["PULocationID", "DOLocationID", "trip_distance"]].to_dict(orient="records")]
    y_pred = pipeline.predict(dicts)
    result = df[PASSTHROUGH].copy()
    result["ride_duration"] = y_pred
    result["model"] = "ride_duration_prediction_model"
    result["version"] = "batch"
    result.to_parquet(dst, engine="pyarrow", compression="zstd", index=False)
    return len(good), len(result)


def vectorized(src, dst, model_path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    table = pq.read_table(src, columns=PASSTHROUGH)
    pu, do, dist = table["PULocationID"], table["DOLocationID"], table["trip_distance"]
    good = pc.and_(
        pc.and_(pc.and_(pc.greater_equal(pu, 1), pc.less_equal(pu, 265)), pc.and_(pc.greater_equal(do, 1), pc.less_equal(do, 265))),
        pc.greater_equal(dist, 0),
    )
    good = pc.fill_null(good, False)
    table = table.filter(good)
    pu_do = pc.binary_join_element_wise(
        pc.cast(table["PULocationID"], pa.string()), pc.cast(table["DOLocationID"], pa.string()), "_"
    ).to_numpy(zero_copy_only=False).astype(object)
    miles = table["trip_distance"].to_numpy().astype(np.float32)
    out = np.empty(len(miles), dtype=np.float32)
    step = 1_000_000
    for start in range(0, len(miles), step):
        chunk = session.run(
            ["ride_duration"], {"PU_DO": pu_do[start : start + step], "trip_distance": miles[start : start + step]}
        )[0]
        out[start : start + step] = chunk.reshape(-1)
    n = table.num_rows
    result = table.append_column("ride_duration", pa.array(out.astype(np.float64)))
    result = result.append_column("model", pa.array(["ride_duration_prediction_model"] * n))
    result = result.append_column("version", pa.array(["batch"] * n))
    pq.write_table(result, dst, compression="zstd")
    return len(good), n


def main():
    mode, src, dst, model = sys.argv[1:5]
    wall = time.perf_counter()
    cpu = time.process_time()
    rows, predicted = {"seeds": seeds, "vectorized": vectorized}[mode](src, dst, model)
    report = {
        "mode": mode,
        "rows": rows,
        "predicted": predicted,
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
