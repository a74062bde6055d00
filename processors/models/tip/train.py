"""Train the PLACEHOLDER tip model: a one-feature linear regression on synthetic rides.

This is not a tip model anyone should use. It exists so that the `tip` processor (and the
fan-out example, `deployments/config/fan-out.toml`) runs a real ONNX model with real plumbing:
feature mapping, batched inference, its own envelope. It learns, from seeded synthetic data,
tip_amount = 18% of a metered fare of $3 + $2.50 per mile, with noise.

    .venv/bin/python processors/models/tip/train.py        # writes model.onnx and metrics.json here

Input:  trip_distance  float32 [N, 1]  (miles, the ride event's `ride.trip_distance`)
Output: tip_amount     float32 [N, 1]  (dollars)
"""

import argparse
import json
from pathlib import Path

import numpy as np
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_absolute_error

HERE = Path(__file__).resolve().parent


def synthetic(rng: np.random.Generator, n: int):
    distance = rng.gamma(shape=2.0, scale=1.6, size=n).astype(np.float32)
    fare = 3.0 + 2.5 * distance
    tip = np.clip(0.18 * fare + rng.normal(0.0, 0.6, size=n), 0.0, None)
    return distance.reshape(-1, 1), tip.astype(np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--n-rides", type=int, default=50_000)
    ap.add_argument("--out-dir", type=Path, default=HERE)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    x, y = synthetic(rng, args.n_rides)
    split = int(len(x) * 0.8)
    model = LinearRegression().fit(x[:split], y[:split])
    mae = float(mean_absolute_error(y[split:], model.predict(x[split:])))
    onnx = convert_sklearn(
        model,
        initial_types=[("trip_distance", FloatTensorType([None, 1]))],
        final_types=[("tip_amount", FloatTensorType([None, 1]))],
        target_opset={"": 17},
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "model.onnx").write_bytes(onnx.SerializeToString())
    metrics = {
        "placeholder": True,
        "seed": args.seed,
        "n_rides": args.n_rides,
        "coef_per_mile": float(model.coef_[0]),
        "intercept": float(model.intercept_),
        "test_mae_dollars": round(mae, 4),
    }
    (args.out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
