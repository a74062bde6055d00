"""Times the reference handler (lambda_function.py) the way tributary-bench times the Rust one.

Usage: bench_handler.py EVENTS_JSON BATCHES
Prints one JSON object: init_ms (interpreter start to handler ready), batch_ms (median handler
time per event), peak_rss_kb, predictions (of the last batch).
"""

import json
import os
import resource
import statistics
import sys
import time

started = time.perf_counter()
# Time since the interpreter started: Python does not expose it directly; the caller measures
# process start to the "ready" line, this measures import-to-ready for reference.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lambda_function  # noqa: E402  (the init: boto3 client and model load)

ready_ms = (time.perf_counter() - started) * 1000
print(json.dumps({"ready": True}), flush=True)

events = json.load(open(sys.argv[1]))
batches = int(sys.argv[2])
times = []
result = None
for i in range(batches):
    event = events[i % len(events)]
    t0 = time.perf_counter()
    result = lambda_function.lambda_handler(event, None)
    times.append((time.perf_counter() - t0) * 1000)

print(json.dumps({
    "import_ms": ready_ms,
    "batch_ms": statistics.median(times),
    "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "predictions": len(result["predictions"]),
}), flush=True)
