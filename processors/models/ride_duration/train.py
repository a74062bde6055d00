#!/usr/bin/env python3
"""Train and export the ride duration model used by tributary's example processor.

The model reproduces the one of the original Python AWS Lambda: a scikit-learn
``Pipeline(DictVectorizer(), LinearRegression())`` on the features of
``prepare_features(ride)``::

    {"PU_DO": f"{PULocationID}_{DOLocationID}", "trip_distance": trip_distance}

and predicts the ride duration in minutes.

Data
----
Real NYC TLC trip data cannot be downloaded here, so by default the model is
trained on a seeded synthetic data set with a realistic structure (see
``make_city`` and ``simulate_rides``):

* 265 zones (the TLC zone ids 1..265) in boroughs with the real zone counts
  (EWR 1, Bronx 43, Brooklyn 61, Manhattan 69, Queens 69, Staten Island 20,
  Unknown 2), each zone at a 2D position (miles) scattered around its
  borough's centre;
* a per-borough traffic speed (Manhattan slow, Staten Island / EWR fast), a
  per-zone variation of it, and a per-pair variation (the part of the duration
  the ``PU_DO`` feature can learn);
* a skewed (lognormal) popularity of zones, Manhattan-like zones busiest, and
  destinations drawn with a gravity model (popularity times a distance decay),
  which gives roughly 20-25k distinct ``PU_DO`` pairs in a 200k-ride training
  set;
* ``trip_distance`` = straight-line distance (or an intra-zone distance for
  same-zone rides) times a lognormal detour factor, rounded to 0.01 mile like
  the TLC meters; a small share of rides record a 0 distance;
* duration (minutes) = true distance / pair speed (long rides are faster:
  highways) times a lognormal traffic factor, plus a pickup overhead and noise;
  rides are kept when 1 <= duration <= 60, as in the original course.

With ``--data FILE.parquet`` it trains on a real TLC green (``lpep_*``) or
yellow (``tpep_*``) trip parquet instead (needs pandas and pyarrow, which are
not in requirements.txt and are imported only then).

Export
------
``model.onnx`` is a hand-built ONNX graph mathematically identical to the
fitted pipeline (``DictVectorizer`` ignores unknown features, so an unseen pair
contributes 0)::

    PU_DO (string [N]) --LabelEncoder--> idx (int64 [N])   unseen -> V (a 0.0 entry)
    Gather(pair_coef float[V+1], idx)                   --> pair_term
    trip_distance (float [N]) * distance_coef           --> distance_term
    pair_term + distance_term + intercept               --> ride_duration (float [N], minutes)

The script also converts the same pipeline with skl2onnx (as the equivalent
``ColumnTransformer(OneHotEncoder, passthrough) + LinearRegression``, since
skl2onnx's DictVectorizer converter takes one map per call and no string
values) to a temporary file, checks that sklearn, the fast graph and the
skl2onnx graph agree on the hold-out set, fails loudly if not, and measures
both graphs with onnxruntime (one thread, batches of 1000 rows).

Outputs, next to this script unless ``--out-dir`` is given: ``model.onnx``,
``metrics.json``, ``schema.json`` and ``parity.jsonl`` (1,000 rides from another
seed, with some unseen pairs and 0-distance rides, and the onnxruntime
prediction of ``model.onnx`` for each, for the Rust parity test).

Usage, from the repository root::

    .venv/bin/python processors/models/ride_duration/train.py
    .venv/bin/python processors/models/ride_duration/train.py --seed 7 --n-rides 250000
    .venv/bin/python processors/models/ride_duration/train.py --data green_tripdata_2021-01.parquet

The same seed gives the same ``model.onnx`` bytes on the same machine and
library versions.
"""

from __future__ import annotations

import os

# One BLAS/OpenMP thread: modest CPU use and reproducible floating point.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

MODEL_NAME = "ride_duration_prediction_model"
N_ZONES = 265
MIN_DURATION, MAX_DURATION = 1.0, 60.0

