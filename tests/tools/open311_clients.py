"""Drives linkbus's Open311 endpoint with two stock GeoReport v2 clients from PyPI, used as their
READMEs use them and not changed (installed by ops/scripts/ensure-test-tools into
.linkbus/tools/python-open311): civicbot's Open311Client posts a request with every field of the
spec, georeport's GeoReport reads it back in JSON and XML. A multipart form is posted with
requests (georeport's HTTP library) the way the `three` client posts one, `files=` beside `data=`.

Usage: open311_clients.py BASE_URL API_KEY MEDIA_URL. Prints every answer as one JSON object
for tests/it/open311.rs to check against the published GeoReport v2 schemas.
"""

import json
import sys

import requests
from civicbot.http import HttpError
from civicbot.open311 import Open311Client
from civicbot.registry import Endpoint
from georeport import GeoReport

base, key, media_url = sys.argv[1:4]
out = {}

civic = Open311Client(Endpoint(id="linkbus", name="linkbus", base_url=base, write=True), jurisdiction_id="sfgov.org")
out["civicbot_services"] = civic.list_services()
sent = civic.create_request(
    "SEWER",
    dry_run=False,
    confirm="SEND",
    api_key=key,
    validate_remote=True,
    lat=37.7599673,
    lng=-122.4236412,
    address_string="Intersection of 19TH ST and GUERRERO ST",
    description="Sewer backing up into the street",
    attributes={"WHERE": "street"},
    media_url=media_url,
    email="grace@example.org",
    first_name="Grace",
    last_name="Hopper",
    phone="555-0199",
    device_id="android-77c1",
    account_id="acct-1906",
)
out["created"] = sent.response
request_id = sent.response[0]["service_request_id"]
try:
    civic.create_request("UFO_SIGHTING", dry_run=False, confirm="SEND", api_key=key, lat=37.7793, lng=-122.4193)
    out["unknown_code"] = {"status": 201}
except HttpError as e:
    out["unknown_code"] = {"status": e.status, "body": json.loads(e.body)}
out["civicbot_request"] = civic.get_request(request_id)

# No api_key: reads are public, as GeoReport v2 says.
geo = GeoReport(base, jurisdiction="sfgov.org")
out["services"] = geo.get_service_list()
out["definition"] = geo.get_service_definition("SEWER")
out["request"] = geo.get_service_request(request_id)
out["requests_by_id"] = geo.get_service_requests(service_request_id=request_id)
out["requests_open"] = geo.get_service_requests(status="open")
xml = GeoReport(base, jurisdiction="sfgov.org", output_format="xml")
out["xml_request"] = xml.get_service_request(request_id)
out["xml_services"] = xml.get_service_list()

# Multipart, the key in the body: text fields only, then with a photo attached.
fields = {
    "api_key": key,
    "service_code": "STREETLIGHT",
    "lat": "37.7610",
    "long": "-122.4350",
    "description": "Lamp out on the corner",
}
answer = requests.post(f"{base}/requests.json", files={name: (None, value) for name, value in fields.items()})
out["multipart"] = {"status": answer.status_code, "body": answer.json()}
photo = {"media": ("photo.jpg", b"\xff\xd8\xff\xe0 a small photo \xff\xd9", "image/jpeg")}
answer = requests.post(f"{base}/requests.json", data={**fields, "description": "Lamp out, photo"}, files=photo)
out["multipart_photo"] = {"status": answer.status_code, "body": answer.json()}

print(json.dumps(out))
