"""The seeds' web service (seed 004, 4.2-4.3): Flask, a scikit-learn pipeline (DictVectorizer +
LinearRegression, the same model as processors/models/ride_duration/model.onnx) predicting the
posted ride, `{"duration", "model_version"}` back. Served by gunicorn in the benchmark:

    MODEL_PATH=model.pkl RUN_ID=... gunicorn --bind=127.0.0.1:9696 --workers 2 predict:app
"""

import os
import pickle

from flask import Flask, jsonify, request

RUN_ID = os.getenv("RUN_ID", "reference")

with open(os.environ["MODEL_PATH"], "rb") as f_in:
    model = pickle.load(f_in)


def prepare_features(ride):
    features = {}
    features["PU_DO"] = "%s_%s" % (ride["PULocationID"], ride["DOLocationID"])
    features["trip_distance"] = ride["trip_distance"]
    return features


def predict(features):
    preds = model.predict(features)
    return float(preds[0])


app = Flask("duration-prediction")


@app.route("/predict", methods=["POST"])
def predict_endpoint():
    ride = request.get_json()

    features = prepare_features(ride)
    pred = predict(features)

    result = {"duration": pred, "model_version": RUN_ID}

    return jsonify(result)


if __name__ == "__main__":
    app.run(debug=True, host="0.0.0.0", port=9696)
