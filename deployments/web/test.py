"""The seeds' web-service client (seed 004, "You can test out the predict function with a
test.py script"), unchanged but for printing the answer and taking the URL from `URL`:

    tributary serve --config deployments/config/web-service.toml &
    python deployments/web/test.py
"""
import json
import os

import requests

ride_info = {
    "PULocationID": 10,
    "DOLocationID": 50,
    "trip_distance": 40
}

url = os.getenv('URL', 'http://127.0.0.1:9696/predict')
response = requests.post(url, json=ride_info)
response.raise_for_status()
print(json.dumps(response.json()))