# ONNX versions of the hand-built graph. LabelEncoder with keys_strings /
# values_int64s exists from ai.onnx.ml 2; IR 8 is the IR of ai.onnx opset 17
# (onnx 1.23 would write IR 14, which ONNX Runtime 1.31 refuses).
ONNX_OPSET = 17
ONNX_ML_OPSET = 3
IR_VERSION = 8

# Borough name -> (zone count, centre x/y in miles, spread in miles,
# typical speed in mph, popularity weight). Counts are the real TLC ones.
BOROUGHS = {
    "EWR": (1, (-12.0, -6.0), 0.3, 24.0, 0.3),
    "Bronx": (43, (3.0, 10.0), 2.0, 15.0, 0.25),
    "Brooklyn": (61, (1.5, -7.0), 2.8, 13.0, 0.35),
    "Manhattan": (69, (0.0, 0.5), 1.0, 10.0, 4.0),
    "Queens": (69, (8.0, -1.0), 3.5, 16.0, 0.35),
    "Staten Island": (20, (-8.0, -14.0), 2.5, 20.0, 0.03),
    "Unknown": (2, (2.0, 0.0), 6.0, 14.0, 0.1),
}


# --------------------------------------------------------------------------
# Features (same as the original Lambda)
# --------------------------------------------------------------------------


def prepare_features(ride: dict) -> dict:
    """The original Lambda's feature function."""
    return {
        "PU_DO": f"{ride['PULocationID']}_{ride['DOLocationID']}",
        "trip_distance": ride["trip_distance"],
    }


def feature_dicts(pu, do, dist) -> list[dict]:
    return [
        prepare_features({"PULocationID": int(a), "DOLocationID": int(b), "trip_distance": float(c)})
        for a, b, c in zip(pu, do, dist)
    ]


def pair_strings(pu, do) -> np.ndarray:
    return np.array([f"{int(a)}_{int(b)}" for a, b in zip(pu, do)], dtype=object)


# --------------------------------------------------------------------------
# Synthetic city and rides
# --------------------------------------------------------------------------


def make_city(rng: np.random.Generator, pop_sigma: float = 0.7) -> dict:
    """265 zones: borough, position (miles), speed (mph), popularity; and a
    per-pair speed factor."""
    names = list(BOROUGHS)
    # Zone 1 is EWR and 264/265 are the unknown zones, as in the TLC lookup;
    # the other ids are spread over the boroughs at random.
    borough = np.empty(N_ZONES + 1, dtype=object)  # index = zone id, 0 unused
    borough[1] = "EWR"
    borough[264] = borough[265] = "Unknown"
    rest = [b for b in names if b not in ("EWR", "Unknown") for _ in range(BOROUGHS[b][0])]
    borough[2:264] = np.array(rest, dtype=object)[rng.permutation(len(rest))]
    borough[0] = "Unknown"

    xy = np.zeros((N_ZONES + 1, 2))
    speed = np.zeros(N_ZONES + 1)
    pop = np.zeros(N_ZONES + 1)
    for z in range(1, N_ZONES + 1):
        _, centre, spread, mph, weight = BOROUGHS[borough[z]]
        xy[z] = np.asarray(centre) + rng.normal(0.0, spread, 2)
        if borough[z] == "Manhattan":  # a long, narrow island
            xy[z] = np.asarray(centre) + rng.normal(0.0, 1.0, 2) * (0.8, 3.5)
        speed[z] = mph * rng.lognormal(0.0, 0.15)
        pop[z] = weight * rng.lognormal(0.0, pop_sigma)
    pop[0] = 0.0
    pop /= pop.sum()

    # Per-pair speed factor: what PU_DO can learn beyond the distance.
    pair_factor = rng.lognormal(0.0, 0.2, (N_ZONES + 1, N_ZONES + 1))
    # Typical size of a zone, for same-zone rides.
    zone_radius = rng.uniform(0.4, 1.2, N_ZONES + 1)
    return {
        "borough": borough,
        "xy": xy,
        "speed": speed,
        "pop": pop,
        "pair_factor": pair_factor,
        "zone_radius": zone_radius,
    }


