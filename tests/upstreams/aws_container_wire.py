"""The container credentials endpoint of EKS Pod Identity (and ECS task roles).

`GET /v1/credentials` with `Authorization: <token>` (the content of the file named by
AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE) answers the temporary credentials that the Bedrock
test upstream accepts (`ASIATEST` / `sts-secret` / `sts-token`), expiring in an hour, as the
EKS Pod Identity Agent does. A missing or wrong token gets 401.
"""
from __future__ import annotations

import datetime as dt

from aiohttp import web

from . import sts_wire

TOKEN = "pod-identity-token"


async def credentials(request: web.Request) -> web.Response:
    if request.headers.get("Authorization") != TOKEN:
        return web.json_response({"message": "unauthorized"}, status=401)
    expiration = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    return web.json_response({
        "AccessKeyId": sts_wire.TEMP_ACCESS_KEY, "SecretAccessKey": sts_wire.TEMP_SECRET_KEY,
        "Token": sts_wire.TEMP_SESSION_TOKEN, "AccountId": "123456789012",
        "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
    })


def make_app(recorder) -> web.Application:
    app = web.Application()
    app.router.add_get("/v1/credentials", credentials)
    return app
