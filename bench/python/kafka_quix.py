"""A Quix Streams application for the Kafka benchmark, doing what the consumers do.

``Application`` with a consumer group reading INPUT_TOPIC from the earliest offset (JSON values),
``StreamingDataFrame.apply`` predicting each ride with onnxruntime on the same ``model.onnx``
tributary runs (one intra-op thread; Quix Streams hands the function one record at a time),
the envelope in the seeds' field order written with ``to_topic`` keyed by ``ride_id``. Runs
until EXPECTED records were processed (``Application.run(count=...)``) and prints the elapsed
seconds (from process start, and from the first record) as JSON, as ``kafka_consumer.py`` does.

Usage: kafka_quix.py BROKERS INPUT_TOPIC OUTPUT_TOPIC EXPECTED   (MODEL_PATH: model.onnx)
"""

import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")  # authlib's deprecation notice on import, not ours

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from quixstreams import Application  # noqa: E402

started = time.perf_counter()
brokers, input_topic, output_topic, expected = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(os.environ["MODEL_PATH"], options, providers=["CPUExecutionProvider"])

state_dir = tempfile.mkdtemp(prefix="quix-state-")
app = Application(
    broker_address=brokers,
    consumer_group="quix-" + input_topic,
    auto_offset_reset="earliest",
    auto_create_topics=False,
    use_changelog_topics=False,
    loglevel=logging.WARNING,
    # Quix keeps a state folder per consumer group (./state by default); not in the repository.
    state_dir=state_dir,
)
source = app.topic(input_topic, value_deserializer="json")
sink = app.topic(output_topic, value_serializer="json")
first = None


def predict(ride_event):
    global first
    if first is None:
        first = time.perf_counter()
    ride = ride_event["ride"]
    pu_do = np.array(["%s_%s" % (ride["PULocationID"], ride["DOLocationID"])], dtype=object)
    distance = np.array([ride["trip_distance"]], dtype=np.float32)
    duration = float(session.run(["ride_duration"], {"PU_DO": pu_do, "trip_distance": distance})[0].reshape(-1)[0])
    return {
        "model": "ride_duration_prediction_model",
        "version": "bench",
        "prediction": {"ride_duration": duration, "ride_id": ride_event["ride_id"]},
    }


sdf = app.dataframe(source)
sdf = sdf.apply(predict)
sdf.to_topic(sink, key=lambda event: str(event["prediction"]["ride_id"]))
app.run(count=expected, collect=False)
ended = time.perf_counter()
shutil.rmtree(state_dir, ignore_errors=True)
print(json.dumps({"seconds": ended - started, "steady_seconds": ended - first, "records": expected}), flush=True)