def pair_distribution(city: dict, decay_miles: float = 3.0) -> np.ndarray:
    """Joint probability of (PU, DO): PU by popularity, DO by a gravity model."""
    xy, pop = city["xy"], city["pop"]
    d = np.linalg.norm(xy[:, None, :] - xy[None, :, :], axis=-1)
    p_do = pop[None, :] ** 0.8 * np.exp(-d / decay_miles)
    p_do[:, 0] = 0.0
    p_do /= np.maximum(p_do.sum(axis=1, keepdims=True), 1e-300)
    joint = pop[:, None] * p_do
    return joint / joint.sum()


def simulate_rides(city: dict, n: int, rng: np.random.Generator) -> dict:
    """Draw rides until ``n`` have a duration in [1, 60] minutes."""
    joint = pair_distribution(city).ravel()
    side = N_ZONES + 1
    out = {"pu": [], "do": [], "dist": [], "duration": []}
    have = 0
    while have < n:
        m = int((n - have) * 1.1) + 100
        k = rng.choice(joint.size, size=m, p=joint)
        pu, do = k // side, k % side
        xy = city["xy"]
        straight = np.linalg.norm(xy[pu] - xy[do], axis=1)
        same = pu == do
        straight[same] = city["zone_radius"][pu[same]] * rng.uniform(0.2, 1.5, same.sum())
        true_dist = np.maximum(straight * 1.25 * rng.lognormal(0.0, 0.12, m), 0.05)
        dist = np.round(true_dist * rng.lognormal(0.0, 0.05, m), 2)
        dist[rng.random(m) < 0.005] = 0.0  # meter not engaged

        zone_speed = 2.0 / (1.0 / city["speed"][pu] + 1.0 / city["speed"][do])
        highway = 1.0 + 0.6 * (1.0 - np.exp(-true_dist / 6.0))
        speed = zone_speed * highway * city["pair_factor"][pu, do]
        traffic = rng.lognormal(0.0, 0.25, m)
        overhead = 1.0 + rng.exponential(1.5, m)
        duration = 60.0 * true_dist / speed * traffic + overhead + rng.normal(0.0, 1.0, m)

        keep = (duration >= MIN_DURATION) & (duration <= MAX_DURATION)
        take = np.flatnonzero(keep)[: n - have]
        out["pu"].append(pu[take])
        out["do"].append(do[take])
        out["dist"].append(dist[take])
        out["duration"].append(duration[take])
        have += take.size
    return {k: np.concatenate(v) for k, v in out.items()}


# --------------------------------------------------------------------------
# Real TLC data
# --------------------------------------------------------------------------


def load_parquet(path: Path, n_max: int | None, rng: np.random.Generator) -> dict:
    try:
        import pandas as pd  # noqa: F401  (pyarrow is pandas' parquet engine)
        import pyarrow  # noqa: F401
    except ImportError as e:
        sys.exit(
            f"--data needs pandas and pyarrow to read {path} ({e}); they are not in "
            "requirements.txt: install them with `.venv/bin/pip install pandas pyarrow`."
        )
    df = pd.read_parquet(path)
    for prefix in ("lpep", "tpep"):
        if f"{prefix}_pickup_datetime" in df.columns:
            break
    else:
        sys.exit(f"{path}: no lpep_/tpep_ pickup/dropoff datetime columns (not a TLC trip file?)")
    duration = (
        df[f"{prefix}_dropoff_datetime"] - df[f"{prefix}_pickup_datetime"]
    ).dt.total_seconds() / 60.0
    df = df.assign(duration=duration)
    df = df[(df.duration >= MIN_DURATION) & (df.duration <= MAX_DURATION)]
    df = df.dropna(subset=["PULocationID", "DOLocationID", "trip_distance"])
    if n_max is not None and len(df) > n_max:
        df = df.iloc[np.sort(rng.choice(len(df), n_max, replace=False))]
    return {
        "pu": df.PULocationID.to_numpy().astype(np.int64),
        "do": df.DOLocationID.to_numpy().astype(np.int64),
        "dist": df.trip_distance.to_numpy().astype(np.float64),
        "duration": df.duration.to_numpy().astype(np.float64),
    }


