"""The reference for the Kafka benchmark: a consumer written the usual way in Python.

confluent-kafka Consumer (a consumer group, auto commit), per message: JSON decode, the seeds'
prepare_features, a scikit-learn predict on that one record, and one Producer.produce per
prediction (poll(0) after each, flush at the end). Stops after EXPECTED records and prints the
elapsed seconds (from process start, and from the first message) as JSON.

Usage: kafka_consumer.py BROKERS INPUT_TOPIC OUTPUT_TOPIC EXPECTED   (MODEL_PATH: pickled pipeline)
"""

import json
import os
import pickle
import sys
import time

from confluent_kafka import Consumer, Producer

started = time.perf_counter()
brokers, input_topic, output_topic, expected = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with open(os.environ["MODEL_PATH"], "rb") as f_in:
    model = pickle.load(f_in)


def prepare_features(ride):
    return {"PU_DO": "%s_%s" % (ride["PULocationID"], ride["DOLocationID"]), "trip_distance": ride["trip_distance"]}


consumer = Consumer({"bootstrap.servers": brokers, "group.id": "python-" + input_topic, "auto.offset.reset": "earliest"})
producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "linger.ms": 5})
consumer.subscribe([input_topic])
done = 0
first = None
while done < expected:
    message = consumer.poll(1.0)
    if message is None or message.error():
        continue
    if first is None:
        first = time.perf_counter()
    ride_event = json.loads(message.value())
    prediction = float(model.predict(prepare_features(ride_event["ride"]))[0])
    event = {
        "model": "ride_duration_prediction_model",
        "version": "bench",
        "prediction": {"ride_duration": prediction, "ride_id": ride_event["ride_id"]},
    }
    producer.produce(output_topic, json.dumps(event).encode(), key=str(ride_event["ride_id"]))
    producer.poll(0)
    done += 1
producer.flush()
ended = time.perf_counter()
consumer.close()
print(json.dumps({"seconds": ended - started, "steady_seconds": ended - first, "records": done}), flush=True)
