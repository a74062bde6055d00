"""The strongest plain confluent-kafka consumer for the Kafka benchmark: batched.

``consume(num_messages=1000)``, the batch's rides decoded, **one** onnxruntime call per batch
on the same ``model.onnx`` tributary runs (one intra-op thread: per-core figures), then one
``Producer.produce`` per prediction (envelopes in the seeds' field order) and ``poll(0)`` once
per batch; auto commit. Stops after EXPECTED records and prints the elapsed seconds (from
process start, and from the first message) as JSON, as ``kafka_consumer.py`` does.

Usage: kafka_consumer_batched.py BROKERS INPUT_TOPIC OUTPUT_TOPIC EXPECTED   (MODEL_PATH: model.onnx)
"""

import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from confluent_kafka import Consumer, Producer

started = time.perf_counter()
brokers, input_topic, output_topic, expected = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(os.environ["MODEL_PATH"], options, providers=["CPUExecutionProvider"])

consumer = Consumer({"bootstrap.servers": brokers, "group.id": "python-" + input_topic, "auto.offset.reset": "earliest"})
producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "linger.ms": 5})
consumer.subscribe([input_topic])
done = 0
first = None
while done < expected:
    messages = [m for m in consumer.consume(num_messages=1000, timeout=1.0) if m.error() is None]
    if not messages:
        continue
    if first is None:
        first = time.perf_counter()
    ride_events = [json.loads(message.value()) for message in messages]
    rides = [ride_event["ride"] for ride_event in ride_events]
    pu_do = np.array(["%s_%s" % (ride["PULocationID"], ride["DOLocationID"]) for ride in rides], dtype=object)
    distance = np.array([ride["trip_distance"] for ride in rides], dtype=np.float32)
    durations = session.run(["ride_duration"], {"PU_DO": pu_do, "trip_distance": distance})[0].reshape(-1).tolist()
    for duration, ride_event in zip(durations, ride_events):
        event = {
            "model": "ride_duration_prediction_model",
            "version": "bench",
            "prediction": {"ride_duration": duration, "ride_id": ride_event["ride_id"]},
        }
        producer.produce(output_topic, json.dumps(event).encode(), key=str(ride_event["ride_id"]))
    producer.poll(0)
    done += len(messages)
producer.flush()
ended = time.perf_counter()
consumer.close()
print(json.dumps({"seconds": ended - started, "steady_seconds": ended - first, "records": done}), flush=True)