# --------------------------------------------------------------------------
# ONNX export
# --------------------------------------------------------------------------


def fast_graph(pipeline, meta: dict):
    """Hand-built LabelEncoder + Gather graph equal to the fitted pipeline."""
    from onnx import TensorProto, helper

    dv, lr = pipeline.named_steps["dictvectorizer"], pipeline.named_steps["linearregression"]
    names = dv.feature_names_
    coef = np.asarray(lr.coef_, dtype=np.float64).ravel()
    prefix = "PU_DO" + dv.separator
    pair_idx = [i for i, f in enumerate(names) if f.startswith(prefix)]
    other = [f for f in names if not f.startswith(prefix)]
    if other != ["trip_distance"]:
        raise RuntimeError(f"unexpected DictVectorizer features: {other}")
    keys = [names[i][len(prefix):] for i in pair_idx]
    n_pairs = len(keys)
    # Coefficient table: one entry per known pair, then 0.0 for unseen pairs.
    table = np.append(coef[pair_idx], 0.0).astype(np.float32)
    w_dist = np.float32(coef[dv.vocabulary_["trip_distance"]])
    intercept = np.float32(lr.intercept_)

    nodes = [
        helper.make_node(
            "LabelEncoder",
            ["PU_DO"],
            ["pair_index"],
            domain="ai.onnx.ml",
            name="pair_lookup",
            keys_strings=keys,
            values_int64s=list(range(n_pairs)),
            default_int64=n_pairs,
        ),
        helper.make_node("Gather", ["pair_coef", "pair_index"], ["pair_term"], axis=0, name="pair_gather"),
        helper.make_node("Mul", ["trip_distance", "distance_coef"], ["distance_term"], name="distance_mul"),
        helper.make_node("Add", ["pair_term", "distance_term"], ["linear_sum"], name="add_terms"),
        helper.make_node("Add", ["linear_sum", "intercept"], ["ride_duration"], name="add_intercept"),
    ]
    inits = [
        helper.make_tensor("pair_coef", TensorProto.FLOAT, [n_pairs + 1], table.tolist()),
        helper.make_tensor("distance_coef", TensorProto.FLOAT, [], [float(w_dist)]),
        helper.make_tensor("intercept", TensorProto.FLOAT, [], [float(intercept)]),
    ]
    graph = helper.make_graph(
        nodes,
        "ride_duration",
        [
            helper.make_tensor_value_info("PU_DO", TensorProto.STRING, ["N"]),
            helper.make_tensor_value_info("trip_distance", TensorProto.FLOAT, ["N"]),
        ],
        [helper.make_tensor_value_info("ride_duration", TensorProto.FLOAT, ["N"])],
        initializer=inits,
        doc_string="LabelEncoder(PU_DO) -> Gather(pair_coef) + trip_distance * distance_coef + intercept",
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET), helper.make_opsetid("ai.onnx.ml", ONNX_ML_OPSET)],
        producer_name="tributary/processors/models/ride_duration/train.py",
        producer_version="1",
        model_version=1,
        doc_string=(
            "NYC taxi ride duration (minutes) from PU_DO = '<PULocationID>_<DOLocationID>' and "
            "trip_distance (miles): scikit-learn DictVectorizer + LinearRegression exported as "
            "LabelEncoder + Gather. Unseen pairs contribute 0, like DictVectorizer."
        ),
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {k: str(v) for k, v in meta.items()})
    return model, n_pairs


