"""The strongest Python handler for the same job: the whole batch at once.

The event's records decoded in one pass (base64, ``json.loads``), the ``PU_DO`` strings and
distances gathered into numpy arrays, **one** onnxruntime call on the same ``model.onnx``
tributary runs (one intra-op thread: per-core figures), the envelopes built in the seeds'
field order, and the predictions sent with ``put_records`` (500 records per call, Kinesis's
limit) instead of one ``put_record`` each. No per-record validation: a malformed record fails
the whole batch, as in most hand-written vectorized handlers. Used only by the benchmarks
(``bench/python/bench_handler.py ... lambda_function_vectorized``).
"""

import base64
import json
import os

import boto3
import numpy as np
import onnxruntime as ort

kinesis_client = boto3.client("kinesis")

PREDICTIONS_STREAM_NAME = os.getenv("PREDICTIONS_STREAM_NAME", "ride_predictions")
RUN_ID = os.getenv("RUN_ID")
TEST_RUN = os.getenv("TEST_RUN", "False") == "True"

options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(os.environ["MODEL_PATH"], options, providers=["CPUExecutionProvider"])


def lambda_handler(event, context):
    ride_events = [json.loads(base64.b64decode(record["kinesis"]["data"])) for record in event["Records"]]
    rides = [ride_event["ride"] for ride_event in ride_events]
    pu_do = np.array(["%s_%s" % (ride["PULocationID"], ride["DOLocationID"]) for ride in rides], dtype=object)
    distance = np.array([ride["trip_distance"] for ride in rides], dtype=np.float32)
    durations = session.run(["ride_duration"], {"PU_DO": pu_do, "trip_distance": distance})[0].reshape(-1).tolist()

    predictions_events = [
        {
            "model": "ride_duration_prediction_model",
            "version": RUN_ID,
            "prediction": {"ride_duration": duration, "ride_id": ride_event["ride_id"]},
        }
        for duration, ride_event in zip(durations, ride_events)
    ]

    if not TEST_RUN:
        for start in range(0, len(predictions_events), 500):
            chunk = predictions_events[start : start + 500]
            kinesis_client.put_records(
                StreamName=PREDICTIONS_STREAM_NAME,
                Records=[
                    {"Data": json.dumps(event), "PartitionKey": str(event["prediction"]["ride_id"])} for event in chunk
                ],
            )

    return {"predictions": predictions_events}
