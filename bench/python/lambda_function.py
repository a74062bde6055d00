"""The reference: a ride-duration Lambda handler written the seeds' way.

boto3 Kinesis client, a scikit-learn pipeline (DictVectorizer + LinearRegression, the same model
as processors/models/ride_duration/model.onnx) predicting one record at a time, and one
put_record call per prediction. Used only by the benchmarks (bench/python/bench_handler.py).
"""

import base64
import json
import os
import pickle

import boto3

kinesis_client = boto3.client("kinesis")

PREDICTIONS_STREAM_NAME = os.getenv("PREDICTIONS_STREAM_NAME", "ride_predictions")
RUN_ID = os.getenv("RUN_ID")
TEST_RUN = os.getenv("TEST_RUN", "False") == "True"

with open(os.environ["MODEL_PATH"], "rb") as f_in:
    model = pickle.load(f_in)


def prepare_features(ride):
    features = {}
    features["PU_DO"] = "%s_%s" % (ride["PULocationID"], ride["DOLocationID"])
    features["trip_distance"] = ride["trip_distance"]
    return features


def predict(features):
    pred = model.predict(features)
    return float(pred[0])


def lambda_handler(event, context):
    predictions_events = []

    for record in event["Records"]:
        encoded_data = record["kinesis"]["data"]
        decoded_data = base64.b64decode(encoded_data).decode("utf-8")
        ride_event = json.loads(decoded_data)

        ride = ride_event["ride"]
        ride_id = ride_event["ride_id"]

        features = prepare_features(ride)
        prediction = predict(features)

        prediction_event = {
            "model": "ride_duration_prediction_model",
            "version": RUN_ID,
            "prediction": {"ride_duration": prediction, "ride_id": ride_id},
        }

        if not TEST_RUN:
            kinesis_client.put_record(
                StreamName=PREDICTIONS_STREAM_NAME,
                Data=json.dumps(prediction_event),
                PartitionKey=str(ride_id),
            )

        predictions_events.append(prediction_event)

    return {"predictions": predictions_events}