def plain_skl2onnx_graph(pipeline, n_pairs_hint: int):
    """skl2onnx conversion of the same model.

    skl2onnx's DictVectorizer converter needs one map(string -> float) per call
    and cannot take string values, so the fitted pipeline is rewritten as the
    equivalent ColumnTransformer(OneHotEncoder(categories = the vocabulary's
    pairs, handle_unknown='ignore'), passthrough trip_distance) followed by the
    same LinearRegression coefficients, and converted with inputs PU_DO
    string [N, 1] and trip_distance float [N, 1]."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    dv, lr = pipeline.named_steps["dictvectorizer"], pipeline.named_steps["linearregression"]
    prefix = "PU_DO" + dv.separator
    names = dv.feature_names_
    pairs = [f[len(prefix):] for f in names if f.startswith(prefix)]
    # DictVectorizer sorts its features: all PU_DO=... come before trip_distance,
    # which is also the ColumnTransformer's output order.
    assert names[-1] == "trip_distance" and len(pairs) == len(names) - 1 == n_pairs_hint
    ct = ColumnTransformer(
        [
            ("pu_do", OneHotEncoder(categories=[np.array(pairs, dtype=object)], handle_unknown="ignore"), [0]),
            ("dist", "passthrough", [1]),
        ]
    )
    ct.fit(np.array([[pairs[0], 0.0]], dtype=object))
    lr2 = LinearRegression()
    lr2.coef_ = np.asarray(lr.coef_, dtype=np.float64).copy()
    lr2.intercept_ = float(lr.intercept_)
    lr2.n_features_in_ = len(names)
    plain = Pipeline([("columns", ct), ("linearregression", lr2)])
    onx = convert_sklearn(
        plain,
        initial_types=[("PU_DO", StringTensorType([None, 1])), ("trip_distance", FloatTensorType([None, 1]))],
        target_opset={"": ONNX_OPSET, "ai.onnx.ml": ONNX_ML_OPSET},
    )
    onx.ir_version = min(onx.ir_version, IR_VERSION)
    return onx


def ort_session(model_bytes: bytes):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def run_fast(sess, pairs: np.ndarray, dist: np.ndarray) -> np.ndarray:
    return sess.run(None, {"PU_DO": pairs, "trip_distance": dist.astype(np.float32)})[0]


def run_plain(sess, pairs: np.ndarray, dist: np.ndarray) -> np.ndarray:
    out = sess.run(None, {"PU_DO": pairs.reshape(-1, 1), "trip_distance": dist.astype(np.float32).reshape(-1, 1)})
    return out[0].ravel()


def bench(fn, sess, pairs, dist, batch: int, max_batches: int) -> float:
    """Median microseconds per row over batches of ``batch`` rows."""
    n_batches = min(max_batches, len(pairs) // batch)
    fn(sess, pairs[:batch], dist[:batch])  # warm-up
    times = []
    for b in range(n_batches):
        sl = slice(b * batch, (b + 1) * batch)
        t0 = time.perf_counter()
        fn(sess, pairs[sl], dist[sl])
        times.append(time.perf_counter() - t0)
    return float(np.median(times) / batch * 1e6)


# --------------------------------------------------------------------------
# Parity fixture
# --------------------------------------------------------------------------


def parity_rides(city: dict | None, vocab: set, seed: int, n: int = 1000) -> list[dict]:
    """``n`` valid rides from another seed: mostly typical rides, plus 5%
    unseen zone pairs, 3% 0-distance rides and a few rides on the edge zone
    ids 1, 264 and 265."""
    rng = np.random.default_rng(seed)
    if city is None:  # real-data training: draw a synthetic city for the fixture
        city = make_city(rng)
    n_unseen, n_zero = n // 20, (3 * n) // 100
    edge = [(1, 1), (1, 265), (265, 1), (265, 265), (264, 264), (1, 132), (132, 265), (264, 1)]
    base = simulate_rides(city, n - n_unseen - len(edge), rng)
    pu, do, dist = list(base["pu"]), list(base["do"]), list(base["dist"])
    for i in rng.choice(len(dist), n_zero, replace=False):
        dist[i] = 0.0
    for a, b in edge:
        pu.append(a)
        do.append(b)
        dist.append(float(np.round(rng.uniform(0.0, 20.0), 2)))
    added = 0
    while added < n_unseen:
        a, b = (int(x) for x in rng.integers(1, N_ZONES + 1, 2))
        if f"{a}_{b}" not in vocab:
            pu.append(a)
            do.append(b)
            dist.append(float(np.round(rng.uniform(0.0, 25.0), 2)))
            added += 1
    order = rng.permutation(n)
    ride_ids = rng.choice(10_000_000, n, replace=False) + 1
    rides = []
    for k, i in enumerate(order):
        ride = {"PULocationID": int(pu[i]), "DOLocationID": int(do[i]), "trip_distance": float(dist[i])}
        assert 1 <= ride["PULocationID"] <= N_ZONES and 1 <= ride["DOLocationID"] <= N_ZONES
        assert ride["trip_distance"] >= 0.0
        rides.append({"ride": ride, "ride_id": int(ride_ids[k])})
    return rides


# --------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------


def schema_doc() -> dict:
    return {
        "model_name": MODEL_NAME,
        "model_file": "model.onnx",
        "event_example": {"ride": {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}, "ride_id": 156},
        "inputs": [
            {
                "name": "PU_DO",
                "dtype": "string",
                "shape": ["N"],
                "computed_from": 'f"{ride.PULocationID}_{ride.DOLocationID}" (decimal integers joined by "_")',
                "example": "130_205",
                "unseen_pairs": "allowed: an unknown pair contributes 0 (like DictVectorizer ignoring unknown features)",
            },
            {
                "name": "trip_distance",
                "dtype": "float32",
                "shape": ["N"],
                "computed_from": "ride.trip_distance (miles), as float32",
                "example": 3.66,
            },
        ],
        "outputs": [
            {
                "name": "ride_duration",
                "dtype": "float32",
                "shape": ["N"],
                "unit": "minutes",
                "description": "predicted ride duration",
            }
        ],
        "valid_ranges": {
            "PULocationID": {"type": "integer", "min": 1, "max": N_ZONES},
            "DOLocationID": {"type": "integer", "min": 1, "max": N_ZONES},
            "trip_distance": {"type": "number", "min": 0.0},
        },
        "training_target_range_minutes": [MIN_DURATION, MAX_DURATION],
        "onnx": {"ir_version": IR_VERSION, "opsets": {"ai.onnx": ONNX_OPSET, "ai.onnx.ml": ONNX_ML_OPSET}},
    }


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


# --------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=42, help="seed of the data and the split (default 42)")
    ap.add_argument("--n-rides", type=int, default=250_000, help="rides in all, before the split (default 250000); with --data, at most this many, sampled")
    ap.add_argument("--test-fraction", type=float, default=0.2, help="hold-out share (default 0.2)")
    ap.add_argument("--data", type=Path, help="train on a TLC green/yellow trip parquet instead of synthetic data")
    ap.add_argument("--parity-seed", type=int, help="seed of the parity fixture rides (default seed + 1000)")
    ap.add_argument("--out-dir", type=Path, default=HERE, help="where to write the outputs (default: this folder)")
    ap.add_argument("--tolerance", type=float, default=1e-3, help="max allowed abs diff between implementations, minutes")
    ap.add_argument("--sklearn-out", type=Path, help="also pickle the fitted scikit-learn pipeline here (for the Python reference handler in bench/python)")
    args = ap.parse_args(argv)

    import onnx
    import onnxruntime
    import skl2onnx
    import sklearn
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import root_mean_squared_error
    from sklearn.pipeline import make_pipeline

    out_dir = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    parity_seed = args.parity_seed if args.parity_seed is not None else args.seed + 1000
    rng = np.random.default_rng(args.seed)
    t_start = time.perf_counter()

    city = None
    if args.data is None:
        city = make_city(rng)
        rides = simulate_rides(city, args.n_rides, rng)
        source = "synthetic"
    else:
        rides = load_parquet(args.data, args.n_rides, rng)
        source = str(args.data)
    n = len(rides["duration"])
    perm = rng.permutation(n)
    n_test = int(round(n * args.test_fraction))
    test, train = perm[:n_test], perm[n_test:]
    print(f"data: {source}, {n} rides, {len(train)} train / {len(test)} test")

    X_train = feature_dicts(rides["pu"][train], rides["do"][train], rides["dist"][train])
    X_test = feature_dicts(rides["pu"][test], rides["do"][test], rides["dist"][test])
    y_train, y_test = rides["duration"][train], rides["duration"][test]

    t0 = time.perf_counter()
    pipeline = make_pipeline(DictVectorizer(), LinearRegression())
    pipeline.fit(X_train, y_train)
    fit_s = time.perf_counter() - t0
    y_skl = pipeline.predict(X_test)
    rmse = float(root_mean_squared_error(y_test, y_skl))
    rmse_train = float(root_mean_squared_error(y_train, pipeline.predict(X_train)))
    print(f"fit {fit_s:.1f}s, rmse test {rmse:.3f} min, train {rmse_train:.3f} min")
    if args.sklearn_out is not None:
        import pickle
        args.sklearn_out.parent.mkdir(parents=True, exist_ok=True)
        args.sklearn_out.write_bytes(pickle.dumps(pipeline))
        print(f"wrote {args.sklearn_out}")

    n_pairs_vocab = sum(1 for f in pipeline.named_steps["dictvectorizer"].feature_names_ if f.startswith("PU_DO="))
    meta = {
        "model_name": MODEL_NAME,
        "features": "PU_DO: string '<PULocationID>_<DOLocationID>'; trip_distance: float32 miles",
        "output": "ride_duration: float32 minutes",
        "training_seed": args.seed,
        "data_source": "synthetic" if args.data is None else Path(source).name,
        "n_train": len(train),
        "n_pairs": n_pairs_vocab,
        "rmse_holdout_minutes": f"{rmse:.4f}",
        "trained_with": f"scikit-learn {sklearn.__version__} DictVectorizer + LinearRegression",
    }
    fast, n_pairs = fast_graph(pipeline, meta)
    onnx.checker.check_model(fast, full_check=True)
    fast_bytes = fast.SerializeToString()
    model_path = out_dir / "model.onnx"
    model_path.write_bytes(fast_bytes)
    print(f"wrote {model_path} ({len(fast_bytes)} bytes, {n_pairs} pairs)")
    if len(fast_bytes) > 5 * 1024 * 1024:
        raise SystemExit(f"model.onnx is {len(fast_bytes)} bytes, over 5 MB")

    plain = plain_skl2onnx_graph(pipeline, n_pairs)
    with tempfile.TemporaryDirectory() as tmp:
        plain_path = Path(tmp) / "ride_duration_skl2onnx.onnx"
        plain_path.write_bytes(plain.SerializeToString())
        plain_size = plain_path.stat().st_size
        plain_bytes = plain_path.read_bytes()

    # Parity of the three implementations on the hold-out set.
    pairs_test = pair_strings(rides["pu"][test], rides["do"][test])
    dist_test = rides["dist"][test]
    s_fast = ort_session(model_path.read_bytes())
    s_plain = ort_session(plain_bytes)
    y_fast = np.concatenate([run_fast(s_fast, pairs_test[i:i + 1000], dist_test[i:i + 1000]) for i in range(0, n_test, 1000)])
    y_plain = np.concatenate([run_plain(s_plain, pairs_test[i:i + 1000], dist_test[i:i + 1000]) for i in range(0, n_test, 1000)])
    # Unseen pairs too: every test pair with its PU and DO swapped, some unknown.
    pairs_swapped = pair_strings(rides["do"][test], rides["pu"][test])
    X_swapped = feature_dicts(rides["do"][test], rides["pu"][test], dist_test)
    y_skl_sw = pipeline.predict(X_swapped)
    y_fast_sw = run_fast(s_fast, pairs_swapped, dist_test)
    vocab = set(pipeline.named_steps["dictvectorizer"].feature_names_)
    n_unseen_checked = sum(1 for p in pairs_swapped if "PU_DO=" + p not in vocab)

    diff = {
        "sklearn_vs_fast": float(np.max(np.abs(y_skl - y_fast))),
        "sklearn_vs_skl2onnx": float(np.max(np.abs(y_skl - y_plain))),
        "fast_vs_skl2onnx": float(np.max(np.abs(y_fast.astype(np.float64) - y_plain))),
        "sklearn_vs_fast_swapped_pairs": float(np.max(np.abs(y_skl_sw - y_fast_sw))),
    }
    print("max abs diffs (minutes):", json.dumps(diff))
    bad = {k: v for k, v in diff.items() if not v <= args.tolerance}
    if bad:
        raise SystemExit(f"PARITY FAILURE: implementations disagree beyond {args.tolerance} min: {bad}")

    us_fast = bench(run_fast, s_fast, pairs_test, dist_test, 1000, 40)
    us_plain = bench(run_plain, s_plain, pairs_test, dist_test, 1000, 10)
    print(f"onnxruntime 1 thread, batch 1000: fast {us_fast:.3f} us/row, skl2onnx {us_plain:.3f} us/row")

    # Parity fixture, predicted by onnxruntime on the committed model.onnx.
    fixture = parity_rides(city, {f[len("PU_DO="):] for f in vocab if f.startswith("PU_DO=")}, parity_seed)
    fx_pairs = np.array([f"{r['ride']['PULocationID']}_{r['ride']['DOLocationID']}" for r in fixture], dtype=object)
    fx_dist = np.array([r["ride"]["trip_distance"] for r in fixture])
    fx_pred = run_fast(s_fast, fx_pairs, fx_dist)
    fx_skl = pipeline.predict([prepare_features(r["ride"]) for r in fixture])
    diff["sklearn_vs_fast_parity_fixture"] = float(np.max(np.abs(fx_skl - fx_pred)))
    if not diff["sklearn_vs_fast_parity_fixture"] <= args.tolerance:
        raise SystemExit(f"PARITY FAILURE on the fixture: {diff['sklearn_vs_fast_parity_fixture']}")
    n_fx_unseen = sum(1 for p in fx_pairs if "PU_DO=" + p not in vocab)
    n_fx_zero = int(np.sum(fx_dist == 0.0))
    with open(out_dir / "parity.jsonl", "w") as f:
        for r, y in zip(fixture, fx_pred):
            f.write(json.dumps({"event": r, "ride_duration": float(y)}) + "\n")

    write_json(out_dir / "schema.json", schema_doc())
    metrics = {
        "model_name": MODEL_NAME,
        "data_source": source,
        "seed": args.seed,
        "parity_seed": parity_seed,
        "rmse_minutes": rmse,
        "rmse_train_minutes": rmse_train,
        "n_train": len(train),
        "n_test": int(n_test),
        "n_pairs": n_pairs,
        "max_abs_diff_minutes": diff,
        "n_unseen_pairs_checked": n_unseen_checked,
        "parity_fixture": {"rows": len(fixture), "unseen_pairs": n_fx_unseen, "zero_distance": n_fx_zero},
        "onnxruntime_us_per_row": {
            "fast_labelencoder_gather": us_fast,
            "skl2onnx_onehot": us_plain,
            "threads": 1,
            "batch": 1000,
        },
        "model_size_bytes": len(fast_bytes),
        "skl2onnx_model_size_bytes": plain_size,
        "onnx": {"ir_version": IR_VERSION, "opsets": {"ai.onnx": ONNX_OPSET, "ai.onnx.ml": ONNX_ML_OPSET}},
        "fit_seconds": round(fit_s, 2),
        "versions": {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
            "skl2onnx": skl2onnx.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }
    write_json(out_dir / "metrics.json", metrics)
    print(f"wrote model.onnx, metrics.json, schema.json, parity.jsonl to {out_dir} in {time.perf_counter() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
