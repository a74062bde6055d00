"""The reference for the worker benchmark: a Kinesis consumer written the seeds' way.

boto3, one shard after another (TRIM_HORIZON), get_records, then per record: base64-free JSON
decode (boto3 returns bytes), the seeds' prepare_features, a scikit-learn predict, and one
put_record per prediction. Stops after EXPECTED records and prints the elapsed seconds as JSON.

Usage: kinesis_consumer.py INPUT_STREAM OUTPUT_STREAM EXPECTED   (MODEL_PATH: pickled pipeline)
"""

import json
import os
import pickle
import sys
import time

import boto3

started = time.perf_counter()
input_stream, output_stream, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
kinesis = boto3.client("kinesis")
with open(os.environ["MODEL_PATH"], "rb") as f_in:
    model = pickle.load(f_in)


def prepare_features(ride):
    return {"PU_DO": "%s_%s" % (ride["PULocationID"], ride["DOLocationID"]), "trip_distance": ride["trip_distance"]}


iterators = {}
for shard in kinesis.list_shards(StreamName=input_stream)["Shards"]:
    iterators[shard["ShardId"]] = kinesis.get_shard_iterator(
        StreamName=input_stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]

done = 0
while done < expected:
    for shard_id, iterator in list(iterators.items()):
        result = kinesis.get_records(ShardIterator=iterator, Limit=1000)
        iterators[shard_id] = result["NextShardIterator"]
        for record in result["Records"]:
            ride_event = json.loads(record["Data"])
            prediction = float(model.predict(prepare_features(ride_event["ride"]))[0])
            event = {
                "model": "ride_duration_prediction_model",
                "version": "bench",
                "prediction": {"ride_duration": prediction, "ride_id": ride_event["ride_id"]},
            }
            kinesis.put_record(StreamName=output_stream, Data=json.dumps(event), PartitionKey=str(ride_event["ride_id"]))
            done += 1

print(json.dumps({"seconds": time.perf_counter() - started, "records": done}), flush=True)
