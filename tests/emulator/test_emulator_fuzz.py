"""Whatever bytes arrive, the emulator answers with a 4xx error body, never a 500."""

from __future__ import annotations

import json

import anyio
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytex_async.emulator import Emulator

ENDPOINTS = [
    ("POST", "/v1/identify"),
    ("POST", "/v1/companies/identify"),
    ("POST", "/v1/track"),
    ("POST", "/v1/users/bulk_identify"),
    ("POST", "/v1/companies/bulk_identify"),
    ("DELETE", "/v1/users"),
    ("DELETE", "/v1/companies"),
]
CONTENT_TYPES = [
    None,
    "application/json",
    "text/plain",
    "multipart/form-data",
    "multipart/form-data; boundary=XX",
    'multipart/form-data; boundary="XX"',
    "application/json; charset=utf-16",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "user_id",
                    "company_id",
                    "metadata",
                    "users",
                    "companies",
                    "event_name",
                    "company",
                    "id",
                    "x",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)
multipart_bodies = st.builds(
    lambda head, content, tail: b"--XX\r\n" + head + b"\r\n\r\n" + content + tail,
    st.sampled_from([b'Content-Disposition: form-data; name="file"', b"X: y", b""]),
    st.binary(max_size=40) | json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"\r\n--XX--", b"\r\n--XX", b"", b"--XX--"]),
)
bodies = (
    st.binary(max_size=80) | json_values.map(lambda v: json.dumps(v).encode()) | multipart_bodies
)


async def send(endpoint, content_type, body):
    emulator = Emulator(delete_interval=None)
    headers = {"Authorization": "Token k"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    transport = httpx.ASGITransport(app=emulator.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        method, path = endpoint
        return await client.request(method, path, content=body, headers=headers)


@settings(
    max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.sampled_from(ENDPOINTS), st.sampled_from(CONTENT_TYPES), bodies)
def test_any_body_gets_an_accepted_answer_or_a_4xx_error_body(endpoint, content_type, body):
    response = anyio.run(send, endpoint, content_type, body)
    if response.status_code == 202:
        return
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["errors"][0]
    assert set(error) == {"error", "error_code", "message", "details"}
