"""Times a Python handler the way tributary-bench times the Rust one.

Usage: bench_handler.py EVENTS_JSONL BATCHES [MODULE]
MODULE is the handler's module: ``lambda_function`` (the seeds' way, the default) or
``lambda_function_vectorized`` (the whole batch in one onnxruntime call).
Prints one JSON object: init_ms (interpreter start to handler ready), batch_ms (median time per
event from its text: ``json.loads`` and the handler), handler_ms (the handler alone),
peak_rss_kb, predictions (of the last batch).
"""

import importlib
import json
import os
import statistics
import sys
import time

started = time.perf_counter()
# Time since the interpreter started: Python does not expose it directly; the caller measures
# process start to the "ready" line, this measures import-to-ready for reference.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The init: boto3 client and model load.
lambda_function = importlib.import_module(sys.argv[3] if len(sys.argv) > 3 else "lambda_function")

ready_ms = (time.perf_counter() - started) * 1000
print(json.dumps({"ready": True}), flush=True)

# One event per line, parsed when it is invoked (as the Lambda runtime does).
with open(sys.argv[1]) as f_in:
    events = f_in.read().splitlines()
batches = int(sys.argv[2])
# Each invocation is timed from the event's text, as the Rust side is: the Python runtime
# (awslambdaric) runs `json.loads` on every event before it calls the handler, within the
# invocation. The handler's own time is kept too.
times = []
handler_times = []
result = None
for i in range(batches):
    t0 = time.perf_counter()
    event = json.loads(events[i % len(events)])
    t1 = time.perf_counter()
    result = lambda_function.lambda_handler(event, None)
    t2 = time.perf_counter()
    times.append((t2 - t0) * 1000)
    handler_times.append((t2 - t1) * 1000)

def peak_rss_kb():
    """VmHWM, as the Rust side reads it. (ru_maxrss is not used: on Linux it also counts the
    parent's resident set at the fork that started this process.)"""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


print(json.dumps({
    "import_ms": ready_ms,
    "batch_ms": statistics.median(times),
    "handler_ms": statistics.median(handler_times),
    "peak_rss_kb": peak_rss_kb(),
    "predictions": len(result["predictions"]),
}), flush=True)
